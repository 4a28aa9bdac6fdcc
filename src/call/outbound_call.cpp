#include "call/outbound_call.h"

#include <cstdarg>

#include "log.h"
#include "store/calls.h"
#include "tools/handlers.h"
#include "tools/tools.h"
#include "whatsapp/graph_api.h"

namespace vb {
namespace {

// WhatsApp stops ringing after about a minute; an answer later than this is
// not coming.
constexpr guint kRingTimeoutS = 75;
constexpr int kNoPermission = 138006;
constexpr int kDailyLimit = 138012;

std::string graph_error(const GraphResult& result) {
  if (result.transport_error || result.http_status == 0)
    return "Graph API unreachable: " + result.error_message;
  std::string text = std::to_string(result.error_code) + ": " + result.error_message;
  if (!result.error_details.empty())
    text += " (" + result.error_details + ")";
  return text;
}

}  // namespace

OutboundCall::OutboundCall(ClaimedReminder reminder, std::string claimer, ReminderRetryPolicy policy,
                           const Config& config, GraphApi& graph, Tools& tools, Database& db, Metrics& metrics,
                           Notify on_call_id, Notify on_finished)
    : reminder_(std::move(reminder)),
      claimer_(std::move(claimer)),
      policy_(policy),
      config_(config),
      graph_(graph),
      tools_(tools),
      db_(db),
      metrics_(metrics),
      on_call_id_(std::move(on_call_id)),
      on_finished_(std::move(on_finished)),
      tool_calls_(tools, metrics, reminder_.phone_number,
                  {.log = [this](const std::string& line) { log("%s", line.c_str()); },
                   .hang_up = [this] { finish(Outcome::Delivered, "assistant ended the call", true); },
                   .answer = [this](const std::string& tool_call_id, const std::string& result) {
                     if (media_)
                       media_->send_function_result(tool_call_id, result);
                   }}) {}

OutboundCall::~OutboundCall() = default;

std::string OutboundCall::instructions() const {
  const std::string zone = tools_.time_zone_for(reminder_.phone_number);
  std::string text = call_instructions(config_.realtime.instructions, CallerContext{reminder_.phone_number, ""}, zone,
                                       "", g_get_real_time() / G_USEC_PER_SEC);
  text += "\n\nThis is a call YOU placed to deliver a reminder the person set on " +
          tools::spoken_local_time(reminder_.created_at_unix, zone) + " for " +
          tools::spoken_local_time(reminder_.remind_at_unix, zone) + ". The reminder (id " +
          std::to_string(reminder_.id) + ") says: \"" + reminder_.text +
          "\". Speak first: greet them, say you are their assistant calling with the reminder they asked for, read "
          "it out, then offer to help with anything else.";
  return text;
}

void OutboundCall::start() {
  log("calling to deliver reminder %" G_GINT64_FORMAT " (attempt %d)", reminder_.id, reminder_.attempts);
  ring_timer_ = run_after(kRingTimeoutS * 1000, [this] {
    ring_timer_.release();
    finish(Outcome::Missed, "not answered within " + std::to_string(kRingTimeoutS) + " s", true);
  });
  MediaSettings settings;
  settings.ice = config_.ice;
  settings.realtime = config_.realtime;
  settings.opus_complexity = config_.opus_complexity;
  settings.instructions = instructions();
  settings.tools_json = Tools::definitions_json();
  std::string error;
  media_ = CallMedia::create_offerer(settings, media_events(), &error);
  if (!media_)
    finish(Outcome::Missed, "cannot build the call: " + error, false);  // counted: a lasting fault must not loop
}

MediaEvents OutboundCall::media_events() {
  // As for inbound calls: CallMedia calls these on the main loop and dies first.
  MediaEvents events;
  events.on_offer_ready = [this](const std::string& sdp) {
    if (!ended_)
      on_offer_ready(sdp);
  };
  events.on_connected = [this] {
    if (!ended_)
      on_media_connected();
  };
  events.on_failed = [this](const std::string& reason) {
    if (!ended_)
      finish(answered_ ? Outcome::Delivered : Outcome::Missed, "media failed: " + reason, true);
  };
  events.on_function_call = [this](std::string tool_call_id, std::string name, std::string arguments) {
    tool_calls_.on_function_call(tool_call_id, name, arguments);
  };
  events.on_transcript = [this](std::string role, std::string text) {
    conversation_.add_line(std::move(role), std::move(text));
  };
  events.on_usage = [this](int64_t input_tokens, int64_t output_tokens) {
    conversation_.add_usage(input_tokens, output_tokens);
  };
  events.on_realtime_error = [this](const std::string& code) { metrics_.realtime_error(code); };
  return events;
}

void OutboundCall::on_offer_ready(const std::string& offer_sdp) {
  graph_.connect(reminder_.phone_number, offer_sdp, "reminder:" + std::to_string(reminder_.id),
                 [weak = alive_.weak()](const GraphResult& result) {
                   if (auto self = weak.lock())
                     (*self)->on_connect_result(result);
                 });
}

void OutboundCall::on_connect_result(const GraphResult& result) {
  if (ended_)
    return;
  if (!result.ok || result.call_id.empty()) {
    const std::string why = "connect refused: " + graph_error(result);
    if (result.error_code == kNoPermission)
      return finish(Outcome::Failed, why, false);
    if (result.error_code == kDailyLimit)
      return finish(Outcome::Rescheduled, why, false);
    // Unreachable or an unknown outcome: the call may exist; count it as a missed attempt.
    return finish(Outcome::Missed, why, false);
  }
  learn_call_id(result.call_id);
}

// The id comes with connect's response or, when Meta's answer overtakes it,
// with the answer webhook (matched by our biz_opaque_callback_data).
void OutboundCall::learn_call_id(const std::string& call_id) {
  if (!call_id_.empty())
    return;
  call_id_ = call_id;
  log("ringing");
  on_call_id_(*this);
}

void OutboundCall::on_answer(const std::string& call_id, const std::string& answer_sdp) {
  if (ended_ || answer_applied_)
    return;
  learn_call_id(call_id);
  std::string error;
  if (!media_ || !media_->apply_answer(answer_sdp, &error))
    return finish(Outcome::Missed, "unusable answer: " + error, true);
  answer_applied_ = true;
  log("answer applied");
}

void OutboundCall::on_media_connected() {
  if (answered_)
    return;
  answered_ = true;
  answered_us_ = g_get_real_time();
  ring_timer_.reset();
  log("answered; delivering the reminder");
  record_outcome(Outcome::Delivered, "");
  media_->start_sending();  // opens the valve and asks the AI to speak first
  media_watch_.start(*media_, config_.media_timeout_s, [this] {
    // Meta ends a call after 30 s without packets; its terminate webhook may have gone to another replica.
    finish(Outcome::Delivered, "no audio from the callee for " + std::to_string(config_.media_timeout_s) + " s", true);
  });
}

void OutboundCall::on_status(const std::string& call_id, const std::string& status) {
  if (ended_)
    return;
  learn_call_id(call_id);
  log("status %s", status.c_str());
  if (status == "REJECTED")
    finish(answered_ ? Outcome::Delivered : Outcome::Missed, "rejected by the callee", false);
}

void OutboundCall::on_terminated(const std::string& call_id) {
  if (ended_)
    return;
  learn_call_id(call_id);
  finish(answered_ ? Outcome::Delivered : Outcome::Missed, answered_ ? "callee hung up" : "not answered", false);
}

void OutboundCall::end(const std::string& why) {
  if (!ended_)
    finish(answered_ ? Outcome::Delivered : Outcome::Released, why, true);
}

void OutboundCall::finish(Outcome outcome, const std::string& why, bool tell_meta) {
  if (ended_)
    return;
  ended_ = true;
  ended_us_ = g_get_real_time();
  log("ending: %s", why.c_str());
  ring_timer_.reset();
  tool_calls_.stop();
  media_watch_.stop();
  if (tell_meta && !call_id_.empty())
    graph_.terminate(call_id_, [call_id = call_id_](const GraphResult& result) {
      if (!result.ok)
        g_warning("call %s: terminate not confirmed by Meta", call_id.c_str());
    });
  if (outcome != Outcome::Delivered)
    record_outcome(outcome, why);
  metrics_.call_ended(CallDirection::Outbound, answered_ ? CallOutcome::Completed
                                               : outcome == Outcome::Missed || outcome == Outcome::Released
                                                   ? CallOutcome::Rejected
                                                   : CallOutcome::Failed);
  if (media_)
    metrics_.media_finished(media_->totals());
  run_soon([media = std::shared_ptr<CallMedia>(std::move(media_))] {});
  if (!call_id_.empty())
    record_call(why);
  on_finished_(*this);
}

// Each outcome is recorded once; delivered already when the media connected.
void OutboundCall::record_outcome(Outcome outcome, const std::string& why) {
  if (outcome_ != Outcome::None)
    return;
  outcome_ = outcome;
  auto done = [](bool) {};  // the claims module logs a failure; a lost claim is retaken after its timeout
  switch (outcome) {
    case Outcome::Delivered: reminder_delivered(db_, claimer_, reminder_.id, call_id_, done); break;
    case Outcome::Missed: reminder_missed(db_, claimer_, reminder_.id, why, policy_, done); break;
    case Outcome::Failed: reminder_failed(db_, claimer_, reminder_.id, why, done); break;
    case Outcome::Rescheduled:
      reminder_rescheduled(db_, claimer_, reminder_.id,
                           daily_limit_retry_time(why, g_get_real_time() / G_USEC_PER_SEC, policy_), why, done);
      break;
    case Outcome::Released: reminder_released(db_, claimer_, reminder_.id, why, done); break;
    case Outcome::None: break;
  }
}

void OutboundCall::record_call(const std::string& end_reason) {
  conversation_.save(db_, {.call_id = call_id_,
                           .direction = "outbound",
                           .phone_number = reminder_.phone_number,
                           .end_reason = end_reason,
                           .started_us = started_us_,
                           .answered_us = answered_us_,
                           .ended_us = ended_us_});
}

MediaTotals OutboundCall::media_totals() const { return media_ ? media_->totals() : MediaTotals{}; }

void OutboundCall::log(const char* format, ...) const {
  va_list args;
  va_start(args, format);
  g_autofree char* text = g_strdup_vprintf(format, args);
  va_end(args);
  g_message("call %s reminder %" G_GINT64_FORMAT " callee %s: %s", call_id_.empty() ? "(new)" : call_id_.c_str(),
            reminder_.id, mask_phone_number("+" + reminder_.phone_number).c_str(), text);
}

}  // namespace vb
