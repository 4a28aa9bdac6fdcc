// The fake OpenAI Realtime (GA) server: see fake_realtime_server.h.
//
// Threading: everything that touches libsoup or a session's protocol state
// runs on the server thread (its own GMainContext). The recorded part of a
// session (SessionSnapshot) and the behaviour are shared with test threads and
// guarded by one mutex; public methods hop onto the server thread.
#define G_LOG_DOMAIN "fake-realtime"

#include "fake_realtime_server.h"

#include <gio/gio.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

namespace fake_realtime {
namespace {

constexpr int kSampleRate = 24000;
constexpr int kSamplesPerMs = kSampleRate / 1000;
constexpr int kVadWindowSamples = 20 * kSamplesPerMs;  // 20 ms energy windows
constexpr int kMinCommitMs = 100;                       // the real API refuses shorter manual commits
constexpr double kToneAmplitude = 0.3;                  // fraction of full scale
constexpr int kOnsetSampleLevel = static_cast<int>(SessionSnapshot::kOnsetLevel * 32767);

const char* const kBetaRefusal =
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.";

struct GObjectUnref {
  void operator()(gpointer object) const {
    if (object)
      g_object_unref(object);
  }
};
template <typename T>
using GObjectPtr = std::unique_ptr<T, GObjectUnref>;

struct JsonNodeFree {
  void operator()(JsonNode* node) const { json_node_unref(node); }
};
using JsonNodePtr = std::unique_ptr<JsonNode, JsonNodeFree>;

// Builds one JSON object member by member; str() serializes it.
class JsonObj {
 public:
  JsonObj() : object_(json_object_new()) {}
  explicit JsonObj(JsonObject* borrowed) : object_(json_object_ref(borrowed)) {}
  JsonObj(JsonObj&& other) noexcept : object_(std::exchange(other.object_, nullptr)) {}
  JsonObj& operator=(JsonObj&& other) noexcept {
    std::swap(object_, other.object_);
    return *this;
  }
  JsonObj(const JsonObj&) = delete;
  JsonObj& operator=(const JsonObj&) = delete;
  ~JsonObj() {
    if (object_)
      json_object_unref(object_);
  }

  JsonObj& str(const char* key, const std::string& value) {
    json_object_set_string_member(object_, key, value.c_str());
    return *this;
  }
  JsonObj& num(const char* key, int64_t value) {
    json_object_set_int_member(object_, key, value);
    return *this;
  }
  JsonObj& real(const char* key, double value) {
    json_object_set_double_member(object_, key, value);
    return *this;
  }
  JsonObj& boolean(const char* key, bool value) {
    json_object_set_boolean_member(object_, key, value);
    return *this;
  }
  JsonObj& null(const char* key) {
    json_object_set_null_member(object_, key);
    return *this;
  }
  JsonObj& obj(const char* key, JsonObj&& child) {
    json_object_set_object_member(object_, key, child.release());
    return *this;
  }
  JsonObj& arr(const char* key, JsonArray* owned) {
    json_object_set_array_member(object_, key, owned);
    return *this;
  }
  JsonObj& node(const char* key, JsonNode* owned) {
    json_object_set_member(object_, key, owned);
    return *this;
  }
  JsonObject* get() const { return object_; }
  JsonObject* release() { return std::exchange(object_, nullptr); }
  std::string str() const {
    JsonNodePtr root(json_node_init_object(json_node_alloc(), object_));
    g_autofree char* text = json_to_string(root.get(), FALSE);
    return text;
  }

 private:
  JsonObject* object_;
};

JsonArray* string_array(std::initializer_list<const char*> values) {
  JsonArray* array = json_array_new();
  for (const char* value : values)
    json_array_add_string_element(array, value);
  return array;
}

JsonArray* array_of(JsonObj&& element) {
  JsonArray* array = json_array_new();
  json_array_add_object_element(array, element.release());
  return array;
}

JsonNode* nullable_string(const std::string& value) {
  JsonNode* node = json_node_new(JSON_NODE_NULL);
  if (!value.empty())
    json_node_init_string(node, value.c_str());
  return node;
}

// Parses text into an object node; nullptr if it is not a JSON object.
JsonNodePtr parse_object(const char* text, gssize length) {
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  if (!json_parser_load_from_data(parser, text, length, nullptr))
    return nullptr;
  JsonNode* root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root))
    return nullptr;
  return JsonNodePtr(json_node_ref(root));
}

// A new object with the members of source (member values are shared, so
// only the top level of the copy may be changed).
JsonObj copy_members(JsonObject* source) {
  JsonObj copy;
  g_autoptr(GList) members = json_object_get_members(source);
  for (GList* it = members; it; it = it->next) {
    const char* key = static_cast<const char*>(it->data);
    copy.node(key, json_node_copy(json_object_get_member(source, key)));
  }
  return copy;
}

std::string node_to_string(JsonNode* node) {
  g_autofree char* text = json_to_string(node, FALSE);
  return text;
}

// A string member, or "" if absent or not a string.
std::string string_member(JsonObject* object, const char* key) {
  JsonNode* node = json_object_get_member(object, key);
  if (!node || JSON_NODE_TYPE(node) != JSON_NODE_VALUE || json_node_get_value_type(node) != G_TYPE_STRING)
    return "";
  return json_node_get_string(node);
}

JsonObject* object_member(JsonObject* object, const char* key) {
  JsonNode* node = json_object_get_member(object, key);
  return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : nullptr;
}

bool is_integer(JsonNode* node) {
  return node && JSON_NODE_TYPE(node) == JSON_NODE_VALUE && json_node_get_value_type(node) == G_TYPE_INT64;
}

bool is_boolean(JsonNode* node) {
  return node && JSON_NODE_TYPE(node) == JSON_NODE_VALUE && json_node_get_value_type(node) == G_TYPE_BOOLEAN;
}

bool is_base64(const char* text, size_t length) {
  for (size_t i = 0; i < length; ++i) {
    const char c = text[i];
    if (!g_ascii_isalnum(c) && c != '+' && c != '/' && c != '=')
      return false;
  }
  return true;
}

// The reply tone of one behaviour, cut into base64 deltas once and shared by
// every response (phase-continuous across chunks).
struct ReplyAudio {
  int reply_ms = 0;
  int delta_ms = 0;
  int tone_hz = 0;
  std::vector<std::string> chunks;  // base64 PCM16 LE
  std::vector<int> chunk_ms;
  std::vector<bool> chunk_loud;     // has a sample above the onset level
};

std::shared_ptr<const ReplyAudio> make_reply_audio(const Behaviour& behaviour) {
  auto audio = std::make_shared<ReplyAudio>();
  audio->reply_ms = behaviour.reply_ms;
  audio->delta_ms = behaviour.delta_ms;
  audio->tone_hz = behaviour.reply_tone_hz;
  std::vector<uint8_t> pcm;
  int64_t sample_index = 0;
  for (int start_ms = 0; start_ms < behaviour.reply_ms; start_ms += behaviour.delta_ms) {
    const int ms = std::min(behaviour.delta_ms, behaviour.reply_ms - start_ms);
    pcm.resize(static_cast<size_t>(ms) * kSamplesPerMs * 2);
    bool loud = false;
    for (size_t i = 0; i < pcm.size(); i += 2, ++sample_index) {
      const double phase = 2.0 * G_PI * behaviour.reply_tone_hz * static_cast<double>(sample_index) / kSampleRate;
      const auto sample = static_cast<int16_t>(std::lround(kToneAmplitude * 32767.0 * std::sin(phase)));
      pcm[i] = static_cast<uint8_t>(sample & 0xff);
      pcm[i + 1] = static_cast<uint8_t>((static_cast<uint16_t>(sample) >> 8) & 0xff);
      loud = loud || std::abs(sample) > kOnsetSampleLevel;
    }
    g_autofree char* encoded = g_base64_encode(pcm.data(), pcm.size());
    audio->chunks.emplace_back(encoded);
    audio->chunk_ms.push_back(ms);
    audio->chunk_loud.push_back(loud);
  }
  return audio;
}

// The function calls that successive turns answer with.
std::vector<FunctionCall> scripted_calls(const Behaviour& behaviour) {
  if (behaviour.function_call)
    return {*behaviour.function_call};
  return behaviour.function_calls;
}

void validate(const Behaviour& behaviour) {
  if (behaviour.reply_ms <= 0 || behaviour.reply_ms > 600000)
    throw std::invalid_argument("reply_ms must be in 1..600000");
  if (behaviour.delta_ms <= 0 || behaviour.delta_ms > 10000)
    throw std::invalid_argument("delta_ms must be in 1..10000");
  if (!(behaviour.reply_speed > 0) || behaviour.reply_speed > 1e6)
    throw std::invalid_argument("reply_speed must be > 0");
  if (behaviour.reply_tone_hz <= 0 || behaviour.reply_tone_hz >= kSampleRate / 2)
    throw std::invalid_argument("reply_tone_hz must be in 1..11999");
  if (!(behaviour.speech_rms > 0) || behaviour.speech_rms > 1)
    throw std::invalid_argument("speech_rms must be in (0, 1]");
  if (behaviour.function_call && !behaviour.function_calls.empty())
    throw std::invalid_argument("set function_call or function_calls, not both");
  for (const FunctionCall& call : scripted_calls(behaviour)) {
    if (call.name.empty())
      throw std::invalid_argument("function_call needs a name");
    if (!parse_object(call.arguments_json.c_str(), -1))
      throw std::invalid_argument("function_call arguments must be a JSON object");
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// session.update: GA shape validation, defaults and partial-update merge.
namespace {

struct ProtocolError {
  std::string code;
  std::string message;
  std::string param;
};
using MaybeError = std::optional<ProtocolError>;

ProtocolError unknown_parameter(const std::string& path) {
  return {"unknown_parameter", "Unknown parameter: '" + path + "'.", path};
}
ProtocolError missing_parameter(const std::string& path) {
  return {"missing_required_parameter", "Missing required parameter: '" + path + "'.", path};
}
ProtocolError invalid_type(const std::string& path, const std::string& expected, JsonNode* got) {
  const char* got_name = JSON_NODE_HOLDS_NULL(got) ? "null" : json_node_type_name(got);
  return {"invalid_type",
          "Invalid type for '" + path + "': expected " + expected + ", but got " + got_name + " instead.", path};
}
ProtocolError invalid_value(const std::string& path, const std::string& detail) {
  return {"invalid_value", "Invalid value for '" + path + "': " + detail, path};
}

MaybeError check_keys(JsonObject* object, const std::string& path, std::initializer_list<const char*> allowed) {
  g_autoptr(GList) members = json_object_get_members(object);
  for (GList* it = members; it; it = it->next) {
    const char* key = static_cast<const char*>(it->data);
    if (std::none_of(allowed.begin(), allowed.end(), [key](const char* a) { return strcmp(a, key) == 0; }))
      return unknown_parameter(path + "." + key);
  }
  return std::nullopt;
}

// Optional member that must be an object (or null when nullable).
MaybeError check_object(JsonObject* parent, const char* key, const std::string& path, bool nullable) {
  JsonNode* node = json_object_get_member(parent, key);
  if (!node || JSON_NODE_HOLDS_OBJECT(node) || (nullable && JSON_NODE_HOLDS_NULL(node)))
    return std::nullopt;
  return invalid_type(path, nullable ? "an object or null" : "an object", node);
}

MaybeError check_string(JsonObject* parent, const char* key, const std::string& path) {
  JsonNode* node = json_object_get_member(parent, key);
  if (!node || (JSON_NODE_TYPE(node) == JSON_NODE_VALUE && json_node_get_value_type(node) == G_TYPE_STRING))
    return std::nullopt;
  return invalid_type(path, "a string", node);
}

MaybeError check_format(JsonObject* parent, const std::string& path) {
  if (auto error = check_object(parent, "format", path, false))
    return error;
  JsonObject* format = object_member(parent, "format");
  if (!format)
    return std::nullopt;
  if (auto error = check_keys(format, path, {"type", "rate"}))
    return error;
  const std::string type = string_member(format, "type");
  if (type.empty())
    return missing_parameter(path + ".type");
  if (type == "audio/pcmu" || type == "audio/pcma")
    return invalid_value(path + ".type", "this fake server only speaks 'audio/pcm' at 24000 Hz.");
  if (type != "audio/pcm")
    return invalid_value(path + ".type", "'" + type + "' is not one of 'audio/pcm', 'audio/pcmu', 'audio/pcma'.");
  JsonNode* rate = json_object_get_member(format, "rate");
  if (!rate)
    return missing_parameter(path + ".rate");
  if (!is_integer(rate))
    return invalid_type(path + ".rate", "an integer", rate);
  if (json_node_get_int(rate) != kSampleRate)
    return invalid_value(path + ".rate", "only 24000 is supported.");
  return std::nullopt;
}

MaybeError check_turn_detection(JsonObject* input, const std::string& path) {
  if (auto error = check_object(input, "turn_detection", path, true))
    return error;
  JsonObject* detection = object_member(input, "turn_detection");
  if (!detection)
    return std::nullopt;
  if (auto error = check_keys(detection, path,
                              {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
                               "create_response", "interrupt_response", "eagerness"}))
    return error;
  const std::string type = string_member(detection, "type");
  if (type.empty())
    return missing_parameter(path + ".type");
  if (type != "server_vad" && type != "semantic_vad")
    return invalid_value(path + ".type", "expected 'server_vad' or 'semantic_vad'.");
  for (const char* flag : {"create_response", "interrupt_response"}) {
    JsonNode* node = json_object_get_member(detection, flag);
    if (node && !is_boolean(node))
      return invalid_type(path + "." + flag, "a boolean", node);
  }
  for (const char* ms : {"silence_duration_ms", "prefix_padding_ms"}) {
    JsonNode* node = json_object_get_member(detection, ms);
    if (node && !is_integer(node))
      return invalid_type(path + "." + ms, "an integer", node);
    if (node && json_node_get_int(node) < 0)
      return invalid_value(path + "." + ms, "must not be negative.");
  }
  return std::nullopt;
}

MaybeError check_audio(JsonObject* session) {
  if (auto error = check_object(session, "audio", "session.audio", false))
    return error;
  JsonObject* audio = object_member(session, "audio");
  if (!audio)
    return std::nullopt;
  if (auto error = check_keys(audio, "session.audio", {"input", "output"}))
    return error;
  if (auto error = check_object(audio, "input", "session.audio.input", false))
    return error;
  if (JsonObject* input = object_member(audio, "input")) {
    const std::string path = "session.audio.input";
    if (auto error = check_keys(input, path, {"format", "transcription", "noise_reduction", "turn_detection"}))
      return error;
    if (auto error = check_format(input, path + ".format"))
      return error;
    if (auto error = check_object(input, "transcription", path + ".transcription", true))
      return error;
    if (auto error = check_object(input, "noise_reduction", path + ".noise_reduction", true))
      return error;
    if (auto error = check_turn_detection(input, path + ".turn_detection"))
      return error;
  }
  if (auto error = check_object(audio, "output", "session.audio.output", false))
    return error;
  if (JsonObject* output = object_member(audio, "output")) {
    const std::string path = "session.audio.output";
    if (auto error = check_keys(output, path, {"format", "voice", "speed"}))
      return error;
    if (auto error = check_format(output, path + ".format"))
      return error;
    JsonNode* voice = json_object_get_member(output, "voice");
    if (voice && !JSON_NODE_HOLDS_OBJECT(voice) &&
        !(JSON_NODE_TYPE(voice) == JSON_NODE_VALUE && json_node_get_value_type(voice) == G_TYPE_STRING))
      return invalid_type(path + ".voice", "a string or an object", voice);
    JsonNode* speed = json_object_get_member(output, "speed");
    if (speed) {
      if (JSON_NODE_TYPE(speed) != JSON_NODE_VALUE ||
          (json_node_get_value_type(speed) != G_TYPE_DOUBLE && json_node_get_value_type(speed) != G_TYPE_INT64))
        return invalid_type(path + ".speed", "a number", speed);
      const double value = json_node_get_double(speed);
      if (value < 0.25 || value > 1.5)
        return invalid_value(path + ".speed", "must be between 0.25 and 1.5.");
    }
  }
  return std::nullopt;
}

MaybeError check_tools(JsonObject* session) {
  JsonNode* tools = json_object_get_member(session, "tools");
  if (!tools)
    return std::nullopt;
  if (!JSON_NODE_HOLDS_ARRAY(tools))
    return invalid_type("session.tools", "an array", tools);
  JsonArray* array = json_node_get_array(tools);
  for (guint i = 0; i < json_array_get_length(array); ++i) {
    const std::string path = "session.tools[" + std::to_string(i) + "]";
    JsonNode* tool = json_array_get_element(array, i);
    if (!JSON_NODE_HOLDS_OBJECT(tool))
      return invalid_type(path, "an object", tool);
    JsonObject* object = json_node_get_object(tool);
    const std::string type = string_member(object, "type");
    if (type != "function" && type != "mcp")
      return invalid_value(path + ".type", "expected 'function' or 'mcp'.");
    if (type == "function" && string_member(object, "name").empty())
      return missing_parameter(path + ".name");  // what the nested Chat Completions form gets
  }
  return std::nullopt;
}

MaybeError validate_session(JsonObject* session) {
  // Beta fields (voice, modalities, turn_detection, ...) fall out here as unknown parameters.
  if (auto error = check_keys(session, "session",
                              {"type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
                               "max_output_tokens", "truncation", "prompt", "include", "tracing", "reasoning",
                               "parallel_tool_calls"}))
    return error;
  g_autoptr(GList) members = json_object_get_members(session);
  for (GList* it = members; it; it = it->next) {
    const char* key = static_cast<const char*>(it->data);
    const bool nullable = strcmp(key, "tracing") == 0 || strcmp(key, "prompt") == 0;
    if (!nullable && JSON_NODE_HOLDS_NULL(json_object_get_member(session, key)))
      return invalid_type(std::string("session.") + key, "a value", json_object_get_member(session, key));
  }
  const std::string type = string_member(session, "type");
  if (type.empty())
    return missing_parameter("session.type");
  if (type != "realtime")
    return invalid_value("session.type", type == "transcription"
                                             ? "this fake server only implements 'realtime' sessions."
                                             : "expected 'realtime' or 'transcription'.");
  if (auto error = check_string(session, "instructions", "session.instructions"))
    return error;
  if (auto error = check_string(session, "model", "session.model"))
    return error;
  if (JsonNode* modalities = json_object_get_member(session, "output_modalities")) {
    if (!JSON_NODE_HOLDS_ARRAY(modalities))
      return invalid_type("session.output_modalities", "an array", modalities);
    JsonArray* array = json_node_get_array(modalities);
    if (json_array_get_length(array) != 1 || g_strcmp0(json_array_get_string_element(array, 0), "audio") != 0)
      return invalid_value("session.output_modalities", "this fake server only produces [\"audio\"].");
  }
  if (auto error = check_audio(session))
    return error;
  return check_tools(session);
}

JsonObj default_format() {
  JsonObj format;
  format.str("type", "audio/pcm").num("rate", kSampleRate);
  return format;
}

JsonObj default_turn_detection() {
  JsonObj detection;
  detection.str("type", "server_vad")
      .real("threshold", 0.5)
      .num("prefix_padding_ms", 300)
      .num("silence_duration_ms", 500)
      .null("idle_timeout_ms")
      .boolean("create_response", true)
      .boolean("interrupt_response", true);
  return detection;
}

// The effective session of a new connection, as session.created reports it.
JsonObj default_session(const std::string& id, const std::string& model) {
  JsonObj input, output, audio, session;
  input.obj("format", default_format())
      .null("transcription")
      .null("noise_reduction")
      .obj("turn_detection", default_turn_detection());
  output.obj("format", default_format()).str("voice", "alloy").real("speed", 1.0);
  audio.obj("input", std::move(input)).obj("output", std::move(output));
  session.str("type", "realtime")
      .str("object", "realtime.session")
      .str("id", id)
      .str("model", model)
      .arr("output_modalities", string_array({"audio"}))
      .str("instructions", "")
      .obj("audio", std::move(audio))
      .arr("tools", json_array_new())
      .str("tool_choice", "auto")
      .str("max_output_tokens", "inf")
      .null("tracing")
      .null("prompt")
      .str("truncation", "auto")
      .num("expires_at", g_get_real_time() / G_USEC_PER_SEC + 3600);
  return session;
}

// Partial update: nested audio objects are merged member by member; a
// turn_detection object replaces the old one, completed with the defaults.
void merge_session(JsonObject* target, JsonObject* update) {
  g_autoptr(GList) members = json_object_get_members(update);
  for (GList* it = members; it; it = it->next) {
    const char* key = static_cast<const char*>(it->data);
    JsonNode* value = json_object_get_member(update, key);
    JsonObject* existing = object_member(target, key);
    const bool nested = strcmp(key, "audio") == 0 || strcmp(key, "input") == 0 || strcmp(key, "output") == 0;
    if (nested && existing && JSON_NODE_HOLDS_OBJECT(value)) {
      merge_session(existing, json_node_get_object(value));
    } else if (strcmp(key, "turn_detection") == 0 && JSON_NODE_HOLDS_OBJECT(value)) {
      JsonObj detection = default_turn_detection();
      merge_session(detection.get(), json_node_get_object(value));
      json_object_set_object_member(target, key, detection.release());
    } else {
      json_object_set_member(target, key, json_node_copy(value));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// The server object and one WebSocket session.

class Session;

class Server::Impl {
 public:
  Impl(Behaviour behaviour, uint16_t port);
  ~Impl();

  // Runs fn on the server thread and waits for it (inline if already there).
  void run_on_server(const std::function<void()>& fn);
  // Checks the index under the lock, then runs fn with that session on the server thread.
  void with_session(size_t index, const std::function<void(Session&)>& fn);

  std::string next_id(const char* prefix) { return std::string(prefix) + "_" + std::to_string(++id_counter_); }
  Behaviour behaviour_copy() const {
    std::lock_guard lock(mutex);
    return behaviour;
  }
  double speech_rms() const {
    std::lock_guard lock(mutex);
    return behaviour.speech_rms;
  }
  bool keep_input_audio() const {
    std::lock_guard lock(mutex);
    return behaviour.keep_input_audio;
  }
  std::shared_ptr<const ReplyAudio> current_reply_audio() const {
    std::lock_guard lock(mutex);
    return reply_audio;
  }
  void set_behaviour(const Behaviour& next) {
    validate(next);
    auto audio = make_reply_audio(next);
    std::lock_guard lock(mutex);
    behaviour = next;
    reply_audio = std::move(audio);
  }

  GMainContext* context() const { return context_; }
  uint16_t port() const { return port_; }

  mutable std::mutex mutex;  // guards behaviour, reply_audio, sessions (the vector and each record)
  Behaviour behaviour;
  std::shared_ptr<const ReplyAudio> reply_audio;
  std::vector<std::unique_ptr<Session>> sessions;

 private:
  void serve(uint16_t requested_port, std::promise<uint16_t>& listening);
  void stop_on_server();
  static void on_realtime_request(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable* query,
                                  gpointer self);
  static void on_websocket(SoupServer*, SoupServerMessage* msg, const char* path, SoupWebsocketConnection* ws,
                           gpointer self);
  static void on_control_request(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable* query,
                                 gpointer self);
  void handle_control(SoupServerMessage* msg, const std::string& path);

  GMainContext* context_ = nullptr;
  GMainLoop* loop_ = nullptr;
  GObjectPtr<SoupServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
  uint64_t id_counter_ = 0;  // server thread only
};

namespace {

struct SourceDestroy {
  void operator()(GSource* source) const {
    g_source_destroy(source);
    g_source_unref(source);
  }
};
using SourcePtr = std::unique_ptr<GSource, SourceDestroy>;

// A response in progress. Function-call responses complete at once and are
// never "active" between main-loop iterations.
struct AudioResponse {
  std::string id;
  std::string item_id;
  std::shared_ptr<const ReplyAudio> audio;
  std::vector<std::string> transcript_pieces;  // one per audio chunk (may be empty)
  std::string transcript_sent;
  size_t chunks_sent = 0;
  int ms_sent = 0;
  double speed = 1.0;
  int64_t started_us = 0;
  bool onset_sent = false;  // a loud delta of this response has been sent
  SourcePtr timer;
};

double monotonic_seconds() {
  return static_cast<double>(g_get_monotonic_time()) / 1e6;
}

// Keeps the newest SessionSnapshot::kMaxOnsets times (onsets come seconds apart).
void add_onset(std::vector<double>& onsets, double at) {
  if (onsets.size() >= SessionSnapshot::kMaxOnsets)
    onsets.erase(onsets.begin());
  onsets.push_back(at);
}

size_t count_words(const std::string& text) {
  size_t words = 0;
  for (size_t i = 0; i < text.size(); ++i)
    words += text[i] != ' ' && (i == 0 || text[i - 1] == ' ');
  return words;
}

// Splits text into n consecutive pieces at word boundaries (UTF-8 safe).
std::vector<std::string> split_words(const std::string& text, size_t n) {
  std::vector<std::string> words;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    end = end == std::string::npos ? text.size() : end + 1;
    words.push_back(text.substr(start, end - start));
    start = end;
  }
  std::vector<std::string> pieces(n);
  for (size_t i = 0; i < words.size() && n > 0; ++i)
    pieces[i * n / words.size()] += words[i];
  return pieces;
}

}  // namespace

class Session {
 public:
  Session(Server::Impl& impl, size_t index, SoupServerMessage* msg, const char* path, SoupWebsocketConnection* ws);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  void send_text(const std::string& text);
  void send_error(const std::string& type, const std::string& code, const std::string& message,
                  const std::string& param = "", const std::string& client_event_id = "");
  bool start_reply();
  void drop();
  void close_for_shutdown();

  SessionSnapshot record;  // guarded by impl_.mutex

 private:
  template <typename F>
  void update_record(F&& change) {
    std::lock_guard lock(impl_.mutex);
    change(record);
  }
  JsonObj event(const char* type) {
    JsonObj e;
    e.str("type", type).str("event_id", impl_.next_id("event"));
    return e;
  }
  void send(const JsonObj& e) { send_text(e.str()); }
  void send_error(const ProtocolError& error, const std::string& client_event_id) {
    send_error("invalid_request_error", error.code, error.message, error.param, client_event_id);
  }
  JsonNode* previous_item() const { return nullable_string(last_item_id_); }

  static void on_message(SoupWebsocketConnection*, gint type, GBytes* message, gpointer self);
  static void on_closed(SoupWebsocketConnection*, gpointer self);
  static void on_error(SoupWebsocketConnection*, GError* error, gpointer self);
  void handle_message(const char* text, size_t length);
  void handle_session_update(JsonObject* event, const std::string& raw, const std::string& client_event_id);
  void apply_effective_session();
  void handle_append(JsonObject* event, const std::string& client_event_id);
  void process_samples(const int16_t* samples, size_t count);
  void finish_vad_window();
  void handle_commit(const std::string& client_event_id);
  void handle_clear();
  void commit_turn(int64_t turn_ms, bool from_vad);
  void handle_item_create(JsonObject* event, const std::string& client_event_id);
  void handle_truncate(JsonObject* event, const std::string& client_event_id);
  void handle_response_create(JsonObject* event, const std::string& client_event_id);
  void handle_response_cancel(JsonObject* event, const std::string& client_event_id);

  void start_response();
  JsonObj response_object(const std::string& id, const char* status) const;
  JsonObj usage(int output_audio_ms, size_t output_text_words);
  void run_function_call(const std::string& response_id, const FunctionCall& call);
  void start_audio_response(const std::string& response_id, const Behaviour& behaviour);
  static gboolean on_audio_tick(gpointer self);
  void send_due_audio();
  void finish_audio_response(const char* cancel_reason);

  Server::Impl& impl_;
  const size_t index_;
  GObjectPtr<SoupWebsocketConnection> ws_;
  std::string session_id_;
  JsonObj effective_;  // the effective session, as session.updated reports it

  // Turn detection (from the effective session).
  bool vad_enabled_ = true;
  int silence_duration_ms_ = 500;
  int prefix_padding_ms_ = 300;
  bool create_response_ = true;
  bool interrupt_response_ = true;
  bool transcription_ = false;

  // Input audio and the energy VAD.
  std::vector<uint8_t> decoded_;   // reused per append
  std::vector<int16_t> samples_;   // reused per append
  std::optional<uint8_t> odd_byte_;
  bool last_append_loud_ = false;  // for append onsets
  int64_t samples_total_ = 0;
  int64_t uncommitted_samples_ = 0;
  int window_fill_ = 0;
  double window_energy_ = 0;
  int window_crossings_ = 0;
  int16_t last_sample_ = 0;
  double energy_total_ = 0;
  int64_t voiced_windows_ = 0;
  int64_t voiced_crossings_ = 0;
  bool in_speech_ = false;
  int quiet_ms_ = 0;
  int64_t speech_start_ms_ = 0;
  std::string user_item_id_;

  // Conversation.
  std::optional<AudioResponse> response_;
  std::map<std::string, int> assistant_audio_ms_;  // audio sent (or left after truncation) per assistant item
  std::set<std::string> open_calls_;               // function calls awaiting their output
  size_t function_calls_used_ = 0;  // turns that answered with a scripted function call
  bool reply_to_output_due_ = false; // a function_call_output arrived: the next response speaks
  std::string last_item_id_;
};

// ---------------------------------------------------------------------------
// Session: connection and client events.

Session::Session(Server::Impl& impl, size_t index, SoupServerMessage* msg, const char* path,
                 SoupWebsocketConnection* ws)
    : impl_(impl), index_(index), ws_(GObjectPtr<SoupWebsocketConnection>(
                                      static_cast<SoupWebsocketConnection*>(g_object_ref(ws)))) {
  session_id_ = impl_.next_id("sess");
  GUri* uri = soup_server_message_get_uri(msg);
  const char* query = g_uri_get_query(uri);
  g_autoptr(GHashTable) params = soup_form_decode(query ? query : "");
  const char* model = static_cast<const char*>(g_hash_table_lookup(params, "model"));
  effective_ = default_session(session_id_, model ? model : "");
  SoupMessageHeaders* headers = soup_server_message_get_request_headers(msg);
  auto header = [headers](const char* name) {
    const char* value = soup_message_headers_get_one(headers, name);
    return std::string(value ? value : "");
  };
  record.path = path;
  record.query = query ? query : "";
  record.authorization = header("Authorization");
  record.api_key = header("api-key");
  record.beta_header = soup_message_headers_get_one(headers, "OpenAI-Beta") != nullptr;
  record.open = true;
  g_signal_connect(ws, "message", G_CALLBACK(on_message), this);
  g_signal_connect(ws, "closed", G_CALLBACK(on_closed), this);
  g_signal_connect(ws, "error", G_CALLBACK(on_error), this);
}

Session::~Session() {
  response_.reset();
  if (ws_)
    g_signal_handlers_disconnect_by_data(ws_.get(), this);
}

void Session::start() {
  if (record.beta_header) {
    g_message("session %zu: refusing the OpenAI-Beta header", index_);
    send_error("invalid_request_error", "beta_api_shape_disabled", kBetaRefusal);
    soup_websocket_connection_close(ws_.get(), 4000, "beta_api_shape_disabled");
    return;
  }
  JsonObj created = event("session.created");
  created.node("session", json_node_init_object(json_node_alloc(), effective_.get()));
  send(created);
}

void Session::send_text(const std::string& text) {
  if (!ws_ || soup_websocket_connection_get_state(ws_.get()) != SOUP_WEBSOCKET_STATE_OPEN) {
    g_message("session %zu: not open, dropping a server event", index_);
    return;
  }
  soup_websocket_connection_send_text(ws_.get(), text.c_str());
}

void Session::send_error(const std::string& type, const std::string& code, const std::string& message,
                         const std::string& param, const std::string& client_event_id) {
  g_message("session %zu: error %s: %s", index_, code.c_str(), message.c_str());
  JsonObj error;
  error.str("type", type)
      .str("code", code)
      .str("message", message)
      .node("param", nullable_string(param))
      .node("event_id", nullable_string(client_event_id));
  JsonObj e = event("error");
  e.obj("error", std::move(error));
  update_record([&](SessionSnapshot& r) { r.errors_sent.push_back(code); });
  send(e);
}

void Session::drop() {
  if (!ws_)
    return;
  // Shut the TCP connection down under the WebSocket: the peer sees the
  // stream end without a close frame (1006), as when a proxy dies.
  GIOStream* stream = soup_websocket_connection_get_io_stream(ws_.get());
  if (G_IS_SOCKET_CONNECTION(stream)) {
    GSocket* socket = g_socket_connection_get_socket(G_SOCKET_CONNECTION(stream));
    g_socket_shutdown(socket, TRUE, TRUE, nullptr);
  } else {
    g_io_stream_close(stream, nullptr, nullptr);
  }
  g_message("session %zu: dropped", index_);
}

void Session::close_for_shutdown() {
  response_.reset();
  if (ws_ && soup_websocket_connection_get_state(ws_.get()) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close(ws_.get(), SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "server shutting down");
}

void Session::on_closed(SoupWebsocketConnection* ws, gpointer self) {
  auto* session = static_cast<Session*>(self);
  g_message("session %zu: closed (code %u)", session->index_, soup_websocket_connection_get_close_code(ws));
  session->response_.reset();
  session->update_record([](SessionSnapshot& r) {
    r.open = false;
    r.response_active = false;
  });
  g_signal_handlers_disconnect_by_data(ws, self);
  // Release the connection once this signal emission is over.
  GSource* idle = g_idle_source_new();
  g_source_set_callback(idle, [](gpointer) -> gboolean { return G_SOURCE_REMOVE; }, session->ws_.release(),
                        g_object_unref);
  g_source_attach(idle, session->impl_.context());
  g_source_unref(idle);
}

void Session::on_error(SoupWebsocketConnection*, GError* error, gpointer self) {
  g_message("session %zu: websocket error: %s", static_cast<Session*>(self)->index_, error->message);
}

void Session::on_message(SoupWebsocketConnection*, gint type, GBytes* message, gpointer self) {
  auto* session = static_cast<Session*>(self);
  gsize length = 0;
  const auto* data = static_cast<const char*>(g_bytes_get_data(message, &length));
  if (type != SOUP_WEBSOCKET_DATA_TEXT) {
    session->send_error("invalid_request_error", "invalid_json", "Binary frames are not supported; send JSON text.");
    return;
  }
  session->handle_message(data ? data : "", length);
}

void Session::handle_message(const char* text, size_t length) {
  JsonNodePtr root = parse_object(text, static_cast<gssize>(length));
  JsonObject* object = root ? json_node_get_object(root.get()) : nullptr;
  const std::string type = object ? string_member(object, "type") : "";
  const bool append = type == "input_audio_buffer.append";
  {
    std::lock_guard lock(impl_.mutex);
    if (!append || impl_.behaviour.keep_append_events)
      record.events.emplace_back(text, length);
    if (append)
      ++record.appends;
    else
      record.event_types.push_back(type);
  }
  if (!object) {
    send_error("invalid_request_error", "invalid_json",
               "We could not parse the JSON body of your request. Expected a JSON object.");
    return;
  }
  const std::string client_event_id = string_member(object, "event_id");
  if (type == "input_audio_buffer.append")
    handle_append(object, client_event_id);
  else if (type == "session.update")
    handle_session_update(object, std::string(text, length), client_event_id);
  else if (type == "input_audio_buffer.commit")
    handle_commit(client_event_id);
  else if (type == "input_audio_buffer.clear")
    handle_clear();
  else if (type == "conversation.item.create")
    handle_item_create(object, client_event_id);
  else if (type == "conversation.item.truncate")
    handle_truncate(object, client_event_id);
  else if (type == "response.create")
    handle_response_create(object, client_event_id);
  else if (type == "response.cancel")
    handle_response_cancel(object, client_event_id);
  else if (type.empty())
    send_error(missing_parameter("type"), client_event_id);
  else
    send_error(invalid_value("type", "'" + type + "' is not a client event this server implements."),
               client_event_id);
}

void Session::handle_session_update(JsonObject* event, const std::string& raw, const std::string& client_event_id) {
  JsonNode* session = json_object_get_member(event, "session");
  if (!session) {
    send_error(missing_parameter("session"), client_event_id);
    return;
  }
  if (!JSON_NODE_HOLDS_OBJECT(session)) {
    send_error(invalid_type("session", "an object", session), client_event_id);
    return;
  }
  if (MaybeError error = validate_session(json_node_get_object(session))) {
    send_error(*error, client_event_id);
    return;
  }
  merge_session(effective_.get(), json_node_get_object(session));
  apply_effective_session();
  const std::string instructions = string_member(effective_.get(), "instructions");
  update_record([&](SessionSnapshot& r) {
    r.last_session_update = raw;
    r.instructions = instructions;
  });
  JsonObj updated = this->event("session.updated");
  updated.node("session", json_node_init_object(json_node_alloc(), effective_.get()));
  send(updated);
}

void Session::apply_effective_session() {
  JsonObject* audio = object_member(effective_.get(), "audio");
  JsonObject* input = audio ? object_member(audio, "input") : nullptr;
  JsonObject* detection = input ? object_member(input, "turn_detection") : nullptr;
  JsonNode* transcription = input ? json_object_get_member(input, "transcription") : nullptr;
  transcription_ = transcription && JSON_NODE_HOLDS_OBJECT(transcription);
  vad_enabled_ = detection != nullptr;
  if (!vad_enabled_) {
    in_speech_ = false;
    return;
  }
  silence_duration_ms_ = static_cast<int>(json_object_get_int_member_with_default(detection, "silence_duration_ms", 500));
  prefix_padding_ms_ = static_cast<int>(json_object_get_int_member_with_default(detection, "prefix_padding_ms", 300));
  create_response_ = json_object_get_boolean_member_with_default(detection, "create_response", TRUE);
  interrupt_response_ = json_object_get_boolean_member_with_default(detection, "interrupt_response", TRUE);
}

// ---------------------------------------------------------------------------
// Session: input audio, energy VAD and turns.

void Session::handle_append(JsonObject* event, const std::string& client_event_id) {
  const double received_at = monotonic_seconds();
  JsonNode* audio = json_object_get_member(event, "audio");
  if (!audio) {
    send_error(missing_parameter("audio"), client_event_id);
    return;
  }
  if (JSON_NODE_TYPE(audio) != JSON_NODE_VALUE || json_node_get_value_type(audio) != G_TYPE_STRING) {
    send_error(invalid_type("audio", "a base64 string", audio), client_event_id);
    return;
  }
  const char* encoded = json_node_get_string(audio);
  const size_t length = strlen(encoded);
  if (length % 4 != 0 || !is_base64(encoded, length)) {
    send_error(invalid_value("audio", "Invalid base64 audio data."), client_event_id);
    return;
  }
  // Decode behind a byte carried over from an odd-sized previous append.
  const size_t offset = odd_byte_ ? 1 : 0;
  decoded_.resize(offset + length / 4 * 3 + 3);
  if (odd_byte_)
    decoded_[0] = *std::exchange(odd_byte_, std::nullopt);
  gint state = 0;
  guint save = 0;
  const size_t bytes = offset + g_base64_decode_step(encoded, length, decoded_.data() + offset, &state, &save);
  const size_t count = bytes / 2;
  if (bytes % 2)
    odd_byte_ = decoded_[bytes - 1];
  samples_.resize(count);
  int max_abs = 0;
  for (size_t i = 0; i < count; ++i) {
    samples_[i] = static_cast<int16_t>(decoded_[2 * i] | (decoded_[2 * i + 1] << 8));  // little-endian
    max_abs = std::max(max_abs, std::abs(static_cast<int>(samples_[i])));
  }
  const bool loud = max_abs > kOnsetSampleLevel;
  if (loud && !last_append_loud_)
    update_record([at = received_at](SessionSnapshot& r) { add_onset(r.append_onsets, at); });
  last_append_loud_ = loud;
  process_samples(samples_.data(), count);
}

void Session::process_samples(const int16_t* samples, size_t count) {
  const bool keep = impl_.keep_input_audio();
  for (size_t i = 0; i < count; ++i) {
    const double value = samples[i];
    energy_total_ += value * value;
    window_energy_ += value * value;
    if ((samples[i] >= 0) != (last_sample_ >= 0))
      ++window_crossings_;
    last_sample_ = samples[i];
    ++samples_total_;
    ++uncommitted_samples_;
    if (++window_fill_ == kVadWindowSamples)
      finish_vad_window();
  }
  const double rms = samples_total_ ? std::sqrt(energy_total_ / static_cast<double>(samples_total_)) / 32768.0 : 0;
  const double dominant_hz =
      voiced_windows_ ? static_cast<double>(voiced_crossings_) / 2.0 / (static_cast<double>(voiced_windows_) * 0.020)
                      : 0;
  update_record([&](SessionSnapshot& r) {
    if (keep)
      r.input_audio.insert(r.input_audio.end(), samples, samples + count);
    r.input_samples = samples_total_;
    r.input_rms = rms;
    r.input_dominant_hz = dominant_hz;
  });
}

void Session::finish_vad_window() {
  const double rms = std::sqrt(window_energy_ / kVadWindowSamples) / 32768.0;
  const bool voiced = rms > impl_.speech_rms();
  if (voiced) {
    ++voiced_windows_;
    voiced_crossings_ += window_crossings_;
  }
  window_fill_ = 0;
  window_energy_ = 0;
  window_crossings_ = 0;
  if (!vad_enabled_)
    return;
  const int64_t window_end_ms = samples_total_ / kSamplesPerMs;
  if (voiced) {
    quiet_ms_ = 0;
    if (in_speech_)
      return;
    in_speech_ = true;
    speech_start_ms_ = window_end_ms - 20;
    user_item_id_ = impl_.next_id("item");
    update_record([](SessionSnapshot& r) { ++r.speech_started; });
    JsonObj started = event("input_audio_buffer.speech_started");
    started.num("audio_start_ms", std::max<int64_t>(0, speech_start_ms_ - prefix_padding_ms_))
        .str("item_id", user_item_id_);
    send(started);
    if (response_ && interrupt_response_)
      finish_audio_response("turn_detected");  // barge-in
    return;
  }
  if (!in_speech_)
    return;
  quiet_ms_ += 20;
  if (quiet_ms_ < silence_duration_ms_)
    return;
  in_speech_ = false;
  const int64_t speech_end_ms = window_end_ms - quiet_ms_;
  update_record([](SessionSnapshot& r) { ++r.speech_stopped; });
  JsonObj stopped = event("input_audio_buffer.speech_stopped");
  stopped.num("audio_end_ms", speech_end_ms).str("item_id", user_item_id_);
  send(stopped);
  commit_turn(speech_end_ms - speech_start_ms_, true);
}

void Session::handle_commit(const std::string& client_event_id) {
  const double buffered_ms = static_cast<double>(uncommitted_samples_) / kSamplesPerMs;
  if (buffered_ms < kMinCommitMs) {
    char message[200];
    g_snprintf(message, sizeof message,
               "Error committing input audio buffer: buffer too small. Expected at least %dms of audio, but buffer "
               "only has %.2fms of audio.",
               kMinCommitMs, buffered_ms);
    send_error("invalid_request_error", "input_audio_buffer_commit_empty", message, "", client_event_id);
    return;
  }
  in_speech_ = false;
  commit_turn(static_cast<int64_t>(buffered_ms), false);
}

void Session::handle_clear() {
  uncommitted_samples_ = 0;
  in_speech_ = false;
  user_item_id_.clear();
  send(event("input_audio_buffer.cleared"));
}

void Session::commit_turn(int64_t turn_ms, bool from_vad) {
  const std::string item_id = user_item_id_.empty() ? impl_.next_id("item") : std::exchange(user_item_id_, "");
  uncommitted_samples_ = 0;
  JsonObj committed = event("input_audio_buffer.committed");
  committed.node("previous_item_id", previous_item()).str("item_id", item_id);
  send(committed);
  auto user_item = [&] {
    JsonObj content, item;
    content.str("type", "input_audio").null("transcript");
    item.str("id", item_id)
        .str("object", "realtime.item")
        .str("type", "message")
        .str("status", "completed")
        .str("role", "user")
        .arr("content", array_of(std::move(content)));
    return item;
  };
  JsonObj added = event("conversation.item.added");
  added.node("previous_item_id", previous_item()).obj("item", user_item());
  send(added);
  JsonObj done = event("conversation.item.done");
  done.node("previous_item_id", previous_item()).obj("item", user_item());
  send(done);
  last_item_id_ = item_id;
  if (transcription_) {
    JsonObj usage;
    usage.str("type", "duration").real("seconds", static_cast<double>(turn_ms) / 1000.0);
    JsonObj transcript = event("conversation.item.input_audio_transcription.completed");
    transcript.str("item_id", item_id)
        .num("content_index", 0)
        .str("transcript", "(fake transcript of " + std::to_string(turn_ms) + " ms)")
        .obj("usage", std::move(usage));
    send(transcript);
  }
  if (from_vad && create_response_) {
    if (response_)
      g_message("session %zu: turn ended while a response is active; not starting another", index_);
    else
      start_response();
  }
}

// ---------------------------------------------------------------------------
// Session: conversation items.

void Session::handle_item_create(JsonObject* event, const std::string& client_event_id) {
  JsonNode* item_node = json_object_get_member(event, "item");
  if (!item_node) {
    send_error(missing_parameter("item"), client_event_id);
    return;
  }
  if (!JSON_NODE_HOLDS_OBJECT(item_node)) {
    send_error(invalid_type("item", "an object", item_node), client_event_id);
    return;
  }
  JsonObject* item = json_node_get_object(item_node);
  const std::string type = string_member(item, "type");
  if (type == "function_call_output") {
    const std::string call_id = string_member(item, "call_id");
    if (call_id.empty()) {
      send_error(missing_parameter("item.call_id"), client_event_id);
      return;
    }
    if (!open_calls_.count(call_id)) {
      send_error({"invalid_value", "Tool call ID '" + call_id + "' not found in conversation.", "item.call_id"},
                 client_event_id);
      return;
    }
    JsonNode* output = json_object_get_member(item, "output");
    if (!output || JSON_NODE_TYPE(output) != JSON_NODE_VALUE || json_node_get_value_type(output) != G_TYPE_STRING) {
      send_error(output ? invalid_type("item.output", "a string", output) : missing_parameter("item.output"),
                 client_event_id);
      return;
    }
    open_calls_.erase(call_id);
    reply_to_output_due_ = true;
    update_record([&](SessionSnapshot& r) { r.function_outputs.push_back(json_node_get_string(output)); });
  } else if (type == "message") {
    const std::string role = string_member(item, "role");
    if (role != "user" && role != "assistant" && role != "system") {
      send_error(invalid_value("item.role", "expected 'user', 'assistant' or 'system'."), client_event_id);
      return;
    }
    JsonNode* content = json_object_get_member(item, "content");
    if (!content || !JSON_NODE_HOLDS_ARRAY(content)) {
      send_error(content ? invalid_type("item.content", "an array", content) : missing_parameter("item.content"),
                 client_event_id);
      return;
    }
    JsonArray* parts = json_node_get_array(content);
    for (guint i = 0; i < json_array_get_length(parts); ++i) {
      JsonNode* part = json_array_get_element(parts, i);
      const std::string part_type = JSON_NODE_HOLDS_OBJECT(part) ? string_member(json_node_get_object(part), "type") : "";
      const std::string path = "item.content[" + std::to_string(i) + "].type";
      if (role == "assistant" && part_type != "output_text" && part_type != "text") {
        send_error(invalid_value(path, "assistant messages can only contain 'output_text' (audio cannot be created)."),
                   client_event_id);
        return;
      }
      if (role != "assistant" && part_type != "input_text" && part_type != "input_audio" && part_type != "input_image") {
        send_error(invalid_value(path, "expected 'input_text', 'input_audio' or 'input_image'."), client_event_id);
        return;
      }
    }
  } else if (type != "function_call") {
    send_error(invalid_value("item.type", "expected 'message', 'function_call' or 'function_call_output'."),
               client_event_id);
    return;
  }
  std::string item_id = string_member(item, "id");
  if (item_id.empty())
    item_id = impl_.next_id("item");
  update_record([&](SessionSnapshot& r) { r.created_items.push_back(node_to_string(item_node)); });
  auto stored_item = [&] {
    JsonObj copy = copy_members(item);
    copy.str("id", item_id).str("object", "realtime.item").str("status", "completed");
    return copy;
  };
  JsonObj added = this->event("conversation.item.added");
  added.node("previous_item_id", previous_item()).obj("item", stored_item());
  send(added);
  JsonObj done = this->event("conversation.item.done");
  done.node("previous_item_id", previous_item()).obj("item", stored_item());
  send(done);
  last_item_id_ = item_id;
}

void Session::handle_truncate(JsonObject* event, const std::string& client_event_id) {
  const std::string item_id = string_member(event, "item_id");
  JsonNode* content_index = json_object_get_member(event, "content_index");
  JsonNode* end = json_object_get_member(event, "audio_end_ms");
  const auto known = assistant_audio_ms_.find(item_id);
  const int sent_ms = known == assistant_audio_ms_.end() ? -1 : known->second;
  const int end_ms = is_integer(end) ? static_cast<int>(json_node_get_int(end)) : -1;
  const int index = is_integer(content_index) ? static_cast<int>(json_node_get_int(content_index)) : -1;
  update_record([&](SessionSnapshot& r) { r.truncates.push_back({item_id, index, end_ms, sent_ms}); });
  if (item_id.empty()) {
    send_error(missing_parameter("item_id"), client_event_id);
  } else if (!end) {
    send_error(missing_parameter("audio_end_ms"), client_event_id);
  } else if (!is_integer(end)) {
    send_error(invalid_type("audio_end_ms", "an integer", end), client_event_id);
  } else if (!content_index) {
    send_error(missing_parameter("content_index"), client_event_id);
  } else if (index != 0) {
    send_error(invalid_value("content_index", "the assistant audio is content 0."), client_event_id);
  } else if (sent_ms < 0) {
    send_error({"invalid_value", "Item with item_id '" + item_id + "' not found or has no audio content.", "item_id"},
               client_event_id);
  } else if (end_ms < 0) {
    send_error(invalid_value("audio_end_ms", "must not be negative."), client_event_id);
  } else if (end_ms > sent_ms) {
    send_error({"invalid_value",
                "Audio content of " + std::to_string(sent_ms) + "ms is already shorter than " +
                    std::to_string(end_ms) + "ms",
                "audio_end_ms"},
               client_event_id);
  } else {
    known->second = end_ms;
    JsonObj truncated = this->event("conversation.item.truncated");
    truncated.str("item_id", item_id).num("content_index", 0).num("audio_end_ms", end_ms);
    send(truncated);
  }
}

// ---------------------------------------------------------------------------
// Session: responses.

void Session::handle_response_create(JsonObject* event, const std::string& client_event_id) {
  JsonNode* options = json_object_get_member(event, "response");
  if (options && !JSON_NODE_HOLDS_OBJECT(options)) {
    send_error(invalid_type("response", "an object", options), client_event_id);
    return;
  }
  if (response_) {
    send_error("invalid_request_error", "conversation_already_has_active_response",
               "Conversation already has an active response in progress: " + response_->id +
                   ". Wait until the response is finished before creating a new one.",
               "", client_event_id);
    return;
  }
  start_response();
}

void Session::handle_response_cancel(JsonObject* event, const std::string& client_event_id) {
  const std::string response_id = string_member(event, "response_id");
  if (!response_ || (!response_id.empty() && response_id != response_->id)) {
    send_error("invalid_request_error", "response_cancel_not_active",
               "Cancellation failed: no active response found", "", client_event_id);
    return;
  }
  finish_audio_response("client_cancelled");
}

bool Session::start_reply() {
  if (response_) {
    g_message("session %zu: a response is already active; reply request ignored", index_);
    return false;
  }
  start_response();
  return true;
}

JsonObj Session::response_object(const std::string& id, const char* status) const {
  JsonObj response;
  response.str("id", id)
      .str("object", "realtime.response")
      .str("status", status)
      .null("status_details")
      .arr("output", json_array_new())
      .str("conversation_id", "conv_" + session_id_)
      .arr("output_modalities", string_array({"audio"}))
      .null("usage");
  return response;
}

// The usage of one response.done, also added to the session's totals.
JsonObj Session::usage(int output_audio_ms, size_t output_text_words) {
  // Roughly the real rates: 10 audio tokens per second in, 20 out.
  const auto input_audio = static_cast<int64_t>(samples_total_ / kSampleRate * 10);
  const auto output_audio = static_cast<int64_t>(output_audio_ms / 50);
  const auto output_text = static_cast<int64_t>(output_text_words);
  update_record([&](SessionSnapshot& r) {
    r.input_tokens += input_audio;
    r.output_tokens += output_audio + output_text;
  });
  JsonObj cached, input, output, usage;
  cached.num("text_tokens", 0).num("audio_tokens", 0).num("image_tokens", 0);
  input.num("text_tokens", 0)
      .num("audio_tokens", input_audio)
      .num("image_tokens", 0)
      .num("cached_tokens", 0)
      .obj("cached_tokens_details", std::move(cached));
  output.num("text_tokens", output_text).num("audio_tokens", output_audio);
  usage.num("total_tokens", input_audio + output_audio + output_text)
      .num("input_tokens", input_audio)
      .num("output_tokens", output_audio + output_text)
      .obj("input_token_details", std::move(input))
      .obj("output_token_details", std::move(output));
  return usage;
}

void Session::start_response() {
  const Behaviour behaviour = impl_.behaviour_copy();
  const std::string response_id = impl_.next_id("resp");
  update_record([](SessionSnapshot& r) { ++r.responses_started; });
  JsonObj created = event("response.created");
  created.obj("response", response_object(response_id, "in_progress"));
  send(created);
  JsonObj limit;
  limit.str("name", "tokens").num("limit", 40000).num("remaining", 39000).real("reset_seconds", 1.5);
  JsonObj limits = event("rate_limits.updated");
  limits.arr("rate_limits", array_of(std::move(limit)));
  send(limits);
  const std::vector<FunctionCall> calls = scripted_calls(behaviour);
  const bool new_turn = !std::exchange(reply_to_output_due_, false);
  if (new_turn && function_calls_used_ < calls.size()) {
    run_function_call(response_id, calls[function_calls_used_++]);
  } else {
    start_audio_response(response_id, behaviour);
  }
}

void Session::run_function_call(const std::string& response_id, const FunctionCall& call) {
  const std::string item_id = impl_.next_id("item");
  const std::string call_id = impl_.next_id("call");
  open_calls_.insert(call_id);
  auto item = [&](const char* status, const std::string& arguments) {
    JsonObj object;
    object.str("id", item_id)
        .str("object", "realtime.item")
        .str("type", "function_call")
        .str("status", status)
        .str("name", call.name)
        .str("call_id", call_id)
        .str("arguments", arguments);
    return object;
  };
  auto with_ids = [&](const char* type) {
    JsonObj e = event(type);
    e.str("response_id", response_id).str("item_id", item_id).num("output_index", 0).str("call_id", call_id);
    return e;
  };
  JsonObj added = event("response.output_item.added");
  added.str("response_id", response_id).num("output_index", 0).obj("item", item("in_progress", ""));
  send(added);
  JsonObj item_added = event("conversation.item.added");
  item_added.node("previous_item_id", previous_item()).obj("item", item("in_progress", ""));
  send(item_added);
  JsonObj delta = with_ids("response.function_call_arguments.delta");
  delta.str("delta", call.arguments_json);
  send(delta);
  JsonObj arguments_done = with_ids("response.function_call_arguments.done");
  arguments_done.str("name", call.name).str("arguments", call.arguments_json);
  send(arguments_done);
  JsonObj item_done = event("response.output_item.done");
  item_done.str("response_id", response_id).num("output_index", 0).obj("item", item("completed", call.arguments_json));
  send(item_done);
  JsonObj conversation_done = event("conversation.item.done");
  conversation_done.node("previous_item_id", previous_item()).obj("item", item("completed", call.arguments_json));
  send(conversation_done);
  last_item_id_ = item_id;
  JsonObj response = response_object(response_id, "completed");
  response.arr("output", array_of(item("completed", call.arguments_json))).obj("usage", usage(0, 1));
  JsonObj done = event("response.done");
  done.obj("response", std::move(response));
  send(done);
}

void Session::start_audio_response(const std::string& response_id, const Behaviour& behaviour) {
  AudioResponse& r = response_.emplace();
  update_record([](SessionSnapshot& record) { record.response_active = true; });
  r.id = response_id;
  r.item_id = impl_.next_id("item");
  r.audio = impl_.current_reply_audio();
  r.transcript_pieces = split_words(behaviour.reply_transcript, r.audio->chunks.size());
  r.speed = behaviour.reply_speed;
  assistant_audio_ms_[r.item_id] = 0;
  JsonObj item;
  item.str("id", r.item_id)
      .str("object", "realtime.item")
      .str("type", "message")
      .str("status", "in_progress")
      .str("role", "assistant")
      .arr("content", json_array_new());
  JsonObj added = event("response.output_item.added");
  added.str("response_id", r.id).num("output_index", 0).obj("item", copy_members(item.get()));
  send(added);
  JsonObj item_added = event("conversation.item.added");
  item_added.node("previous_item_id", previous_item()).obj("item", std::move(item));
  send(item_added);
  last_item_id_ = r.item_id;
  JsonObj part;
  part.str("type", "output_audio").str("transcript", "");
  JsonObj part_added = event("response.content_part.added");
  part_added.str("response_id", r.id)
      .str("item_id", r.item_id)
      .num("output_index", 0)
      .num("content_index", 0)
      .obj("part", std::move(part));
  send(part_added);

  r.started_us = g_get_monotonic_time();
  const auto interval_ms = static_cast<guint>(std::max(1.0, r.audio->delta_ms / r.speed));
  r.timer.reset(g_timeout_source_new(interval_ms));
  g_source_set_callback(r.timer.get(), on_audio_tick, this, nullptr);
  g_source_attach(r.timer.get(), impl_.context());
  send_due_audio();
}

gboolean Session::on_audio_tick(gpointer self) {
  static_cast<Session*>(self)->send_due_audio();
  return G_SOURCE_CONTINUE;  // finish_audio_response() destroys the source when done
}

// Sends every chunk whose start time (scaled by the speed) has come.
void Session::send_due_audio() {
  AudioResponse& r = *response_;
  const double due_ms = static_cast<double>(g_get_monotonic_time() - r.started_us) / 1000.0 * r.speed;
  const size_t total = r.audio->chunks.size();
  while (r.chunks_sent < total && static_cast<double>(r.chunks_sent) * r.audio->delta_ms <= due_ms) {
    const size_t i = r.chunks_sent++;
    std::string text;
    text.reserve(r.audio->chunks[i].size() + 200);
    text.append(R"({"type":"response.output_audio.delta","event_id":")")
        .append(impl_.next_id("event"))
        .append(R"(","response_id":")")
        .append(r.id)
        .append(R"(","item_id":")")
        .append(r.item_id)
        .append(R"(","output_index":0,"content_index":0,"delta":")")
        .append(r.audio->chunks[i])
        .append("\"}");
    send_text(text);
    if (!response_)
      return;  // the socket failed and closed under us
    if (!r.onset_sent && r.audio->chunk_loud[i]) {
      r.onset_sent = true;
      update_record([at = monotonic_seconds()](SessionSnapshot& record) { add_onset(record.delta_onsets, at); });
    }
    r.ms_sent += r.audio->chunk_ms[i];
    assistant_audio_ms_[r.item_id] = r.ms_sent;
    if (!r.transcript_pieces[i].empty()) {
      JsonObj transcript = event("response.output_audio_transcript.delta");
      transcript.str("response_id", r.id)
          .str("item_id", r.item_id)
          .num("output_index", 0)
          .num("content_index", 0)
          .str("delta", r.transcript_pieces[i]);
      send(transcript);
      r.transcript_sent += r.transcript_pieces[i];
    }
  }
  if (r.chunks_sent == total)
    finish_audio_response(nullptr);
}

// Completes the active response, or cancels it when cancel_reason is set.
void Session::finish_audio_response(const char* cancel_reason) {
  AudioResponse r = std::move(*response_);
  response_.reset();
  update_record([](SessionSnapshot& record) { record.response_active = false; });
  r.timer.reset();
  auto with_ids = [&](const char* type) {
    JsonObj e = event(type);
    e.str("response_id", r.id).str("item_id", r.item_id).num("output_index", 0).num("content_index", 0);
    return e;
  };
  send(with_ids("response.output_audio.done"));
  JsonObj transcript_done = with_ids("response.output_audio_transcript.done");
  transcript_done.str("transcript", r.transcript_sent);
  send(transcript_done);
  auto part = [&] {
    JsonObj p;
    p.str("type", "output_audio").str("transcript", r.transcript_sent);
    return p;
  };
  JsonObj part_done = with_ids("response.content_part.done");
  part_done.obj("part", part());
  send(part_done);
  auto item = [&] {
    JsonObj object;
    object.str("id", r.item_id)
        .str("object", "realtime.item")
        .str("type", "message")
        .str("status", cancel_reason ? "incomplete" : "completed")
        .str("role", "assistant")
        .arr("content", array_of(part()));
    return object;
  };
  JsonObj item_done = event("response.output_item.done");
  item_done.str("response_id", r.id).num("output_index", 0).obj("item", item());
  send(item_done);
  JsonObj conversation_done = event("conversation.item.done");
  conversation_done.obj("item", item());
  send(conversation_done);
  JsonObj response = response_object(r.id, cancel_reason ? "cancelled" : "completed");
  if (cancel_reason) {
    JsonObj details;
    details.str("type", "cancelled").str("reason", cancel_reason);
    response.obj("status_details", std::move(details));
  }
  response.arr("output", array_of(item())).obj("usage", usage(r.ms_sent, count_words(r.transcript_sent)));
  JsonObj done = event("response.done");
  done.obj("response", std::move(response));
  if (cancel_reason)
    update_record([](SessionSnapshot& r) { ++r.responses_cancelled; });
  send(done);
}

// ---------------------------------------------------------------------------
// Server::Impl: thread, HTTP handshake checks, control API.

namespace {

void reply_json(SoupServerMessage* msg, guint status, const std::string& body) {
  soup_server_message_set_status(msg, status, nullptr);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body.data(), body.size());
}

// An HTTP error in the shape of the real API's JSON error bodies.
void reply_http_error(SoupServerMessage* msg, guint status, const char* code, const std::string& message) {
  g_message("refusing %s %s: %u %s", soup_server_message_get_method(msg),
            g_uri_get_path(soup_server_message_get_uri(msg)), status, message.c_str());
  JsonObj error, body;
  error.str("message", message).str("type", "invalid_request_error").str("code", code).null("param");
  body.obj("error", std::move(error));
  reply_json(msg, status, body.str());
}

std::string bearer_token(const char* authorization) {
  constexpr std::string_view prefix = "Bearer ";
  if (!authorization || strncmp(authorization, prefix.data(), prefix.size()) != 0)
    return "";
  return authorization + prefix.size();
}

const char* lookup(GHashTable* query, const char* key) {
  return query ? static_cast<const char*>(g_hash_table_lookup(query, key)) : nullptr;
}

JsonObj summary(const SessionSnapshot& s) {
  JsonArray* events = json_array_new();
  for (const std::string& type : s.event_types)
    json_array_add_string_element(events, type.c_str());
  JsonArray* truncates = json_array_new();
  for (const TruncateRecord& t : s.truncates) {
    JsonObj record;
    record.str("item_id", t.item_id).num("audio_end_ms", t.audio_end_ms).num("audio_sent_ms", t.audio_sent_ms);
    json_array_add_object_element(truncates, record.release());
  }
  JsonArray* outputs = json_array_new();
  for (const std::string& output : s.function_outputs)
    json_array_add_string_element(outputs, output.c_str());
  JsonArray* errors = json_array_new();
  for (const std::string& code : s.errors_sent)
    json_array_add_string_element(errors, code.c_str());
  auto times = [](const std::vector<double>& seconds) {
    JsonArray* array = json_array_sized_new(static_cast<guint>(seconds.size()));
    for (const double t : seconds)
      json_array_add_double_element(array, t);
    return array;
  };
  JsonObj object;
  object.str("path", s.path)
      .str("query", s.query)
      .boolean("authorization_present", !s.authorization.empty())
      .boolean("api_key_present", !s.api_key.empty())
      .str("instructions", s.instructions)
      .arr("events", events)
      .num("appends", static_cast<int64_t>(s.appends))
      .num("input_ms", s.input_samples / kSamplesPerMs)
      .real("input_rms", s.input_rms)
      .real("input_dominant_hz", s.input_dominant_hz)
      .num("speech_started", s.speech_started)
      .num("speech_stopped", s.speech_stopped)
      .num("responses_started", s.responses_started)
      .num("responses_cancelled", s.responses_cancelled)
      .boolean("response_active", s.response_active)
      .num("input_tokens", s.input_tokens)
      .num("output_tokens", s.output_tokens)
      .arr("truncates", truncates)
      .arr("function_outputs", outputs)
      .arr("errors_sent", errors)
      .arr("append_onsets", times(s.append_onsets))
      .arr("delta_onsets", times(s.delta_onsets))
      .boolean("open", s.open);
  return object;
}

}  // namespace

Server::Impl::Impl(Behaviour initial, uint16_t port) {
  set_behaviour(initial);
  context_ = g_main_context_new();
  loop_ = g_main_loop_new(context_, FALSE);
  std::promise<uint16_t> listening;
  std::future<uint16_t> bound = listening.get_future();
  thread_ = std::thread([this, port, &listening] { serve(port, listening); });
  try {
    port_ = bound.get();
  } catch (...) {
    thread_.join();
    g_main_loop_unref(loop_);
    g_main_context_unref(context_);
    throw;
  }
}

Server::Impl::~Impl() {
  run_on_server([this] { stop_on_server(); });
  thread_.join();
  g_main_loop_unref(loop_);
  g_main_context_unref(context_);
}

void Server::Impl::serve(uint16_t requested_port, std::promise<uint16_t>& listening) {
  g_main_context_push_thread_default(context_);
  server_.reset(static_cast<SoupServer*>(g_object_new(SOUP_TYPE_SERVER, "server-header", "fake-realtime ", nullptr)));
  for (const char* path : {"/v1/realtime", "/openai/v1/realtime"}) {
    soup_server_add_handler(server_.get(), path, on_realtime_request, this, nullptr);
    soup_server_add_websocket_handler(server_.get(), path, nullptr, nullptr, on_websocket, this, nullptr);
  }
  soup_server_add_handler(server_.get(), "/_test", on_control_request, this, nullptr);
  g_autoptr(GError) error = nullptr;
  if (!soup_server_listen_local(server_.get(), requested_port, SOUP_SERVER_LISTEN_IPV4_ONLY, &error)) {
    server_.reset();
    g_main_context_pop_thread_default(context_);
    listening.set_exception(std::make_exception_ptr(
        std::runtime_error("fake-realtime: cannot listen on 127.0.0.1:" + std::to_string(requested_port) + ": " +
                           error->message)));
    return;
  }
  GSList* uris = soup_server_get_uris(server_.get());
  const int port = uris ? g_uri_get_port(static_cast<GUri*>(uris->data)) : 0;
  g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
  g_message("listening on 127.0.0.1:%d", port);
  listening.set_value(static_cast<uint16_t>(port));

  g_main_loop_run(loop_);

  // Let the close frames go out, then release every connection.
  for (int i = 0; i < 100 && g_main_context_iteration(context_, FALSE); ++i) {
  }
  std::vector<std::unique_ptr<Session>> closing;
  {
    std::lock_guard lock(mutex);
    closing.swap(sessions);
  }
  closing.clear();
  soup_server_disconnect(server_.get());
  server_.reset();
  while (g_main_context_iteration(context_, FALSE)) {
  }
  g_main_context_pop_thread_default(context_);
}

void Server::Impl::stop_on_server() {
  std::vector<Session*> open;
  {
    std::lock_guard lock(mutex);
    for (auto& session : sessions)
      open.push_back(session.get());
  }
  for (Session* session : open)
    session->close_for_shutdown();
  g_main_loop_quit(loop_);
}

void Server::Impl::run_on_server(const std::function<void()>& fn) {
  if (g_main_context_is_owner(context_)) {
    fn();
    return;
  }
  struct Call {
    const std::function<void()>& fn;
    std::promise<void> done;
  } call{fn, {}};
  std::future<void> done = call.done.get_future();
  GSource* source = g_idle_source_new();
  g_source_set_priority(source, G_PRIORITY_DEFAULT);
  g_source_set_callback(
      source,
      [](gpointer data) -> gboolean {
        auto* call = static_cast<Call*>(data);
        try {
          call->fn();
          call->done.set_value();
        } catch (...) {
          call->done.set_exception(std::current_exception());
        }
        return G_SOURCE_REMOVE;
      },
      &call, nullptr);
  g_source_attach(source, context_);
  g_source_unref(source);
  done.get();
}

void Server::Impl::with_session(size_t index, const std::function<void(Session&)>& fn) {
  Session* session = nullptr;
  {
    std::lock_guard lock(mutex);
    if (index >= sessions.size())
      throw std::out_of_range("fake-realtime: no session " + std::to_string(index) + " (have " +
                              std::to_string(sessions.size()) + ")");
    session = sessions[index].get();
  }
  run_on_server([&] { fn(*session); });
}

void Server::Impl::on_realtime_request(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable* query,
                                       gpointer self) {
  auto* impl = static_cast<Impl*>(self);
  const bool azure = g_str_has_prefix(path, "/openai/");
  if (strcmp(path, azure ? "/openai/v1/realtime" : "/v1/realtime") != 0) {
    reply_http_error(msg, SOUP_STATUS_NOT_FOUND, "not_found", std::string("Unknown path ") + path);
    return;
  }
  SoupMessageHeaders* headers = soup_server_message_get_request_headers(msg);
  const char* authorization = soup_message_headers_get_one(headers, "Authorization");
  std::string key = bearer_token(authorization);
  if (azure) {
    if (lookup(query, "api-version")) {
      reply_http_error(msg, SOUP_STATUS_UNAUTHORIZED, "invalid_api_version",
                       "api-version is not allowed on the /openai/v1 API (that is the retired preview protocol).");
      return;
    }
    const char* api_key = soup_message_headers_get_one(headers, "api-key");
    if (!api_key)
      api_key = lookup(query, "api-key");
    if (api_key)
      key = api_key;
  }
  if (key.empty()) {
    reply_http_error(msg, SOUP_STATUS_UNAUTHORIZED, "missing_api_key",
                     azure ? "Access denied due to missing subscription key (api-key header)."
                           : "You didn't provide an API key (Authorization: Bearer <key>).");
    return;
  }
  const std::string required = impl->behaviour_copy().required_api_key;
  if (!required.empty() && key != required) {
    reply_http_error(msg, SOUP_STATUS_UNAUTHORIZED, "invalid_api_key", "Incorrect API key provided.");
    return;
  }
  if (!lookup(query, "model")) {
    reply_http_error(msg, SOUP_STATUS_BAD_REQUEST, "missing_model", "Missing required parameter: 'model'.");
    return;
  }
  // No status set: the WebSocket handler now completes the handshake.
}

void Server::Impl::on_websocket(SoupServer*, SoupServerMessage* msg, const char* path, SoupWebsocketConnection* ws,
                                gpointer self) {
  auto* impl = static_cast<Impl*>(self);
  Session* session = nullptr;
  {
    std::lock_guard lock(impl->mutex);
    impl->sessions.push_back(std::make_unique<Session>(*impl, impl->sessions.size(), msg, path, ws));
    session = impl->sessions.back().get();
  }
  session->start();
}

void Server::Impl::on_control_request(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable*,
                                      gpointer self) {
  try {
    static_cast<Impl*>(self)->handle_control(msg, path);
  } catch (const std::out_of_range& e) {
    reply_http_error(msg, SOUP_STATUS_NOT_FOUND, "unknown_session", e.what());
  }
}

void Server::Impl::handle_control(SoupServerMessage* msg, const std::string& path) {
  const std::string method = soup_server_message_get_method(msg);
  if (path == "/_test/sessions") {
    if (method != "GET") {
      reply_http_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed", "Use GET.");
      return;
    }
    JsonArray* list = json_array_new();
    {
      std::lock_guard lock(mutex);
      for (const auto& session : sessions)
        json_array_add_object_element(list, summary(session->record).release());
    }
    JsonNodePtr root(json_node_init_array(json_node_alloc(), list));
    json_array_unref(list);
    reply_json(msg, SOUP_STATUS_OK, node_to_string(root.get()));
    return;
  }
  // POST /_test/sessions/<i>/<action>
  size_t index = 0;
  char action[16] = {};
  int consumed = 0;
  if (sscanf(path.c_str(), "/_test/sessions/%zu/%15[a-z]%n", &index, action, &consumed) != 2 ||
      static_cast<size_t>(consumed) != path.size()) {
    reply_http_error(msg, SOUP_STATUS_NOT_FOUND, "not_found", "Unknown control path " + path);
    return;
  }
  if (method != "POST") {
    reply_http_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed", "Use POST.");
    return;
  }
  const std::string verb = action;
  if (verb == "drop") {
    with_session(index, [](Session& s) { s.drop(); });
  } else if (verb == "reply") {
    bool started = false;
    with_session(index, [&](Session& s) { started = s.start_reply(); });
    if (!started) {
      reply_http_error(msg, SOUP_STATUS_CONFLICT, "response_active", "A response is already in progress.");
      return;
    }
  } else if (verb == "send") {
    g_autoptr(GBytes) body = soup_message_body_flatten(soup_server_message_get_request_body(msg));
    gsize length = 0;
    const auto* data = static_cast<const char*>(g_bytes_get_data(body, &length));
    const std::string text(data ? data : "", length);
    with_session(index, [&](Session& s) { s.send_text(text); });
  } else {
    reply_http_error(msg, SOUP_STATUS_NOT_FOUND, "not_found", "Unknown action " + verb);
    return;
  }
  reply_json(msg, SOUP_STATUS_OK, "{\"ok\":true}");
}

// ---------------------------------------------------------------------------
// Server: the public, thread-safe face.

Server::Server(Behaviour behaviour, uint16_t port) : impl_(std::make_unique<Impl>(std::move(behaviour), port)) {}

Server::~Server() = default;

uint16_t Server::port() const {
  return impl_->port();
}

std::string Server::url() const {
  return "ws://127.0.0.1:" + std::to_string(port()) + "/v1/realtime";
}

std::string Server::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port());
}

size_t Server::session_count() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->sessions.size();
}

SessionSnapshot Server::session(size_t index) const {
  std::lock_guard lock(impl_->mutex);
  if (index >= impl_->sessions.size())
    throw std::out_of_range("fake-realtime: no session " + std::to_string(index) + " (have " +
                            std::to_string(impl_->sessions.size()) + ")");
  return impl_->sessions[index]->record;
}

bool Server::wait_until(const std::function<bool(const Server&)>& pred, int timeout_ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred(*this)) {
    if (std::chrono::steady_clock::now() >= deadline)
      return pred(*this);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void Server::set_behaviour(const Behaviour& behaviour) {
  impl_->set_behaviour(behaviour);
}

Behaviour Server::behaviour() const {
  return impl_->behaviour_copy();
}

void Server::send_raw(size_t session, const std::string& text) {
  impl_->with_session(session, [&](Session& s) { s.send_text(text); });
}

void Server::send_error(size_t session, const std::string& type, const std::string& code, const std::string& message) {
  impl_->with_session(session, [&](Session& s) { s.send_error(type, code, message); });
}

bool Server::start_reply(size_t session) {
  bool started = false;
  impl_->with_session(session, [&](Session& s) { started = s.start_reply(); });
  return started;
}

void Server::drop(size_t session) {
  impl_->with_session(session, [](Session& s) { s.drop(); });
}

}  // namespace fake_realtime
