#include "realtime_protocol.h"

#include <glib.h>

#include <cstring>

namespace openairealtime {
namespace {

// Serializes whatever the builder holds (rare events only: the hot path,
// input_audio_buffer.append, never goes through a builder).
std::string to_text(JsonBuilder* builder) {
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autoptr(JsonGenerator) generator = json_generator_new();
  json_generator_set_root(generator, root);
  g_autofree gchar* text = json_generator_to_data(generator, nullptr);
  return text;
}

void add_string(JsonBuilder* builder, const char* name, const std::string& value) {
  json_builder_set_member_name(builder, name);
  json_builder_add_string_value(builder, value.c_str());
}

void add_int(JsonBuilder* builder, const char* name, gint64 value) {
  json_builder_set_member_name(builder, name);
  json_builder_add_int_value(builder, value);
}

void add_bool(JsonBuilder* builder, const char* name, bool value) {
  json_builder_set_member_name(builder, name);
  json_builder_add_boolean_value(builder, value);
}

void add_pcm_format(JsonBuilder* builder) {
  json_builder_set_member_name(builder, "format");
  json_builder_begin_object(builder);
  add_string(builder, "type", "audio/pcm");
  add_int(builder, "rate", 24000);
  json_builder_end_object(builder);
}

const char* eagerness_name(Eagerness eagerness) {
  switch (eagerness) {
    case Eagerness::Low: return "low";
    case Eagerness::Medium: return "medium";
    case Eagerness::High: return "high";
    case Eagerness::Auto: break;
  }
  return "auto";
}

void add_turn_detection(JsonBuilder* builder, const SessionConfig& config) {
  json_builder_set_member_name(builder, "turn_detection");
  if (config.turn_detection == TurnDetection::None) {
    // The one place where null is meaningful: it selects manual turns.
    json_builder_add_null_value(builder);
    return;
  }
  json_builder_begin_object(builder);
  if (config.turn_detection == TurnDetection::SemanticVad) {
    add_string(builder, "type", "semantic_vad");
    add_string(builder, "eagerness", eagerness_name(config.vad_eagerness));
  } else {
    add_string(builder, "type", "server_vad");
    json_builder_set_member_name(builder, "threshold");
    json_builder_add_double_value(builder, config.vad_threshold);
    add_int(builder, "prefix_padding_ms", config.vad_prefix_padding_ms);
    add_int(builder, "silence_duration_ms", config.vad_silence_duration_ms);
    if (config.vad_idle_timeout_ms > 0) add_int(builder, "idle_timeout_ms", config.vad_idle_timeout_ms);
  }
  add_bool(builder, "create_response", true);
  add_bool(builder, "interrupt_response", true);
  json_builder_end_object(builder);
}

void add_audio_input(JsonBuilder* builder, const SessionConfig& config) {
  json_builder_set_member_name(builder, "input");
  json_builder_begin_object(builder);
  add_pcm_format(builder);
  if (!config.input_transcription_model.empty()) {
    json_builder_set_member_name(builder, "transcription");
    json_builder_begin_object(builder);
    add_string(builder, "model", config.input_transcription_model);
    if (!config.input_transcription_language.empty())
      add_string(builder, "language", config.input_transcription_language);
    json_builder_end_object(builder);
  }
  if (config.noise_reduction != NoiseReduction::None) {
    json_builder_set_member_name(builder, "noise_reduction");
    json_builder_begin_object(builder);
    add_string(builder, "type", config.noise_reduction == NoiseReduction::NearField ? "near_field" : "far_field");
    json_builder_end_object(builder);
  }
  add_turn_detection(builder, config);
  json_builder_end_object(builder);
}

void add_audio_output(JsonBuilder* builder, const SessionConfig& config) {
  json_builder_set_member_name(builder, "output");
  json_builder_begin_object(builder);
  add_pcm_format(builder);
  add_string(builder, "voice", config.voice);
  json_builder_end_object(builder);
}

JsonNode* parse_json(const std::string& text, std::string& error) {
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) parse_error = nullptr;
  if (!json_parser_load_from_data(parser, text.c_str(), static_cast<gssize>(text.size()), &parse_error)) {
    error = parse_error->message;
    return nullptr;
  }
  return json_node_copy(json_parser_get_root(parser));
}

}  // namespace

std::optional<std::string> build_connect_url(const SessionConfig& config, std::string& error) {
  std::string url = config.url;
  static constexpr std::pair<std::string_view, std::string_view> kSchemes[] = {
      {"https://", "wss://"}, {"http://", "ws://"}, {"wss://", "wss://"}, {"ws://", "ws://"}};
  bool known_scheme = false;
  for (const auto& [from, to] : kSchemes) {
    if (url.compare(0, from.size(), from) == 0) {
      url = std::string(to) + url.substr(from.size());
      known_scheme = true;
      break;
    }
  }
  if (!known_scheme || url.find("://") + 3 >= url.size()) {
    error = "url must start with ws://, wss://, http:// or https:// and name a host";
    return std::nullopt;
  }
  if (config.model.empty()) {
    error = "model must not be empty";
    return std::nullopt;
  }
  if (config.azure) {
    if (url.find('?') != std::string::npos) {
      error = "azure url must be the resource endpoint without a query (no api-version)";
      return std::nullopt;
    }
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += "/openai/v1/realtime";
  }
  g_autofree gchar* model = g_uri_escape_string(config.model.c_str(), nullptr, FALSE);
  url += url.find('?') == std::string::npos ? '?' : '&';
  url += "model=";
  url += model;
  return url;
}

std::string url_for_log(const std::string& url) { return url.substr(0, url.find('?')); }

bool validate_tools_json(const std::string& text, std::string& error) {
  if (text.empty()) return true;
  g_autoptr(JsonNode) root = parse_json(text, error);
  if (!root) return false;
  if (!JSON_NODE_HOLDS_ARRAY(root)) {
    error = "tools must be a JSON array";
    return false;
  }
  JsonArray* tools = json_node_get_array(root);
  for (guint i = 0; i < json_array_get_length(tools); ++i) {
    JsonNode* node = json_array_get_element(tools, i);
    JsonObject* tool = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : nullptr;
    const char* type = tool ? member_string(tool, "type") : nullptr;
    if (!type) {
      error = "tools[" + std::to_string(i) + "] must be an object with a string \"type\"";
      return false;
    }
    if (std::strcmp(type, "function") != 0) continue;
    if (json_object_has_member(tool, "function")) {
      error = "tools[" + std::to_string(i) +
              "] uses the nested Chat Completions shape; use the flat {type, name, description, parameters}";
      return false;
    }
    if (!member_string(tool, "name")) {
      error = "tools[" + std::to_string(i) + "] is a function without a string \"name\"";
      return false;
    }
  }
  return true;
}

std::string build_session_update(const SessionConfig& config) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  add_string(builder, "type", "session.update");
  json_builder_set_member_name(builder, "session");
  json_builder_begin_object(builder);
  add_string(builder, "type", "realtime");
  add_string(builder, "model", config.model);
  if (!config.instructions.empty()) add_string(builder, "instructions", config.instructions);
  json_builder_set_member_name(builder, "output_modalities");
  json_builder_begin_array(builder);
  json_builder_add_string_value(builder, "audio");
  json_builder_end_array(builder);
  json_builder_set_member_name(builder, "audio");
  json_builder_begin_object(builder);
  add_audio_input(builder, config);
  add_audio_output(builder, config);
  json_builder_end_object(builder);
  if (!config.tools_json.empty()) {
    std::string error;
    JsonNode* tools = parse_json(config.tools_json, error);  // validated when the property was set
    if (tools) {
      json_builder_set_member_name(builder, "tools");
      json_builder_add_value(builder, tools);  // takes ownership
      add_string(builder, "tool_choice", "auto");
    }
  }
  json_builder_end_object(builder);
  json_builder_end_object(builder);
  return to_text(builder);
}

std::string build_truncate(const std::string& item_id, int audio_end_ms) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  add_string(builder, "type", "conversation.item.truncate");
  add_string(builder, "item_id", item_id);
  add_int(builder, "content_index", 0);
  add_int(builder, "audio_end_ms", audio_end_ms);
  json_builder_end_object(builder);
  return to_text(builder);
}

std::string build_function_call_output(const std::string& call_id, const std::string& output) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  add_string(builder, "type", "conversation.item.create");
  json_builder_set_member_name(builder, "item");
  json_builder_begin_object(builder);
  add_string(builder, "type", "function_call_output");
  add_string(builder, "call_id", call_id);
  add_string(builder, "output", output);
  json_builder_end_object(builder);
  json_builder_end_object(builder);
  return to_text(builder);
}

std::string build_response_create(const std::string& event_id, const std::string& instructions) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  add_string(builder, "type", "response.create");
  add_string(builder, "event_id", event_id);
  if (!instructions.empty()) {
    json_builder_set_member_name(builder, "response");
    json_builder_begin_object(builder);
    add_string(builder, "instructions", instructions);
    json_builder_end_object(builder);
  }
  json_builder_end_object(builder);
  return to_text(builder);
}

std::string build_history_item(const HistoryEntry& entry) {
  const bool user = entry.role == HistoryRole::User;
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  add_string(builder, "type", "conversation.item.create");
  json_builder_set_member_name(builder, "item");
  json_builder_begin_object(builder);
  add_string(builder, "type", "message");
  add_string(builder, "role", user ? "user" : "assistant");
  json_builder_set_member_name(builder, "content");
  json_builder_begin_array(builder);
  json_builder_begin_object(builder);
  add_string(builder, "type", user ? "input_text" : "output_text");
  add_string(builder, "text", entry.text);
  json_builder_end_object(builder);
  json_builder_end_array(builder);
  json_builder_end_object(builder);
  json_builder_end_object(builder);
  return to_text(builder);
}

const std::string& AppendEncoder::encode(const guint8* pcm, gsize size) {
  static constexpr std::string_view kPrefix = R"({"type":"input_audio_buffer.append","audio":")";
  static constexpr std::string_view kSuffix = R"("})";
  // g_base64_encode_step needs up to (len / 3 + 1) * 4 + 4 bytes (no line breaks).
  const gsize max_encoded = (size / 3 + 1) * 4 + 4;
  text_.resize(kPrefix.size() + max_encoded + kSuffix.size());
  std::memcpy(text_.data(), kPrefix.data(), kPrefix.size());
  char* out = text_.data() + kPrefix.size();
  gint state = 0;
  gint save = 0;
  gsize written = g_base64_encode_step(pcm, size, FALSE, out, &state, &save);
  written += g_base64_encode_close(FALSE, out + written, &state, &save);
  std::memcpy(out + written, kSuffix.data(), kSuffix.size());
  text_.resize(kPrefix.size() + written + kSuffix.size());
  return text_;
}

const char* member_string(JsonObject* object, const char* name) {
  JsonNode* node = object ? json_object_get_member(object, name) : nullptr;
  if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING) return nullptr;
  return json_node_get_string(node);
}

gint64 member_int(JsonObject* object, const char* name, gint64 fallback) {
  JsonNode* node = object ? json_object_get_member(object, name) : nullptr;
  if (!node || !JSON_NODE_HOLDS_VALUE(node)) return fallback;
  GType type = json_node_get_value_type(node);
  if (type == G_TYPE_INT64) return json_node_get_int(node);
  if (type == G_TYPE_DOUBLE) return static_cast<gint64>(json_node_get_double(node));
  return fallback;
}

JsonObject* member_object(JsonObject* object, const char* name) {
  JsonNode* node = object ? json_object_get_member(object, name) : nullptr;
  return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : nullptr;
}

}  // namespace openairealtime
