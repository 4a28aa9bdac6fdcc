// Runs tools against a fresh database and reads their JSON answers.
#pragma once

#include <json-glib/json-glib.h>

#include <memory>
#include <optional>
#include <string>

#include "../unit/main_loop.h"
#include "postgres_fixture.h"
#include "tools/tools.h"

namespace vb::test {

struct JsonNodeDeleter {
  void operator()(JsonNode* node) const { json_node_unref(node); }
};

// A tool's answer: its text and, when it is a JSON object, that object.
class Answer {
 public:
  explicit Answer(std::string text) : text_(std::move(text)) {
    node_.reset(json_from_string(text_.c_str(), nullptr));
    EXPECT_TRUE(node_ && JSON_NODE_HOLDS_OBJECT(node_.get())) << "not a JSON object: " << text_;
  }
  const std::string& text() const { return text_; }
  JsonObject* object() const {
    return node_ && JSON_NODE_HOLDS_OBJECT(node_.get()) ? json_node_get_object(node_.get()) : nullptr;
  }
  // "" when the answer is not an error.
  std::string error() const { return string(object(), "error"); }
  JsonObject* member_object(const char* name) const {
    JsonObject* o = object();
    return o && json_object_has_member(o, name) ? json_object_get_object_member(o, name) : nullptr;
  }
  JsonArray* member_array(const char* name) const {
    JsonObject* o = object();
    return o && json_object_has_member(o, name) ? json_object_get_array_member(o, name) : nullptr;
  }

  // A string member, "" when absent, "null" for JSON null.
  static std::string string(JsonObject* o, const char* name) {
    if (!o || !json_object_has_member(o, name))
      return {};
    JsonNode* node = json_object_get_member(o, name);
    if (JSON_NODE_HOLDS_NULL(node))
      return "null";
    return json_node_get_value_type(node) == G_TYPE_STRING ? json_node_get_string(node) : "(not a string)";
  }
  static int64_t integer(JsonObject* o, const char* name) {
    if (!o || !json_object_has_member(o, name))
      return -1;
    JsonNode* node = json_object_get_member(o, name);
    return json_node_get_value_type(node) == G_TYPE_INT64 ? json_node_get_int(node) : -2;
  }

 private:
  std::string text_;
  std::unique_ptr<JsonNode, JsonNodeDeleter> node_;
};

inline Answer run_tool(Tools& tools, const std::string& phone, const std::string& name, const std::string& args) {
  std::optional<std::string> result;
  tools.run(phone, name, args, [&](std::string r) { result = std::move(r); });
  EXPECT_FALSE(result) << "answered inside run()";
  run_until([&] { return result.has_value(); });
  return Answer(result.value_or(""));
}

// ISO 8601 with offset for now + seconds, in `zone`.
inline std::string time_from_now(int64_t seconds, const char* zone = "Europe/Berlin") {
  g_autoptr(GTimeZone) tz = g_time_zone_new_identifier(zone);
  g_autoptr(GDateTime) now = g_date_time_new_now(tz);
  g_autoptr(GDateTime) then = g_date_time_add_seconds(now, static_cast<gdouble>(seconds));
  g_autofree char* text = g_date_time_format(then, "%Y-%m-%dT%H:%M:%S%:z");
  return text;
}

inline int64_t unix_of(const std::string& iso) {
  g_autoptr(GDateTime) time = g_date_time_new_from_iso8601(iso.c_str(), nullptr);
  EXPECT_TRUE(time) << iso;
  return time ? g_date_time_to_unix(time) : 0;
}

}  // namespace vb::test
