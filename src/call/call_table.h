// The table of live calls, owned by the main loop. Turns webhook batches into
// call actions: deduplicates Meta's at-least-once deliveries, remembers
// terminates that overtook their connect, drops stale connects, enforces
// capacity.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "call/call.h"
#include "config.h"
#include "http/metrics.h"
#include "whatsapp/webhook.h"

namespace vb {

class Database;
class GraphApi;
class Tools;

class CallTable {
 public:
  // `db` may be null (no DATABASE_URL). `metrics` must outlive the table.
  CallTable(const Config& config, GraphApi& graph, Tools& tools, Database* db, Metrics& metrics);
  ~CallTable();

  void handle(const WebhookBatch& batch);

  // Ends every call (with Graph terminate/reject) on shutdown.
  void end_all(EndReason reason);

  // Calls of both directions count against MAX_CONCURRENT_CALLS.
  size_t active_calls() const { return calls_.size(); }
  size_t active_calls(CallDirection direction) const;
  bool at_capacity() const { return active_calls() >= static_cast<size_t>(config_.max_concurrent_calls); }
  uint64_t rejected_over_capacity() const { return rejected_over_capacity_; }
  // Audio and barge-ins of the calls up now.
  MediaTotals live_media() const;

  // From now on every new call is rejected; calls up are left to finish.
  void start_draining() { draining_ = true; }
  bool draining() const { return draining_; }

  // For tests and health: called whenever a call leaves the table.
  std::function<void(const std::string& call_id)> on_call_removed;

 private:
  using Clock = std::chrono::steady_clock;

  void on_connect(const CallEvent& event);
  void on_terminate(const CallEvent& event);
  void on_status(const CallStatus& status);
  bool is_first_delivery(const std::string& call_id, const std::string& event);
  bool is_stale(const CallEvent& event) const;
  void reject(const std::string& call_id, const char* why);
  bool refuse_if_unservable(const CallEvent& event);
  void remove_later(const std::string& call_id);
  void forget_old_entries();

  const Config& config_;
  GraphApi& graph_;
  Tools& tools_;
  Database* db_;
  Metrics& metrics_;
  bool draining_ = false;
  std::unordered_map<std::string, std::unique_ptr<Call>> calls_;
  // (call id, event) deliveries seen, and calls that ended (or were terminated
  // before we saw their connect), with when; pruned after kMemory.
  std::map<std::string, Clock::time_point> seen_deliveries_;
  std::map<std::string, Clock::time_point> finished_calls_;
  uint64_t rejected_over_capacity_ = 0;
  AliveToken<CallTable> alive_{this};
};

}  // namespace vb
