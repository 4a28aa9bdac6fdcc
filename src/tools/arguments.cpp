#include "tools/arguments.h"

#include <glib.h>

#include <algorithm>
#include <cstring>

namespace vb {
namespace {

constexpr int64_t kMaxFutureSeconds = 10LL * 366 * 24 * 3600;

// A member meant to pick whose data to use ("task_number" is just unknown).
bool names_a_phone_number(const char* member) {
  g_autofree char* lower = g_ascii_strdown(member, -1);
  for (const char* word : {"phone", "wa_id", "caller", "msisdn", "contact", "recipient"})
    if (strstr(lower, word))
      return true;
  for (const char* name : {"number", "to", "from", "user", "user_id", "for"})
    if (!strcmp(lower, name))
      return true;
  return false;
}

}  // namespace

Arguments::Arguments(const std::string& json) {
  std::string text = json;
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    text = "{}";
  parser_ = json_parser_new();
  g_autoptr(GError) error = nullptr;
  if (!json_parser_load_from_data(parser_, text.data(), static_cast<gssize>(text.size()), &error)) {
    fail(std::string("the arguments are not valid JSON: ") + error->message);
    return;
  }
  JsonNode* root = json_parser_get_root(parser_);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    fail("the arguments must be a JSON object");
    return;
  }
  object_ = json_node_get_object(root);
}

Arguments::~Arguments() { g_clear_object(&parser_); }

void Arguments::fail(std::string why) {
  if (error_.empty())
    error_ = std::move(why);
}

void Arguments::allow_only(std::initializer_list<const char*> allowed) {
  if (!object_)
    return;
  g_autoptr(GList) members = json_object_get_members(object_);
  auto is_allowed = [&allowed](const char* member) {
    return std::any_of(allowed.begin(), allowed.end(), [member](const char* a) { return !strcmp(a, member); });
  };
  // An attempt to act for another number is reported as such, whatever else is wrong.
  for (GList* item = members; item; item = item->next) {
    const char* member = static_cast<const char*>(item->data);
    if (!is_allowed(member) && names_a_phone_number(member)) {
      error_ = std::string("'") + member +
               "' is not accepted: these tools only ever act for the person on this call, identified by the call "
               "itself; tasks and reminders of other phone numbers cannot be read or changed";
      not_allowed_ = true;
      return;
    }
  }
  for (GList* item = members; item; item = item->next) {
    const char* member = static_cast<const char*>(item->data);
    if (is_allowed(member))
      continue;
    std::string names;
    for (const char* a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
    fail(std::string("unknown argument '") + member + "'" +
         (names.empty() ? "; this tool takes no arguments" : "; allowed: " + names));
    return;
  }
}

JsonNode* Arguments::member(const char* name, bool required) {
  if (!object_)
    return nullptr;
  JsonNode* node = json_object_get_member(object_, name);
  if (!node || JSON_NODE_HOLDS_NULL(node)) {
    if (required)
      fail(std::string("'") + name + "' is required");
    return nullptr;
  }
  return node;
}

std::optional<std::string> Arguments::text(const char* name, bool required, size_t max_chars) {
  JsonNode* node = member(name, required);
  if (!node)
    return std::nullopt;
  if (json_node_get_value_type(node) != G_TYPE_STRING) {
    fail(std::string("'") + name + "' must be a string");
    return std::nullopt;
  }
  g_autofree char* stripped = g_strstrip(g_strdup(json_node_get_string(node)));
  if (!*stripped) {
    if (required)
      fail(std::string("'") + name + "' must not be empty");
    return std::nullopt;
  }
  auto length = static_cast<size_t>(g_utf8_strlen(stripped, -1));
  if (length > max_chars) {
    fail(std::string("'") + name + "' is too long (" + std::to_string(length) + " characters, at most " +
         std::to_string(max_chars) + ")");
    return std::nullopt;
  }
  return std::string(stripped);
}

std::optional<int64_t> Arguments::id(const char* name) {
  JsonNode* node = member(name, true);
  if (!node)
    return std::nullopt;
  if (json_node_get_value_type(node) != G_TYPE_INT64 || json_node_get_int(node) <= 0) {
    fail(std::string("'") + name + "' must be a positive integer id as returned by the list tools");
    return std::nullopt;
  }
  return json_node_get_int(node);
}

std::optional<int64_t> Arguments::integer(const char* name, int64_t min, int64_t max, int64_t fallback) {
  JsonNode* node = member(name, false);
  if (!node)
    return failed() ? std::nullopt : std::optional<int64_t>(fallback);
  if (json_node_get_value_type(node) != G_TYPE_INT64 || json_node_get_int(node) < min ||
      json_node_get_int(node) > max) {
    fail(std::string("'") + name + "' must be an integer from " + std::to_string(min) + " to " +
         std::to_string(max));
    return std::nullopt;
  }
  return json_node_get_int(node);
}

std::optional<std::string> Arguments::choice(const char* name, std::initializer_list<const char*> choices,
                                             const char* fallback) {
  JsonNode* node = member(name, false);
  if (!node)
    return failed() ? std::nullopt : std::optional<std::string>(fallback);
  const char* value = json_node_get_value_type(node) == G_TYPE_STRING ? json_node_get_string(node) : nullptr;
  for (const char* c : choices)
    if (value && !strcmp(c, value))
      return std::string(value);
  std::string names;
  for (const char* c : choices) names += (names.empty() ? "\"" : ", \"") + std::string(c) + "\"";
  fail(std::string("'") + name + "' must be one of " + names);
  return std::nullopt;
}

std::optional<int64_t> Arguments::future_time(const char* name, bool required, int64_t now_unix) {
  JsonNode* node = member(name, required);
  if (!node)
    return std::nullopt;
  const char* text = json_node_get_value_type(node) == G_TYPE_STRING ? json_node_get_string(node) : nullptr;
  // Without a default zone GLib rejects a date-time that lacks an offset.
  g_autoptr(GDateTime) time = text ? g_date_time_new_from_iso8601(text, nullptr) : nullptr;
  if (!time) {
    fail(std::string("'") + name +
         "' must be an ISO 8601 date and time with a UTC offset, e.g. 2026-03-01T09:30:00+01:00");
    return std::nullopt;
  }
  int64_t unix_time = g_date_time_to_unix(time);
  if (unix_time <= now_unix) {
    fail(std::string("'") + name + "' (" + text + ") is in the past; ask the caller for a future time");
    return std::nullopt;
  }
  if (unix_time - now_unix > kMaxFutureSeconds) {
    fail(std::string("'") + name + "' (" + text + ") is more than ten years ahead");
    return std::nullopt;
  }
  return unix_time;
}

}  // namespace vb
