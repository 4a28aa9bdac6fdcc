#include "realtime_session.h"

#include <gst/gst.h>

#include <algorithm>
#include <cstring>
#include <string_view>

GST_DEBUG_CATEGORY_EXTERN(openairealtime_debug);
#define GST_CAT_DEFAULT openairealtime_debug

namespace openairealtime {
namespace {

constexpr guint kBytesPerMs = 48;  // 24 kHz mono S16LE
constexpr guint kFirstBackoffMs = 200;
constexpr guint kMaxBackoffMs = 5000;
constexpr guint kRotationPollMs = 250;
constexpr std::string_view kResponseEventPrefix = "vb_response_";

guint backoff_ms(guint attempt) {
  const guint shift = std::min(attempt > 0 ? attempt - 1 : 0u, 8u);
  return std::min(kFirstBackoffMs << shift, kMaxBackoffMs);
}

// A GSource that dispatches only when another thread sets its ready time.
gboolean dispatch_wake(GSource* source, GSourceFunc callback, gpointer data) {
  g_source_set_ready_time(source, -1);
  return callback(data);
}
GSourceFuncs kWakeFuncs = {nullptr, nullptr, dispatch_wake, nullptr, nullptr, nullptr};

// The next multiple of kInputTickUs on the monotonic clock: sessions created at
// any time tick together, so the network thread wakes once per tick for all.
constexpr gint64 kInputTickUs = 10000;
gint64 next_input_tick() { return (g_get_monotonic_time() / kInputTickUs + 1) * kInputTickUs; }

gboolean dispatch_input_tick(GSource* source, GSourceFunc callback, gpointer data) {
  g_source_set_ready_time(source, next_input_tick());
  return callback(data);
}
GSourceFuncs kInputTickFuncs = {nullptr, nullptr, dispatch_input_tick, nullptr, nullptr, nullptr};

bool is_auth_error(const ServerError& error) {
  return error.type == "authentication_error" || error.code == "invalid_api_key" ||
         error.code == "beta_api_shape_disabled";
}

std::string string_or_empty(const char* text) { return text ? text : ""; }

}  // namespace

Session::Session(GMainContext* context, SessionSettings settings, SessionDelegate& delegate, GstObject* log_object)
    : context_(context),
      log_object_(log_object),
      settings_(std::move(settings)),
      delegate_(delegate),
      session_update_(build_session_update(settings_.config)),
      wake_source_(g_source_new(&kWakeFuncs, sizeof(GSource))),
      input_source_(g_source_new(&kInputTickFuncs, sizeof(GSource))),
      parser_(json_parser_new()) {
  std::string error;
  connect_url_ = build_connect_url(settings_.config, error).value_or("");  // validated by the element
  g_source_set_callback(
      wake_source_.get(),
      [](gpointer self) -> gboolean {
        static_cast<Session*>(self)->drain();
        return G_SOURCE_CONTINUE;
      },
      this, nullptr);
  g_source_set_ready_time(wake_source_.get(), -1);
  g_source_attach(wake_source_.get(), context_);
  g_source_set_callback(
      input_source_.get(),
      [](gpointer self) -> gboolean {
        auto* session = static_cast<Session*>(self);
        if (session->input_queued_.exchange(false, std::memory_order_relaxed)) session->send_input();
        return G_SOURCE_CONTINUE;
      },
      this, nullptr);
  g_source_set_ready_time(input_source_.get(), next_input_tick());
  g_source_attach(input_source_.get(), context_);
  first_attempt_us_ = g_get_monotonic_time();
  connect();
}

Session::~Session() {
  const bool was_closed = phase_ == Phase::Closed;
  phase_ = Phase::Closed;
  client_.reset();
  if (!was_closed) delegate_.session_state("closed", session_id_, attempt_);
}

void Session::wake() { g_source_set_ready_time(wake_source_.get(), 0); }

bool Session::post_function_result(const std::string& call_id, const std::string& output) {
  {
    std::lock_guard lock(inbox_mutex_);
    if (open_calls_.erase(call_id) == 0) return false;
    inbox_.push_back({Command::Kind::FunctionResult, call_id, output});
  }
  wake();
  return true;
}

void Session::post_create_response(const std::string& instructions) {
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_.push_back({Command::Kind::CreateResponse, instructions, {}});
  }
  wake();
}

// --- connection life cycle --------------------------------------------------

void Session::connect() {
  ++attempt_;
  phase_ = Phase::Connecting;
  const char* state = ever_ready_ ? "reconnecting" : "connecting";
  GST_INFO_OBJECT(log_object_, "%s to %s (model %s, attempt %u)", state, url_for_log(connect_url_).c_str(),
           settings_.config.model.c_str(), attempt_);
  delegate_.session_state(state, {}, attempt_);

  guint timeout_ms = settings_.connect_timeout_ms;
  if (!ever_ready_) {
    // The first connection has one overall deadline, shared by its attempts.
    const gint64 elapsed_ms = (g_get_monotonic_time() - first_attempt_us_) / 1000;
    timeout_ms = static_cast<guint>(std::max<gint64>(1, settings_.connect_timeout_ms - elapsed_ms));
  }
  attempt_timer_ = ScopedSource::timeout(context_, timeout_ms, [this, timeout_ms] {
    connection_lost(0, "no session.updated within " + std::to_string(timeout_ms) + " ms");
  });

  WebSocketClient::Headers headers;
  const std::string& key = settings_.config.api_key;
  if (!key.empty()) {
    if (settings_.config.azure)
      headers.emplace_back("api-key", key);
    else
      headers.emplace_back("Authorization", "Bearer " + key);
  }
  client_ = std::make_unique<WebSocketClient>(static_cast<WebSocketListener&>(*this));
  client_->connect(connect_url_, headers);
}

void Session::leave_ready() {
  rotation_timer_.reset();
  rotation_poll_.reset();
  rotation_due_ = false;
  user_speaking_ = false;
  interrupted_responses_.clear();
  set_response_active(false);
  active_response_id_.clear();
  std::lock_guard lock(inbox_mutex_);
  open_calls_.clear();  // the new server session does not know these calls
}

void Session::connection_lost(guint http_status, const std::string& why) {
  if (phase_ == Phase::Closed) return;
  client_.reset();
  attempt_timer_.reset();
  if (phase_ == Phase::Ready) {
    GST_WARNING_OBJECT(log_object_, "connection lost: %s", why.c_str());
    leave_ready();
    attempt_ = 0;
  } else {
    GST_WARNING_OBJECT(log_object_, "connection attempt %u failed: %s", attempt_, why.c_str());
  }
  if (http_status == SOUP_STATUS_UNAUTHORIZED || http_status == SOUP_STATUS_FORBIDDEN) {
    fail({"authentication_error", "http_" + std::to_string(http_status), "the server refused the API key: " + why});
    return;
  }
  const guint delay = backoff_ms(attempt_);
  if (!ever_ready_) {
    const gint64 elapsed_ms = (g_get_monotonic_time() - first_attempt_us_) / 1000;
    if (elapsed_ms + delay >= settings_.connect_timeout_ms) {
      fail({"connection_error", "connect_timeout",
            "no Realtime session within " + std::to_string(settings_.connect_timeout_ms) + " ms: " + why});
      return;
    }
  } else if (attempt_ >= settings_.reconnect_max_attempts) {
    fail({"connection_error", "reconnect_exhausted",
          "gave up after " + std::to_string(attempt_) + " reconnect attempts: " + why});
    return;
  }
  phase_ = Phase::Backoff;
  GST_INFO_OBJECT(log_object_, "next connection attempt in %u ms", delay);
  backoff_timer_ = ScopedSource::timeout(context_, delay, [this] { connect(); });
}

void Session::reconnect_now(const std::string& why) {
  GST_INFO_OBJECT(log_object_, "reconnecting at once: %s", why.c_str());
  client_.reset();
  attempt_timer_.reset();
  if (phase_ == Phase::Ready) leave_ready();
  attempt_ = 0;
  connect();
}

void Session::become_ready() {
  attempt_timer_.reset();
  if (ever_ready_) {
    GST_INFO_OBJECT(log_object_, "replaying %zu history items", history_.size());
    for (const HistoryEntry& entry : history_) send(build_history_item(entry));
  }
  phase_ = Phase::Ready;
  ever_ready_ = true;
  GST_INFO_OBJECT(log_object_, "session %s ready (attempt %u)", session_id_.c_str(), attempt_);
  delegate_.session_state("ready", session_id_, attempt_);
  attempt_ = 0;
  rotation_timer_ = ScopedSource::timeout(context_, settings_.session_max_duration_s * 1000, [this] {
    GST_INFO_OBJECT(log_object_, "session %s reached session-max-duration: rotating at the next quiet moment", session_id_.c_str());
    rotation_due_ = true;
    try_rotate();
  });
  drain();
  maybe_start_response();
}

void Session::fail(const ServerError& error) {
  GST_ERROR_OBJECT(log_object_, "giving up the Realtime session: %s (%s/%s)", error.message.c_str(), error.type.c_str(),
            error.code.c_str());
  if (phase_ == Phase::Ready) leave_ready();
  phase_ = Phase::Closed;
  client_.reset();
  attempt_timer_.reset();
  backoff_timer_.reset();
  delegate_.fatal(error);
  delegate_.session_state("closed", session_id_, attempt_);
}

bool Session::quiet() {
  return !response_active_ && pending_responses_.empty() && !user_speaking_ && !delegate_.playout_busy();
}

void Session::try_rotate() {
  if (!rotation_due_ || phase_ != Phase::Ready) return;
  if (!quiet()) {
    if (!rotation_poll_.active())
      rotation_poll_ = ScopedSource::repeating(context_, kRotationPollMs, [this] { try_rotate(); });
    return;
  }
  reconnect_now("proactive rotation of session " + session_id_);
}

// --- WebSocket events -------------------------------------------------------

void Session::on_websocket_open() {
  GST_DEBUG_OBJECT(log_object_, "WebSocket open, waiting for session.created");
  phase_ = Phase::AwaitingSessionUpdated;
}

void Session::on_websocket_failed(guint http_status, const std::string& message) {
  connection_lost(http_status, "handshake failed (HTTP " + std::to_string(http_status) + "): " + message);
}

void Session::on_websocket_closed(gushort code, const std::string& reason) {
  connection_lost(0, "closed by the server (code " + std::to_string(code) + (reason.empty() ? "" : ", " + reason) +
                         ")");
}

void Session::on_websocket_text(const char* text, gsize size) {
  g_autoptr(GError) error = nullptr;
  if (!json_parser_load_from_data(parser_.get(), text, static_cast<gssize>(size), &error)) {
    GST_WARNING_OBJECT(log_object_, "ignoring a malformed server event (%s): %.200s", error->message, text);
    return;
  }
  JsonNode* root = json_parser_get_root(parser_.get());
  JsonObject* event = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
  const char* type = member_string(event, "type");
  if (!type) {
    GST_WARNING_OBJECT(log_object_, "ignoring a server event without a type: %.200s", text);
    return;
  }
  if (std::strcmp(type, "response.output_audio.delta") == 0)
    GST_LOG_OBJECT(log_object_, "event in: %s", type);
  else
    GST_DEBUG_OBJECT(log_object_, "event in: %.300s", text);
  handle_event(event, type);
}

void Session::handle_event(JsonObject* event, const char* type) {
  const std::string_view kind = type;
  if (kind == "response.output_audio.delta") {
    handle_audio_delta(event);
  } else if (kind == "session.created") {
    session_id_ = string_or_empty(member_string(member_object(event, "session"), "id"));
    GST_DEBUG_OBJECT(log_object_, "event out: %s", session_update_.c_str());
    send(session_update_);
  } else if (kind == "session.updated") {
    if (phase_ != Phase::Ready) become_ready();
  } else if (kind == "input_audio_buffer.speech_started") {
    handle_speech_started();
  } else if (kind == "input_audio_buffer.speech_stopped") {
    user_speaking_ = false;
    speech_stopped_us_ = g_get_monotonic_time();
    try_rotate();
  } else if (kind == "response.created") {
    handle_response_created(event);
  } else if (kind == "response.done") {
    handle_response_done(event);
  } else if (kind == "response.function_call_arguments.done") {
    handle_function_call(event);
  } else if (kind == "conversation.item.input_audio_transcription.completed") {
    const std::string text = string_or_empty(member_string(event, "transcript"));
    history_.push_back({HistoryRole::User, text});
    delegate_.transcript("user", string_or_empty(member_string(event, "item_id")), text);
  } else if (kind == "response.output_audio_transcript.done") {
    const std::string text = string_or_empty(member_string(event, "transcript"));
    history_.push_back({HistoryRole::Assistant, text});
    delegate_.transcript("assistant", string_or_empty(member_string(event, "item_id")), text);
  } else if (kind == "rate_limits.updated") {
    if (JsonNode* limits = json_object_get_member(event, "rate_limits")) {
      g_autofree gchar* text = json_to_string(limits, FALSE);
      GST_INFO_OBJECT(log_object_, "rate limits: %s", text);
    }
  } else if (kind == "error") {
    handle_error(event);
  }
}

void Session::handle_error(JsonObject* event) {
  JsonObject* details = member_object(event, "error");
  ServerError error{string_or_empty(member_string(details, "type")), string_or_empty(member_string(details, "code")),
                    string_or_empty(member_string(details, "message"))};
  const std::string event_id = string_or_empty(member_string(details, "event_id"));
  if (error.code == "response_cancel_not_active") {
    GST_DEBUG_OBJECT(log_object_, "benign error: %s", error.message.c_str());
  } else if (error.code == "conversation_already_has_active_response") {
    GST_INFO_OBJECT(log_object_, "a response is already active; our response.create %s waits for its response.done", event_id.c_str());
    if (event_id == last_response_request_.event_id) pending_responses_.push_front(last_response_request_.instructions);
    set_response_active(true);
  } else if (error.code == "session_expired") {
    GST_WARNING_OBJECT(log_object_, "session %s expired: %s", session_id_.c_str(), error.message.c_str());
    reconnect_now("session expired");
  } else if (is_auth_error(error)) {
    fail(error);
  } else {
    GST_WARNING_OBJECT(log_object_, "server error %s/%s (for event %s): %s", error.type.c_str(), error.code.c_str(),
                event_id.empty() ? "-" : event_id.c_str(), error.message.c_str());
    delegate_.warning(error);
  }
}

void Session::handle_audio_delta(JsonObject* event) {
  const char* response_id = member_string(event, "response_id");
  const char* item_id = member_string(event, "item_id");
  const char* delta = member_string(event, "delta");
  if (!item_id || !delta) {
    GST_WARNING_OBJECT(log_object_, "ignoring an output_audio.delta without item_id or delta");
    return;
  }
  if (response_id && interrupted_responses_.count(response_id)) {
    GST_LOG_OBJECT(log_object_, "dropping a late delta of interrupted response %s", response_id);
    return;
  }
  if (speech_stopped_us_ != 0) {
    GST_INFO_OBJECT(log_object_, "TTFB %" G_GINT64_FORMAT " ms (speech_stopped to first audio delta)",
             (g_get_monotonic_time() - speech_stopped_us_) / 1000);
    speech_stopped_us_ = 0;
  }
  delegate_.play_delta(item_id, delta);
}

void Session::handle_speech_started() {
  user_speaking_ = true;
  if (response_active_ && !active_response_id_.empty()) interrupted_responses_.insert(active_response_id_);
  std::optional<PlayoutCut> cut = delegate_.flush_playout();
  if (!cut) return;
  GST_INFO_OBJECT(log_object_, "barge-in: truncating item %s at %" G_GUINT64_FORMAT " ms (%" G_GUINT64_FORMAT " ms received)",
           cut->item_id.c_str(), cut->played_ms, cut->received_ms);
  // Server VAD runs with interrupt_response: the server cancels the response itself.
  send(build_truncate(cut->item_id, static_cast<int>(cut->played_ms)));
  delegate_.barge_in(*cut);
}

void Session::handle_response_created(JsonObject* event) {
  active_response_id_ = string_or_empty(member_string(member_object(event, "response"), "id"));
  set_response_active(true);
}

void Session::handle_response_done(JsonObject* event) {
  JsonObject* response = member_object(event, "response");
  JsonObject* usage = member_object(response, "usage");
  JsonObject* status_details = member_object(response, "status_details");
  Usage summary{string_or_empty(member_string(response, "id")), string_or_empty(member_string(response, "status")),
                member_int(usage, "input_tokens"), member_int(usage, "output_tokens"),
                member_int(usage, "total_tokens")};
  GST_INFO_OBJECT(log_object_, "response %s done: %s%s%s, tokens in %" G_GINT64_FORMAT " out %" G_GINT64_FORMAT " total %" G_GINT64_FORMAT,
           summary.response_id.c_str(), summary.status.c_str(), status_details ? " " : "",
           status_details ? string_or_empty(member_string(status_details, "reason")).c_str() : "",
           summary.input_tokens, summary.output_tokens, summary.total_tokens);
  delegate_.usage(summary);
  interrupted_responses_.erase(summary.response_id);
  active_response_id_.clear();
  set_response_active(false);
  maybe_start_response();
  try_rotate();
}

void Session::handle_function_call(JsonObject* event) {
  const char* call_id = member_string(event, "call_id");
  const char* name = member_string(event, "name");
  if (!call_id || !name) {
    GST_WARNING_OBJECT(log_object_, "ignoring a function call without call_id or name");
    return;
  }
  const std::string arguments = string_or_empty(member_string(event, "arguments"));
  GST_INFO_OBJECT(log_object_, "function call %s: %s(%s)", call_id, name, arguments.c_str());
  {
    std::lock_guard lock(inbox_mutex_);
    open_calls_.insert(call_id);
  }
  delegate_.function_call(call_id, name, arguments);
}

// --- outgoing ---------------------------------------------------------------

bool Session::send(const std::string& text) {
  if (!client_ || !client_->send(text)) {
    GST_DEBUG_OBJECT(log_object_, "not connected: dropped %.100s", text.c_str());
    return false;
  }
  return true;
}

void Session::drain() {
  run_commands();
  send_input();
}

void Session::run_commands() {
  std::deque<Command> commands;
  {
    std::lock_guard lock(inbox_mutex_);
    commands.swap(inbox_);
  }
  for (Command& command : commands) {
    if (command.kind == Command::Kind::CreateResponse) {
      pending_responses_.push_back(std::move(command.first));
      continue;
    }
    if (phase_ != Phase::Ready) {
      GST_WARNING_OBJECT(log_object_, "dropping the output of function call %s: the session was lost", command.first.c_str());
      continue;
    }
    const std::string event = build_function_call_output(command.first, command.second);
    GST_DEBUG_OBJECT(log_object_, "event out: %s", event.c_str());
    send(event);
    // One response.create speaks every output gathered so far.
    if (pending_responses_.empty() || !pending_responses_.back().empty()) pending_responses_.emplace_back();
  }
  maybe_start_response();
}

void Session::send_input() {
  if (phase_ != Phase::Ready) return;
  const gsize chunk_bytes = settings_.input_chunk_ms * kBytesPerMs;
  input_chunk_.resize(chunk_bytes);
  while (true) {
    // A slow socket keeps the audio in the element's bounded queue (which
    // drops the oldest) instead of libsoup's unbounded one.
    if (!client_ || client_->congested()) {
      GST_LOG_OBJECT(log_object_, "socket congested: holding caller audio back");
      return;
    }
    const gsize size = delegate_.take_input(input_chunk_.data(), chunk_bytes, delegate_.input_finished());
    if (size == 0) return;
    GST_LOG_OBJECT(log_object_, "event out: input_audio_buffer.append (%" G_GSIZE_FORMAT " bytes)", size);
    if (!send(append_encoder_.encode(input_chunk_.data(), size))) break;
  }
}

void Session::maybe_start_response() {
  if (phase_ != Phase::Ready || response_active_ || pending_responses_.empty()) return;
  last_response_request_ = {std::string(kResponseEventPrefix) + std::to_string(++response_counter_),
                            std::move(pending_responses_.front())};
  pending_responses_.pop_front();
  const std::string event = build_response_create(last_response_request_.event_id, last_response_request_.instructions);
  GST_DEBUG_OBJECT(log_object_, "event out: %s", event.c_str());
  if (send(event)) set_response_active(true);
}

void Session::set_response_active(bool active) {
  if (response_active_ == active) return;
  response_active_ = active;
  delegate_.response_activity(active);
}

}  // namespace openairealtime
