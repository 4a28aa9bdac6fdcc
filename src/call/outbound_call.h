// A business-initiated call delivering one claimed reminder:
//
//   Offering ──offer ready──▶ Connecting (Graph connect sent) ──call id──▶ Ringing
//   Ringing ──Meta's answer applied, ICE+DTLS connected──▶ Active (reminder delivered, AI speaks first)
//   any state ──terminate, REJECTED, error, ring timeout, shutdown──▶ Ended
//
// The reminder's outcome is recorded under the scheduler's claim: delivered as
// soon as media connects (so a crash afterwards never repeats it), missed
// (retried with backoff) when nobody answered or the call could not be set
// up, failed for Meta's 138006 (no call permission), rescheduled for 138012
// (daily limit), released (attempt not counted) when the server stopped
// before the call was answered.
// Lives on the main loop; owned by the CallTable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "call/call.h"
#include "call/media.h"
#include "call/tool_calls.h"
#include "config.h"
#include "glib_util.h"
#include "http/metrics.h"
#include "store/reminder_claims.h"

namespace vb {

class Database;
class GraphApi;
class Tools;
struct GraphResult;

class OutboundCall {
 public:
  using Notify = std::function<void(OutboundCall& call)>;

  OutboundCall(ClaimedReminder reminder, std::string claimer, ReminderRetryPolicy policy, const Config& config,
               GraphApi& graph, Tools& tools, Database& db, Metrics& metrics, Notify on_call_id, Notify on_finished);
  ~OutboundCall();
  OutboundCall(const OutboundCall&) = delete;
  OutboundCall& operator=(const OutboundCall&) = delete;

  // Builds the offerer pipeline; Graph connect follows once the offer is ready.
  void start();

  // Meta's connect webhook (BUSINESS_INITIATED, sdp_type answer), possibly
  // before connect's HTTP response.
  void on_answer(const std::string& call_id, const std::string& answer_sdp);
  // A statuses[] entry: RINGING, ACCEPTED or REJECTED.
  void on_status(const std::string& call_id, const std::string& status);
  // Meta's terminate webhook.
  void on_terminated(const std::string& call_id);
  // Ends the call from our side (shutdown); safe to call more than once.
  void end(const std::string& why);

  int64_t reminder_id() const { return reminder_.id; }
  const std::string& call_id() const { return call_id_; }  // empty until Graph connect answered
  bool ended() const { return ended_; }
  MediaTotals media_totals() const;

 private:
  enum class Outcome { None, Delivered, Missed, Failed, Rescheduled, Released };

  MediaEvents media_events();
  void on_offer_ready(const std::string& offer_sdp);
  void on_connect_result(const GraphResult& result);
  void learn_call_id(const std::string& call_id);
  void on_media_connected();
  void finish(Outcome outcome, const std::string& why, bool tell_meta);
  void record_outcome(Outcome outcome, const std::string& why);
  void record_call(const std::string& end_reason);
  std::string instructions() const;
  void log(const char* format, ...) const G_GNUC_PRINTF(2, 3);

  ClaimedReminder reminder_;
  std::string claimer_;
  ReminderRetryPolicy policy_;
  const Config& config_;
  GraphApi& graph_;
  Tools& tools_;
  Database& db_;
  Metrics& metrics_;
  Notify on_call_id_, on_finished_;
  ToolCalls tool_calls_;
  std::unique_ptr<CallMedia> media_;
  std::string call_id_;
  bool answer_applied_ = false;
  bool answered_ = false;  // media connected: the reminder is delivered
  bool ended_ = false;
  Outcome outcome_ = Outcome::None;
  Conversation conversation_;
  int64_t started_us_ = g_get_real_time();
  int64_t answered_us_ = 0, ended_us_ = 0;
  ScopedSource ring_timer_;
  InboundMediaWatch media_watch_;
  AliveToken<OutboundCall> alive_{this};
};

}  // namespace vb
