// OpenAI Realtime (GA) wire format: the session configuration, the client
// events we send, and the URL we connect to. Pure functions, no I/O, so they
// can be unit-tested and reused by every connection.
#pragma once

#include <json-glib/json-glib.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openairealtime {

enum class TurnDetection { ServerVad, SemanticVad, None };
enum class Eagerness { Low, Medium, High, Auto };
enum class NoiseReduction { None, NearField, FarField };

// Everything that goes into the URL, the handshake and session.update.
struct SessionConfig {
  std::string url = "wss://api.openai.com/v1/realtime";
  std::string api_key;
  std::string model = "gpt-realtime";
  bool azure = false;
  std::string voice = "marin";
  std::string instructions;
  std::string tools_json;  // validated JSON array text, empty = no tools
  TurnDetection turn_detection = TurnDetection::ServerVad;
  double vad_threshold = 0.5;
  int vad_prefix_padding_ms = 300;
  int vad_silence_duration_ms = 500;
  Eagerness vad_eagerness = Eagerness::Auto;
  int vad_idle_timeout_ms = 0;  // 0 = not sent
  std::string input_transcription_model;  // empty = transcription off
  std::string input_transcription_language;
  NoiseReduction noise_reduction = NoiseReduction::None;
};

// The WebSocket URL: `{url}?model={model}` for OpenAI,
// `{endpoint}/openai/v1/realtime?model={deployment}` for Azure; http(s) is
// mapped to ws(s). Returns nullopt (and sets `error`) for an unusable URL.
std::optional<std::string> build_connect_url(const SessionConfig& config, std::string& error);

// The URL with its query string removed, for logs (the query may carry keys).
std::string url_for_log(const std::string& url);

// Checks that `text` is a JSON array of flat tool objects (each an object with
// a string "type"; function tools need a string "name" and no nested
// Chat-Completions "function" object). Empty text is valid (no tools).
bool validate_tools_json(const std::string& text, std::string& error);

// The complete GA `session.update` event text. Only set fields are written,
// never `null`.
std::string build_session_update(const SessionConfig& config);

std::string build_truncate(const std::string& item_id, int audio_end_ms);
std::string build_function_call_output(const std::string& call_id, const std::string& output);
// `instructions` empty = plain response.create.
std::string build_response_create(const std::string& event_id, const std::string& instructions);

enum class HistoryRole { User, Assistant };
struct HistoryEntry {
  HistoryRole role;
  std::string text;
};
// A text message item replaying one transcript after a reconnect.
std::string build_history_item(const HistoryEntry& entry);

// Builds `input_audio_buffer.append` events by string concatenation into one
// reused buffer: no JSON builder and no allocation once the buffer has grown.
class AppendEncoder {
 public:
  // Returns the event text for `size` bytes of PCM; valid until the next call.
  const std::string& encode(const guint8* pcm, gsize size);

 private:
  std::string text_;
};

// Small typed accessors over a parsed server event.
const char* member_string(JsonObject* object, const char* name);
gint64 member_int(JsonObject* object, const char* name, gint64 fallback = 0);
JsonObject* member_object(JsonObject* object, const char* name);

}  // namespace openairealtime
