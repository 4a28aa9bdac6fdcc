// A fake OpenAI Realtime (GA) server for tests: speaks the real protocol over a
// real WebSocket (libsoup SoupServer) on 127.0.0.1, with scripted behaviour:
// energy VAD on the appended audio, spoken replies made of a sine tone sent
// faster than real time, barge-in cancellation, truncation checks, scripted
// function calls (one per turn), and the error events of the real API.
//
// The same port serves a small HTTP control API for tests written in other
// languages (see README section in fake_realtime_main.cpp):
//   GET  /_test/sessions              JSON summary of every session
//   POST /_test/sessions/<i>/drop     close session i abruptly
//   POST /_test/sessions/<i>/send     send the request body as a text frame
//   POST /_test/sessions/<i>/reply    start a reply now, as if a turn ended
//                                     (409 while a response is active)
// It also times sound onsets in both directions (SessionSnapshot::append_onsets,
// delta_onsets) so a benchmark can measure latency without a relay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fake_realtime {

struct FunctionCall {
  std::string name;
  std::string arguments_json;
};

struct Behaviour {
  int reply_ms = 1000;             // audio length of each spoken reply
  double reply_speed = 4.0;        // deltas are sent this many times faster than real time
  int delta_ms = 100;              // audio per response.output_audio.delta
  int reply_tone_hz = 440;         // reply audio: a sine tone (easy to detect downstream)
  double speech_rms = 0.02;        // input RMS (fraction of full scale) above which a 20 ms window is speech
  // Scripted function calls: the first turn of a session (a response that does
  // not follow a function_call_output) answers with function_calls[0] instead
  // of audio, the next turn with [1], and so on; once they are used up, turns
  // get spoken replies. The response created after a function_call_output is
  // always a spoken reply.
  std::vector<FunctionCall> function_calls;
  std::optional<FunctionCall> function_call;  // the one-call form; not together with function_calls
  std::string reply_transcript = "Hello from the fake assistant.";
  std::string required_api_key;    // if non-empty, Bearer/api-key must equal it, else HTTP 401
  // Memory for long load tests: when false, appends are counted (see
  // SessionSnapshot::appends) but neither their JSON text nor their samples
  // are stored. Audio statistics are kept either way.
  bool keep_append_events = true;
  bool keep_input_audio = true;
};

struct TruncateRecord {
  std::string item_id;
  int content_index;
  int audio_end_ms;   // -1 if it was not an integer
  int audio_sent_ms;  // audio sent for that item when the truncate arrived; -1 if the item is unknown
};

struct SessionSnapshot {
  std::string path;                // "/v1/realtime" or "/openai/v1/realtime"
  std::string query;               // raw query, e.g. "model=gpt-realtime"
  std::string authorization, api_key;  // header values as received ("" if absent)
  bool beta_header = false;        // an OpenAI-Beta header was sent (then the session was refused as the real API does)
  std::vector<std::string> events; // every client event's raw JSON text, in order (appends included)
  std::string last_session_update; // raw JSON of the last valid session.update
  std::vector<int16_t> input_audio;   // all appended samples, decoded
  int speech_started = 0, speech_stopped = 0, responses_started = 0, responses_cancelled = 0;
  std::vector<TruncateRecord> truncates;
  std::vector<std::string> function_outputs;  // `output` strings of function_call_output items received
  std::vector<std::string> errors_sent;       // codes of error events we sent
  bool open = false;

  // Additions.
  std::vector<std::string> event_types;   // `type` of every client event except appends ("" if unreadable)
  size_t appends = 0;                     // input_audio_buffer.append events received
  std::vector<std::string> created_items; // raw JSON of every accepted conversation.item.create item
  std::string instructions;               // effective session instructions
  int64_t input_samples = 0;              // samples appended (also counted when not kept)
  double input_rms = 0;                   // RMS of all input, fraction of full scale
  double input_dominant_hz = 0;           // zero-crossing estimate over voiced 20 ms windows, 0 if none
  bool response_active = false;           // a response is in progress
  int64_t input_tokens = 0, output_tokens = 0;  // sums of the usage in every response.done sent

  // Sound onsets for latency benchmarks, in CLOCK_MONOTONIC seconds
  // (g_get_monotonic_time(); Python's time.monotonic()), oldest first, at most
  // kMaxOnsets each (the oldest are dropped). "Loud" means a sample above
  // kOnsetLevel of full scale.
  static constexpr size_t kMaxOnsets = 1000;
  static constexpr double kOnsetLevel = 0.05;
  std::vector<double> append_onsets;  // a loud input_audio_buffer.append received after a quiet one (or first)
  std::vector<double> delta_onsets;   // each response's first loud response.output_audio.delta, when sent
};

class Server {
 public:
  // Own thread + GMainContext; listens on 127.0.0.1 (port 0 = ephemeral).
  // Throws std::runtime_error if it cannot listen, std::invalid_argument for a
  // nonsensical behaviour.
  explicit Server(Behaviour behaviour = {}, uint16_t port = 0);
  ~Server();  // closes everything, joins the thread
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  std::string url() const;       // "ws://127.0.0.1:<port>/v1/realtime"
  std::string base_url() const;  // "http://127.0.0.1:<port>" (Azure endpoint form)
  size_t session_count() const;
  SessionSnapshot session(size_t index) const;  // thread-safe copy; throws std::out_of_range
  bool wait_until(const std::function<bool(const Server&)>& pred, int timeout_ms = 10000) const;  // polls every 10 ms
  void set_behaviour(const Behaviour&);  // applies to later turns/sessions; throws std::invalid_argument
  Behaviour behaviour() const;
  // The session methods below throw std::out_of_range for an unknown index and
  // do nothing (but log) for a session that is already closed.
  void send_raw(size_t session, const std::string& text);  // any text frame, valid JSON or not
  void send_error(size_t session, const std::string& type, const std::string& code, const std::string& message);
  // Starts a reply now (as if a turn ended); returns false (and does nothing)
  // while a response is active.
  bool start_reply(size_t session);
  void drop(size_t session);         // close the socket abruptly (TCP shutdown, no close frame)

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fake_realtime
