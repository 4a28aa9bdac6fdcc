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
#include "call/outbound_call.h"
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

  // Calls the reminder's phone number to deliver it (a scheduler claim of `claimer`).
  void place_reminder_call(const ClaimedReminder& reminder, const std::string& claimer,
                           const ReminderRetryPolicy& policy);
  // Calls that may still be started now: 0 when full or draining.
  int free_capacity() const;

  // Ends every call (with Graph terminate/reject) on shutdown.
  void end_all(EndReason reason);

  // Calls of both directions count against MAX_CONCURRENT_CALLS.
  size_t active_calls() const { return calls_.size() + outbound_.size(); }
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
  void on_outbound_answer(const CallEvent& event);
  OutboundCall* outbound_for(const std::string& call_id, const std::string& biz_opaque);
  bool is_first_delivery(const std::string& call_id, const std::string& event);
  bool is_stale(const CallEvent& event) const;
  void reject(const std::string& call_id, const char* why);
  bool refuse_if_unservable(const CallEvent& event);
  void remove_later(const std::string& call_id);
  void remove_outbound_later(int64_t reminder_id, const std::string& call_id);
  void forget_old_entries();

  const Config& config_;
  GraphApi& graph_;
  Tools& tools_;
  Database* db_;
  Metrics& metrics_;
  bool draining_ = false;
  std::unordered_map<std::string, std::unique_ptr<Call>> calls_;
  // Business-initiated calls by reminder id, and their Meta call ids once known.
  std::map<int64_t, std::unique_ptr<OutboundCall>> outbound_;
  std::map<std::string, int64_t> outbound_call_ids_;
  // (call id, event) deliveries seen, and calls that ended (or were terminated
  // before we saw their connect), with when; pruned after kMemory.
  std::map<std::string, Clock::time_point> seen_deliveries_;
  std::map<std::string, Clock::time_point> finished_calls_;
  uint64_t rejected_over_capacity_ = 0;
  AliveToken<CallTable> alive_{this};
};

}  // namespace vb
