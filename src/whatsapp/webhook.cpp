#include "whatsapp/webhook.h"

#include <glib.h>
#include <json-glib/json-glib.h>

namespace vb {
namespace {

// Reads members of one JSON object, turning wrong types into warnings that name the JSON path.
class ObjectReader {
 public:
  ObjectReader(JsonObject* object, std::string path, std::vector<std::string>& warnings)
      : object_(object), path_(std::move(path)), warnings_(warnings) {}

  const std::string& path() const { return path_; }

  JsonNode* member(const char* name) const {
    JsonNode* node = object_ ? json_object_get_member(object_, name) : nullptr;
    return node && !JSON_NODE_HOLDS_NULL(node) ? node : nullptr;
  }

  std::string string(const char* name) const {
    JsonNode* node = member(name);
    if (!node) return {};
    if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING)
      return json_node_get_string(node);
    warn(name, "expected a string");
    return {};
  }

  // An integer given as a JSON number or as a decimal string (Meta sends timestamps as strings).
  std::optional<int64_t> integer(const char* name) const {
    JsonNode* node = member(name);
    if (!node) return std::nullopt;
    if (JSON_NODE_HOLDS_VALUE(node)) {
      GType type = json_node_get_value_type(node);
      if (type == G_TYPE_INT64) return json_node_get_int(node);
      gint64 parsed = 0;
      if (type == G_TYPE_STRING &&
          g_ascii_string_to_signed(json_node_get_string(node), 10, G_MININT64, G_MAXINT64, &parsed, nullptr))
        return parsed;
    }
    warn(name, "expected an integer or a decimal string");
    return std::nullopt;
  }

  JsonObject* object(const char* name) const {
    JsonNode* node = member(name);
    if (!node) return nullptr;
    if (JSON_NODE_HOLDS_OBJECT(node)) return json_node_get_object(node);
    warn(name, "expected an object");
    return nullptr;
  }

  JsonArray* array(const char* name) const {
    JsonNode* node = member(name);
    if (!node) return nullptr;
    if (JSON_NODE_HOLDS_ARRAY(node)) return json_node_get_array(node);
    warn(name, "expected an array");
    return nullptr;
  }

  // Calls `fn(ObjectReader)` for each object item of array member `name`; other items are skipped with a warning.
  template <typename Fn>
  void for_each_object(const char* name, Fn&& fn) const {
    JsonArray* items = array(name);
    if (!items) return;
    for (guint i = 0; i < json_array_get_length(items); ++i) {
      std::string item_path = path_ + "." + name + "[" + std::to_string(i) + "]";
      JsonNode* node = json_array_get_element(items, i);
      if (!JSON_NODE_HOLDS_OBJECT(node)) {
        warnings_.push_back(item_path + ": expected an object, skipped");
        continue;
      }
      fn(ObjectReader(json_node_get_object(node), item_path, warnings_));
    }
  }

  ObjectReader child(const char* name) const {
    JsonObject* nested = object(name);
    return ObjectReader(nested, path_ + "." + name, warnings_);
  }

  void warn(const char* name, const std::string& why) const { warnings_.push_back(path_ + "." + name + ": " + why); }
  void warn(const std::string& why) const { warnings_.push_back(path_ + ": " + why); }

 private:
  JsonObject* object_;  // null for an absent nested object: reads as empty, so callers need no null checks
  std::string path_;
  std::vector<std::string>& warnings_;
};

std::vector<CallError> read_errors(const ObjectReader& owner) {
  std::vector<CallError> errors;
  owner.for_each_object("errors", [&](const ObjectReader& item) {
    CallError error;
    error.code = static_cast<int>(item.integer("code").value_or(0));
    error.message = item.string("message");
    if (error.message.empty()) error.message = item.string("title");
    error.details = item.child("error_data").string("details");
    errors.push_back(std::move(error));
  });
  return errors;
}

struct Contact {
  std::string wa_id, name;
};

std::vector<Contact> read_contacts(const ObjectReader& value) {
  std::vector<Contact> contacts;
  value.for_each_object("contacts", [&](const ObjectReader& item) {
    contacts.push_back({item.string("wa_id"), item.child("profile").string("name")});
  });
  return contacts;
}

std::string caller_name(const std::vector<Contact>& contacts, const std::string& from) {
  for (const auto& contact : contacts)
    if (!from.empty() && contact.wa_id == from) return contact.name;
  return contacts.size() == 1 ? contacts.front().name : std::string();
}

CallEvent::Kind kind_of(const std::string& event) {
  if (event == "connect") return CallEvent::Kind::Connect;
  if (event == "terminate") return CallEvent::Kind::Terminate;
  return CallEvent::Kind::Other;
}

void read_calls(const ObjectReader& value, const std::string& phone_number_id, WebhookBatch& batch) {
  auto contacts = read_contacts(value);
  auto change_errors = read_errors(value);
  value.for_each_object("calls", [&](const ObjectReader& item) {
    CallEvent call;
    call.call_id = item.string("id");
    call.event = item.string("event");
    if (call.call_id.empty() || call.event.empty()) {
      item.warn("call without id or event, skipped");
      return;
    }
    call.kind = kind_of(call.event);
    call.from = item.string("from");
    call.to = item.string("to");
    call.direction = item.string("direction");
    call.timestamp = item.integer("timestamp").value_or(0);
    ObjectReader session = item.child("session");
    call.sdp_type = session.string("sdp_type");
    call.sdp = session.string("sdp");
    call.status = item.string("status");
    call.duration_s = item.integer("duration").value_or(-1);
    call.errors = read_errors(item);
    call.errors.insert(call.errors.end(), change_errors.begin(), change_errors.end());
    call.caller_name = caller_name(contacts, call.from);
    call.phone_number_id = phone_number_id;
    call.biz_opaque_callback_data = item.string("biz_opaque_callback_data");
    batch.events.push_back(std::move(call));
  });
}

void read_statuses(const ObjectReader& value, WebhookBatch& batch) {
  value.for_each_object("statuses", [&](const ObjectReader& item) {
    std::string type = item.string("type");
    if (!type.empty() && type != "call") {
      item.warn("status of type \"" + type + "\" in the calls field, skipped");
      return;
    }
    CallStatus status;
    status.call_id = item.string("id");
    status.status = item.string("status");
    if (status.call_id.empty() || status.status.empty()) {
      item.warn("status without id or status, skipped");
      return;
    }
    status.recipient_id = item.string("recipient_id");
    status.biz_opaque_callback_data = item.string("biz_opaque_callback_data");
    status.timestamp = item.integer("timestamp").value_or(0);
    status.errors = read_errors(item);
    batch.statuses.push_back(std::move(status));
  });
}

void read_change(const ObjectReader& change, WebhookBatch& batch) {
  std::string field = change.string("field");
  if (field != "calls") {
    change.warn("field \"" + field + "\" ignored");
    return;
  }
  if (!change.object("value")) {
    change.warn("calls change without a value object, skipped");
    return;
  }
  ObjectReader value = change.child("value");
  std::string phone_number_id = value.child("metadata").string("phone_number_id");
  read_statuses(value, batch);
  read_calls(value, phone_number_id, batch);
}

// json-glib parses recursively: refuse absurd nesting before it can exhaust the stack.
constexpr int kMaxJsonDepth = 64;

bool nesting_within_limit(std::string_view body) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace

WebhookParseResult parse_webhook(std::string_view body) {
  WebhookParseResult result;
  if (body.empty()) {
    result.error = "empty body";
    return result;
  }
  if (!nesting_within_limit(body)) {
    result.error = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return result;
  }
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  g_autoptr(GError) error = nullptr;
  if (!json_parser_load_from_data(parser, body.data(), static_cast<gssize>(body.size()), &error)) {
    result.error = std::string("invalid JSON: ") + error->message;
    return result;
  }
  JsonNode* root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    result.error = "not a JSON object";
    return result;
  }
  JsonObject* envelope_object = json_node_get_object(root);
  JsonNode* entries = json_object_get_member(envelope_object, "entry");
  if (!entries || !JSON_NODE_HOLDS_ARRAY(entries)) {
    result.error = "no \"entry\" array";
    return result;
  }

  WebhookBatch batch;
  ObjectReader envelope(envelope_object, "$", batch.warnings);
  std::string object_kind = envelope.string("object");
  if (!object_kind.empty() && object_kind != "whatsapp_business_account")
    envelope.warn("object", "unexpected \"" + object_kind + "\"");
  envelope.for_each_object("entry", [&](const ObjectReader& entry) {
    entry.for_each_object("changes", [&](const ObjectReader& change) { read_change(change, batch); });
  });
  result.batch = std::move(batch);
  return result;
}

}  // namespace vb
