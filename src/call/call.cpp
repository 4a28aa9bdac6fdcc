#include "call/call.h"

#include <cstdarg>

#include "log.h"
#include "store/calls.h"
#include "tools/tools.h"
#include "whatsapp/graph_api.h"

namespace vb {

const char* to_string(CallState state) {
  switch (state) {
    case CallState::Answering: return "answering";
    case CallState::PreAccepting: return "pre-accepting";
    case CallState::Connecting: return "connecting";
    case CallState::Accepting: return "accepting";
    case CallState::Active: return "active";
    case CallState::Ended: return "ended";
  }
  return "?";
}

const char* to_string(EndReason reason) {
  switch (reason) {
    case EndReason::CallerHungUp: return "caller hung up";
    case EndReason::AssistantEnded: return "assistant ended the call";
    case EndReason::SetupTimeout: return "setup timed out";
    case EndReason::RealtimeFailed: return "AI session failed";
    case EndReason::MediaFailed: return "media failed";
    case EndReason::GraphRefused: return "Graph API refused";
    case EndReason::MediaTimeout: return "caller's media stopped";
    case EndReason::Shutdown: return "server shutting down";
  }
  return "?";
}

CallOutcome outcome_of(EndReason reason, bool answered) {
  switch (reason) {
    case EndReason::CallerHungUp:
    case EndReason::AssistantEnded: return CallOutcome::Completed;
    // Almost always a hang-up whose terminate webhook reached another replica.
    case EndReason::MediaTimeout: return answered ? CallOutcome::Completed : CallOutcome::Failed;
    // Drained calls were served; ones not yet accepted were refused.
    case EndReason::Shutdown: return answered ? CallOutcome::Completed : CallOutcome::Rejected;
    // Before the answer, the AI session not opening means we could not take the call.
    case EndReason::RealtimeFailed: return answered ? CallOutcome::Failed : CallOutcome::Rejected;
    case EndReason::SetupTimeout:
    case EndReason::MediaFailed:
    case EndReason::GraphRefused: return CallOutcome::Failed;
  }
  return CallOutcome::Failed;
}

Call::Call(InboundCallInfo info, const Config& config, GraphApi& graph, Tools& tools, Database* db, Metrics& metrics,
           FinishedFn on_finished)
    : info_(std::move(info)),
      config_(config),
      graph_(graph),
      tools_(tools),
      db_(db),
      metrics_(metrics),
      on_finished_(std::move(on_finished)),
      tool_calls_(tools, metrics, info_.caller.number,
                  {.log = [this](const std::string& line) { log("%s", line.c_str()); },
                   .hang_up = [this] { end(EndReason::AssistantEnded); },
                   .answer = [this](const std::string& tool_call_id, const std::string& result) {
                     media_->send_function_result(tool_call_id, result);
                   }}) {}

Call::~Call() = default;

void Call::start() {
  log("offer received, answering");
  setup_timer_ = run_after(config_.call_setup_timeout_s * 1000, [this] {
    setup_timer_.release();
    log("not connected after %d s", config_.call_setup_timeout_s);
    end(EndReason::SetupTimeout);
  });
  tools_.caller_summary(info_.caller.number, [weak = alive_.weak()](std::string summary) {
    if (auto self = weak.lock())
      (*self)->start_media(summary);
  });
}

void Call::start_media(const std::string& caller_summary) {
  if (state_ == CallState::Ended)
    return;
  const std::string& number = info_.caller.number;
  MediaSettings settings;
  settings.ice = config_.ice;
  settings.realtime = config_.realtime;
  settings.opus_complexity = config_.opus_complexity;
  settings.instructions = call_instructions(config_.realtime.instructions, info_.caller, tools_.time_zone_for(number),
                                            caller_summary, g_get_real_time() / G_USEC_PER_SEC);
  settings.tools_json = Tools::definitions_json();
  std::string error;
  media_ = CallMedia::create_answerer(info_.offer_sdp, settings, media_events(), &error);
  if (!media_) {
    log("cannot answer: %s", error.c_str());
    end(EndReason::MediaFailed);
  }
}

MediaEvents Call::media_events() {
  // CallMedia invokes these on the main loop and never after it is destroyed;
  // the media dies before this Call, so capturing this is safe. Events that
  // arrive between end() and the media's destruction are ignored.
  MediaEvents events;
  events.on_answer_ready = [this](const std::string& sdp) {
    if (state_ == CallState::Ended)
      return;
    answer_sdp_ = sdp;
    maybe_pre_accept();
  };
  events.on_realtime_ready = [this] {
    if (realtime_ready_ || state_ == CallState::Ended)
      return;  // a reconnect of a running session, or too late
    realtime_ready_ = true;
    log("AI session ready");
    maybe_pre_accept();
  };
  events.on_connected = [this] {
    if (state_ == CallState::Ended)
      return;
    media_connected_ = true;
    log("ICE and DTLS connected");
    maybe_accept();
  };
  events.on_failed = [this](const std::string& reason) {
    if (state_ == CallState::Ended)
      return;
    log("failed: %s", reason.c_str());
    end(realtime_ready_ || state_ != CallState::Answering ? EndReason::MediaFailed : EndReason::RealtimeFailed);
  };
  events.on_function_call = [this](std::string tool_call_id, std::string name, std::string arguments) {
    tool_calls_.on_function_call(tool_call_id, name, arguments);
  };
  events.on_transcript = [this](std::string role, std::string text) {
    g_info("call %s %s: %s", id().c_str(), role.c_str(), text.c_str());
    conversation_.add_line(std::move(role), std::move(text));
  };
  events.on_usage = [this](int64_t input_tokens, int64_t output_tokens) {
    conversation_.add_usage(input_tokens, output_tokens);
  };
  events.on_realtime_error = [this](const std::string& code) { metrics_.realtime_error(code); };
  return events;
}

void Call::set_state(CallState next) {
  log("%s -> %s", to_string(state_), to_string(next));
  state_ = next;
}

// Meta shows "ringing" after pre_accept; send it only when we can really serve
// the call: the answer is ready and the AI session is open.
void Call::maybe_pre_accept() {
  if (state_ != CallState::Answering || answer_sdp_.empty() || !realtime_ready_)
    return;
  set_state(CallState::PreAccepting);
  graph_.pre_accept(id(), answer_sdp_, [weak = alive_.weak()](const GraphResult& result) {
    if (auto self = weak.lock())
      (*self)->on_pre_accepted(result.ok);
  });
}

void Call::on_pre_accepted(bool ok) {
  if (state_ != CallState::PreAccepting)
    return;
  if (!ok) {
    end(EndReason::GraphRefused);
    return;
  }
  set_state(CallState::Connecting);
  maybe_accept();
}

// accept carries the byte-identical SDP of pre_accept, and only once ICE and
// DTLS are up, so the caller's timer starts when audio can really flow.
void Call::maybe_accept() {
  if (state_ != CallState::Connecting || !media_connected_)
    return;
  set_state(CallState::Accepting);
  accept_sent_monotonic_us_ = g_get_monotonic_time();
  graph_.accept(id(), answer_sdp_, [weak = alive_.weak()](const GraphResult& result) {
    if (auto self = weak.lock())
      (*self)->on_accepted(result.ok);
  });
}

void Call::on_accepted(bool ok) {
  if (state_ != CallState::Accepting)
    return;
  if (!ok) {
    end(EndReason::GraphRefused);
    return;
  }
  setup_timer_.reset();
  answered_us_ = g_get_real_time();
  metrics_.call_setup(static_cast<double>(accept_sent_monotonic_us_ - created_monotonic_us_) / G_USEC_PER_SEC);
  set_state(CallState::Active);
  media_->start_sending();
  media_watch_.start(*media_, config_.media_timeout_s, [this] {
    log("no audio from the caller for %d s", config_.media_timeout_s);
    end(EndReason::MediaTimeout);
  });
}

void Call::end(EndReason reason) {
  if (state_ == CallState::Ended)
    return;
  const bool answered = state_ == CallState::Accepting || state_ == CallState::Active;
  log("ending (%s)", to_string(reason));
  end_reason_ = reason;
  ended_us_ = g_get_real_time();
  if (reason != EndReason::CallerHungUp) {
    // A call Meta never saw accepted is rejected; an accepted one terminated.
    auto report = [call_id = id(), action = answered ? "terminate" : "reject"](const GraphResult& result) {
      if (!result.ok)
        g_warning("call %s: %s not confirmed by Meta", call_id.c_str(), action);
    };
    if (answered)
      graph_.terminate(id(), report);
    else
      graph_.reject(id(), report);
  }
  setup_timer_.reset();
  tool_calls_.stop();
  media_watch_.stop();
  metrics_.call_ended(direction(), outcome_of(reason, answered));
  if (media_)
    metrics_.media_finished(media_->totals());
  // end() may run inside one of the media's own callbacks: free the pipeline
  // once that callback has returned.
  run_soon([media = std::shared_ptr<CallMedia>(std::move(media_))] {});
  set_state(CallState::Ended);
  record();
  on_finished_(id());
}

MediaTotals Call::media_totals() const { return media_ ? media_->totals() : MediaTotals{}; }

void Call::record() {
  if (!db_)
    return;
  conversation_.save(*db_, {.call_id = id(),
                            .direction = "inbound",
                            .phone_number = info_.caller.number,
                            .end_reason = to_string(end_reason_),
                            .started_us = started_us_,
                            .answered_us = answered_us_,
                            .ended_us = ended_us_});
}

void Call::log(const char* format, ...) const {
  va_list args;
  va_start(args, format);
  g_autofree char* text = g_strdup_vprintf(format, args);
  va_end(args);
  g_message("call %s caller %s: %s", id().c_str(), mask_phone_number(info_.caller.number).c_str(), text);
}

}  // namespace vb
