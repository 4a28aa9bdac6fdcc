// One WhatsApp call: the state machine between Meta's signalling (webhooks in,
// Graph API actions out) and the call's media pipeline.
//
//   Answering ──answer SDP + AI session ready──▶ PreAccepting ──200──▶ Connecting
//   Connecting ──ICE+DTLS connected──▶ Accepting ──200──▶ Active
//   any state ──hang-up, error, timeout──▶ Ended
//
// Lives on the main loop; owned by the CallTable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "assistant/assistant.h"
#include "call/conversation.h"
#include "call/media.h"
#include "call/tool_calls.h"
#include "config.h"
#include "glib_util.h"
#include "http/metrics.h"

namespace vb {

class Database;
class GraphApi;
class Tools;

enum class CallState { Answering, PreAccepting, Connecting, Accepting, Active, Ended };
const char* to_string(CallState state);

enum class EndReason {
  CallerHungUp,     // terminate webhook: Meta already ended it
  AssistantEnded,   // the AI called end_call
  SetupTimeout,     // ICE/DTLS or the AI session did not come up in time
  RealtimeFailed,   // the AI session failed
  MediaFailed,      // WebRTC or pipeline failure
  GraphRefused,     // Meta refused pre_accept/accept
  MediaTimeout,     // no RTP from the caller for MEDIA_TIMEOUT_S: hung up, terminate webhook missed
  Shutdown,         // the server is stopping
};
const char* to_string(EndReason reason);

// How a call that ended this way counts in voicebridge_calls_total
// (`answered`: Meta had been sent the accept).
CallOutcome outcome_of(EndReason reason, bool answered);

struct InboundCallInfo {
  std::string call_id;
  CallerContext caller;
  std::string offer_sdp;
};

class Call {
 public:
  using FinishedFn = std::function<void(const std::string& call_id)>;

  // `db` may be null (no DATABASE_URL): the call then leaves no record.
  Call(InboundCallInfo info, const Config& config, GraphApi& graph, Tools& tools, Database* db, Metrics& metrics,
       FinishedFn on_finished);
  ~Call();
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // Looks up the caller's tasks and reminders for the AI's instructions, then
  // builds the media pipeline; a call that cannot start is rejected.
  void start();

  // Ends the call: tells Meta unless Meta told us, frees the media, reports
  // to the table. Safe to call more than once.
  void end(EndReason reason);

  const std::string& id() const { return info_.call_id; }
  CallState state() const { return state_; }
  CallDirection direction() const { return CallDirection::Inbound; }
  // Audio and barge-ins so far; zero once the call has ended (Metrics has them then).
  MediaTotals media_totals() const;

 private:
  void start_media(const std::string& caller_summary);
  MediaEvents media_events();
  void record();
  void set_state(CallState next);
  void maybe_pre_accept();
  void maybe_accept();
  void on_pre_accepted(bool ok);
  void on_accepted(bool ok);
  void log(const char* format, ...) const G_GNUC_PRINTF(2, 3);

  InboundCallInfo info_;
  const Config& config_;
  GraphApi& graph_;
  Tools& tools_;
  Database* db_;
  Metrics& metrics_;
  FinishedFn on_finished_;
  ToolCalls tool_calls_;
  std::unique_ptr<CallMedia> media_;
  CallState state_ = CallState::Answering;
  std::string answer_sdp_;
  bool realtime_ready_ = false;
  bool media_connected_ = false;
  Conversation conversation_;
  EndReason end_reason_ = EndReason::Shutdown;
  int64_t started_us_ = g_get_real_time();
  int64_t created_monotonic_us_ = g_get_monotonic_time();  // the connect webhook was handled
  int64_t accept_sent_monotonic_us_ = 0;
  int64_t answered_us_ = 0;
  int64_t ended_us_ = 0;
  ScopedSource setup_timer_;
  InboundMediaWatch media_watch_;
  AliveToken<Call> alive_{this};
};

}  // namespace vb
