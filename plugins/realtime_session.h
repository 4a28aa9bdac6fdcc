// The Realtime conversation state machine of one openairealtime element:
// connection and reconnection, session.update, input appends, response
// tracking, barge-in, function calls, history replay and rotation. It lives on
// the network thread; only the post_*() and wake() methods may be called from
// other threads.
#pragma once

#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "glib_ptr.h"
#include "realtime_connection.h"
#include "realtime_protocol.h"

namespace openairealtime {

struct SessionSettings {
  SessionConfig config;
  guint input_chunk_ms = 20;
  guint session_max_duration_s = 3000;
  guint reconnect_max_attempts = 5;
  guint connect_timeout_ms = 10000;
};

// Where playback stood when a barge-in flushed it.
struct PlayoutCut {
  std::string item_id;
  guint64 played_ms;
  guint64 received_ms;
};

struct ServerError {
  std::string type, code, message;
};

struct Usage {
  std::string response_id, status;
  gint64 input_tokens, output_tokens, total_tokens;
};

// What the session needs from its element. Called on the network thread.
class SessionDelegate {
 public:
  virtual void session_state(const char* state, const std::string& session_id, guint attempt) = 0;
  // Copies up to `max` bytes of queued caller PCM into `dest`; with `allow_partial`
  // false, returns 0 unless `max` bytes are available.
  virtual gsize take_input(guint8* dest, gsize max, bool allow_partial) = 0;
  virtual bool input_finished() = 0;
  // Queues one output_audio.delta (base64 PCM) for paced playback.
  virtual void play_delta(const std::string& item_id, const char* base64) = 0;
  // True while assistant audio is queued for playback.
  virtual bool playout_busy() = 0;
  // Flushes the playout queue; nullopt if nothing was queued.
  virtual std::optional<PlayoutCut> flush_playout() = 0;
  virtual void barge_in(const PlayoutCut& cut) = 0;
  virtual void transcript(const char* role, const std::string& item_id, const std::string& text) = 0;
  virtual void usage(const Usage& usage) = 0;
  virtual void function_call(const std::string& call_id, const std::string& name, const std::string& arguments) = 0;
  virtual void response_activity(bool active) = 0;
  virtual void warning(const ServerError& error) = 0;
  virtual void fatal(const ServerError& error) = 0;

 protected:
  ~SessionDelegate() = default;
};

class Session final : private WebSocketListener {
 public:
  // Starts connecting at once. Construct and destroy on the network thread.
  // `log_object` (the element) names the session in the debug log.
  Session(GMainContext* context, SessionSettings settings, SessionDelegate& delegate, GstObject* log_object);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Any thread: the input ended, or something must be sent now; sends what is due.
  void wake();
  // Any thread: a chunk of caller audio is queued. Sent at the next 10 ms
  // boundary of the monotonic clock, when every session's input goes out in
  // one wake-up of the network thread instead of one wake-up per chunk.
  void input_queued() { input_queued_.store(true, std::memory_order_relaxed); }
  // Any thread. False if `call_id` is not a function call awaiting its output.
  bool post_function_result(const std::string& call_id, const std::string& output);
  // Any thread: ask the model to respond (now, or after the active response).
  void post_create_response(const std::string& instructions);

 private:
  enum class Phase { Connecting, AwaitingSessionUpdated, Ready, Backoff, Closed };
  struct Command {
    enum class Kind { FunctionResult, CreateResponse } kind;
    std::string first, second;
  };

  // Connection life cycle.
  void connect();
  void connection_lost(guint http_status, const std::string& why);
  void schedule_reconnect(const std::string& why);
  void reconnect_now(const std::string& why);
  void become_ready();
  void leave_ready();
  void fail(const ServerError& error);
  void try_rotate();
  bool quiet();

  void on_websocket_open() override;
  void on_websocket_text(const char* text, gsize size) override;
  void on_websocket_failed(guint http_status, const std::string& message) override;
  void on_websocket_closed(gushort code, const std::string& reason) override;

  // Work queued by other threads.
  void drain();
  void send_input();
  void run_commands();
  void maybe_start_response();
  void set_response_active(bool active);
  bool send(const std::string& text);

  // Server events.
  void handle_event(JsonObject* event, const char* type);
  void handle_error(JsonObject* event);
  void handle_audio_delta(JsonObject* event);
  void handle_speech_started();
  void handle_response_created(JsonObject* event);
  void handle_response_done(JsonObject* event);
  void handle_function_call(JsonObject* event);

  GMainContext* context_;
  GstObject* log_object_;  // outlives the session
  SessionSettings settings_;
  SessionDelegate& delegate_;
  std::string connect_url_;
  std::string session_update_;
  std::unique_ptr<WebSocketClient> client_;
  SourcePtr wake_source_;  // dispatches drain() when woken by another thread
  SourcePtr input_source_;  // every 10 ms, on the same grid in every session
  std::atomic<bool> input_queued_{false};
  GObjectPtr<JsonParser> parser_;  // reused for every server event
  ScopedSource attempt_timer_, backoff_timer_, rotation_timer_, rotation_poll_;

  Phase phase_ = Phase::Connecting;
  bool ever_ready_ = false;
  guint attempt_ = 0;
  gint64 first_attempt_us_ = 0;
  bool rotation_due_ = false;
  std::string session_id_;

  bool response_active_ = false;
  std::string active_response_id_;
  std::deque<std::string> pending_responses_;  // instructions ("" = plain)
  guint response_counter_ = 0;
  struct ResponseRequest {
    std::string event_id, instructions;
  } last_response_request_;
  std::set<std::string> interrupted_responses_;
  bool user_speaking_ = false;
  gint64 speech_stopped_us_ = 0;
  std::vector<HistoryEntry> history_;

  std::vector<guint8> input_chunk_;
  AppendEncoder append_encoder_;

  std::mutex inbox_mutex_;  // guards the members below
  std::deque<Command> inbox_;
  std::set<std::string> open_calls_;
};

}  // namespace openairealtime
