#include "whatsapp/graph_api.h"

#include <json-glib/json-glib.h>

#include <optional>
#include <utility>

#include "log.h"

namespace vb {
namespace {

constexpr const char* kLogDomain = "voicebridge-graph";
constexpr unsigned kDefaultTimeoutS = 10;

struct RequestBody {
  const char* action;
  std::string call_id, to, sdp_type, sdp, biz_opaque;
};

std::string to_json(const RequestBody& fields) {
  g_autoptr(JsonBuilder) builder = json_builder_new_immutable();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "messaging_product");
  json_builder_add_string_value(builder, "whatsapp");
  if (!fields.call_id.empty()) {
    json_builder_set_member_name(builder, "call_id");
    json_builder_add_string_value(builder, fields.call_id.c_str());
  }
  if (!fields.to.empty()) {
    json_builder_set_member_name(builder, "to");
    json_builder_add_string_value(builder, fields.to.c_str());
  }
  json_builder_set_member_name(builder, "action");
  json_builder_add_string_value(builder, fields.action);
  if (!fields.sdp_type.empty()) {
    json_builder_set_member_name(builder, "session");
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "sdp_type");
    json_builder_add_string_value(builder, fields.sdp_type.c_str());
    json_builder_set_member_name(builder, "sdp");
    json_builder_add_string_value(builder, fields.sdp.c_str());
    json_builder_end_object(builder);
  }
  if (!fields.biz_opaque.empty()) {
    json_builder_set_member_name(builder, "biz_opaque_callback_data");
    json_builder_add_string_value(builder, fields.biz_opaque.c_str());
  }
  json_builder_end_object(builder);
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autoptr(JsonGenerator) generator = json_generator_new();
  json_generator_set_root(generator, root);
  g_autofree char* text = json_generator_to_data(generator, nullptr);
  return text;
}

const char* string_member(JsonObject* object, const char* name) {
  JsonNode* node = object ? json_object_get_member(object, name) : nullptr;
  if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING) return nullptr;
  return json_node_get_string(node);
}

JsonObject* object_member(JsonObject* object, const char* name) {
  JsonNode* node = object ? json_object_get_member(object, name) : nullptr;
  return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : nullptr;
}

// Fills ok/error fields of `result` from an HTTP response (status and body already set).
void interpret_response(GraphResult& result) {
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  JsonObject* root = nullptr;
  if (json_parser_load_from_data(parser, result.body.data(), static_cast<gssize>(result.body.size()), nullptr) &&
      JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
    root = json_node_get_object(json_parser_get_root(parser));

  bool http_ok = SOUP_STATUS_IS_SUCCESSFUL(result.http_status);
  if (http_ok && root) {
    JsonNode* success = json_object_get_member(root, "success");
    bool success_true = success && JSON_NODE_HOLDS_VALUE(success) &&
                        json_node_get_value_type(success) == G_TYPE_BOOLEAN && json_node_get_boolean(success);
    JsonNode* calls = json_object_get_member(root, "calls");
    if (calls && JSON_NODE_HOLDS_ARRAY(calls) && json_array_get_length(json_node_get_array(calls)) > 0) {
      JsonNode* first = json_array_get_element(json_node_get_array(calls), 0);
      if (const char* id = JSON_NODE_HOLDS_OBJECT(first) ? string_member(json_node_get_object(first), "id") : nullptr)
        result.call_id = id;
    }
    result.ok = success_true || !result.call_id.empty();
    if (!result.ok) result.error_message = "response without success:true";
    return;
  }
  if (JsonObject* error = object_member(root, "error")) {
    JsonNode* code = json_object_get_member(error, "code");
    if (code && JSON_NODE_HOLDS_VALUE(code) && json_node_get_value_type(code) == G_TYPE_INT64)
      result.error_code = static_cast<int>(json_node_get_int(code));
    if (const char* message = string_member(error, "message")) result.error_message = message;
    if (const char* details = string_member(object_member(error, "error_data"), "details"))
      result.error_details = details;
    if (const char* trace = string_member(error, "fbtrace_id")) result.fbtrace_id = trace;
  }
  if (result.error_message.empty())
    result.error_message = http_ok ? "response is not a JSON object" : soup_status_get_phrase(result.http_status);
}

std::string describe_failure(const GraphResult& result) {
  std::string text;
  if (result.transport_error)
    text = "transport error: " + result.error_message;
  else
    text = "HTTP " + std::to_string(result.http_status) + " code " + std::to_string(result.error_code) + " " +
           result.error_message;
  if (!result.error_details.empty()) text += " (" + result.error_details + ")";
  if (!result.fbtrace_id.empty()) text += " fbtrace_id=" + result.fbtrace_id;
  return text;
}

}  // namespace

struct GraphApi::Request {
  Request(std::string action, std::string subject, std::string body, bool idempotent, GraphCallback done)
      : action(std::move(action)),
        subject(std::move(subject)),
        body(std::move(body)),
        idempotent(idempotent),
        done(std::move(done)) {}
  ~Request() {
    g_clear_object(&message);
    g_clear_object(&cancellable);
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  GraphApi* api = nullptr;   // valid while `cancellable` is not cancelled
  std::string action;
  std::string subject;       // "call=<id>" or "to=<masked number>", for log lines
  std::string body;
  bool idempotent;
  GraphCallback done;
  int attempt = 0;
  GCancellable* cancellable = nullptr;     // owned ref
  SoupMessage* message = nullptr;          // owned ref to the attempt in flight
  std::optional<GraphResult> outcome;      // set when the request fails before it can be sent
};

GraphApi::GraphApi(std::string graph_url, std::string phone_number_id, std::string access_token)
    : calls_url_(std::move(graph_url) + "/" + phone_number_id + "/calls"),
      authorization_("Bearer " + std::move(access_token)),
      session_(soup_session_new_with_options("timeout", kDefaultTimeoutS, "user-agent", "voicebridge", nullptr)),
      cancellable_(g_cancellable_new()) {}

GraphApi::~GraphApi() {
  cancel_all();
  g_object_unref(cancellable_);
  g_object_unref(session_);
}

void GraphApi::set_request_timeout_s(unsigned seconds) { g_object_set(session_, "timeout", seconds, nullptr); }

void GraphApi::cancel_all() {
  g_cancellable_cancel(cancellable_);
  g_object_unref(cancellable_);
  cancellable_ = g_cancellable_new();
  for (const auto& [source_id, request] : scheduled_) g_source_remove(source_id);
  scheduled_.clear();
  in_flight_ = 0;
}

void GraphApi::pre_accept(const std::string& call_id, const std::string& sdp_answer, GraphCallback done) {
  // Not idempotent from our side: a retried pre_accept after an unknown outcome could hit a call Meta already moved
  // on, so only failures that provably never reached Meta are retried.
  start(std::make_unique<Request>("pre_accept", "call=" + call_id,
                                  to_json({"pre_accept", call_id, "", "answer", sdp_answer, ""}), false,
                                  std::move(done)));
}

void GraphApi::accept(const std::string& call_id, const std::string& sdp_answer, GraphCallback done) {
  // A repeated accept whose first copy did arrive fails or double-counts: retry only if it never left.
  start(std::make_unique<Request>("accept", "call=" + call_id,
                                  to_json({"accept", call_id, "", "answer", sdp_answer, ""}), false, std::move(done)));
}

void GraphApi::reject(const std::string& call_id, GraphCallback done) {
  start(std::make_unique<Request>("reject", "call=" + call_id, to_json({"reject", call_id, "", "", "", ""}), true,
                                  std::move(done)));
}

void GraphApi::terminate(const std::string& call_id, GraphCallback done) {
  start(std::make_unique<Request>("terminate", "call=" + call_id, to_json({"terminate", call_id, "", "", "", ""}),
                                  true, std::move(done)));
}

void GraphApi::connect(const std::string& to, const std::string& sdp_offer, const std::string& biz_opaque,
                       GraphCallback done) {
  // Retrying a connect that reached Meta would ring the user twice: only retry when it never left.
  start(std::make_unique<Request>("connect", "to=" + mask_phone_number(to),
                                  to_json({"connect", "", to, "offer", sdp_offer, biz_opaque}), false,
                                  std::move(done)));
}

void GraphApi::start(std::unique_ptr<Request> request) {
  request->api = this;
  ++in_flight_;
  request->cancellable = G_CANCELLABLE(g_object_ref(cancellable_));
  send(std::move(request));
}

void GraphApi::send(std::unique_ptr<Request> request) {
  ++request->attempt;
  g_clear_object(&request->message);
  request->message = soup_message_new("POST", calls_url_.c_str());
  if (!request->message) {
    GraphResult result;
    result.transport_error = true;
    result.error_message = "invalid Graph API URL " + calls_url_;
    request->outcome = result;
    schedule(std::move(request), 0);  // callbacks are always asynchronous
    return;
  }
  SoupMessageHeaders* headers = soup_message_get_request_headers(request->message);
  soup_message_headers_replace(headers, "Authorization", authorization_.c_str());
  soup_message_headers_replace(headers, "Accept", "application/json");
  g_autoptr(GBytes) body = g_bytes_new(request->body.data(), request->body.size());
  soup_message_set_request_body_from_bytes(request->message, "application/json", body);
  SoupMessage* message = request->message;
  GCancellable* cancellable = request->cancellable;
  soup_session_send_and_read_async(session_, message, G_PRIORITY_DEFAULT, cancellable, &GraphApi::on_send_done,
                                   request.release());
}

void GraphApi::on_send_done(GObject* session, GAsyncResult* async_result, gpointer data) {
  std::unique_ptr<Request> request(static_cast<Request*>(data));
  g_autoptr(GError) error = nullptr;
  g_autoptr(GBytes) body = soup_session_send_and_read_finish(SOUP_SESSION(session), async_result, &error);
  if (g_cancellable_is_cancelled(request->cancellable)) return;  // the GraphApi may be gone: touch nothing
  request->api->on_response(std::move(request), body, error);
}

void GraphApi::on_response(std::unique_ptr<Request> request, GBytes* body, GError* error) {
  GraphResult result;
  result.attempts = request->attempt;
  bool retryable = false;
  if (error) {
    result.transport_error = true;
    result.error_message = error->message;
    // Connection refused or a failed name lookup means no byte reached Meta: safe to retry any action.
    bool never_sent = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED) ||
                      error->domain == G_RESOLVER_ERROR;
    retryable = request->idempotent || never_sent;
  } else {
    result.http_status = soup_message_get_status(request->message);
    gsize size = 0;
    const auto* data = static_cast<const char*>(g_bytes_get_data(body, &size));
    result.body.assign(data ? data : "", size);
    interpret_response(result);
    retryable = request->idempotent && (result.http_status >= 500 || result.http_status == 429);
  }
  if (!result.ok && retryable && request->attempt < retry_policy_.max_attempts) {
    const auto& delays = retry_policy_.delays_ms;
    unsigned delay = delays.empty() ? 0 : delays[std::min<size_t>(request->attempt - 1, delays.size() - 1)];
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "graph %s %s attempt %d failed: %s; retrying in %u ms",
          request->action.c_str(), request->subject.c_str(), request->attempt, describe_failure(result).c_str(),
          delay);
    schedule(std::move(request), delay);
    return;
  }
  finish(std::move(request), result);
}

void GraphApi::schedule(std::unique_ptr<Request> request, unsigned delay_ms) {
  guint source_id = g_timeout_add(delay_ms, &GraphApi::on_timer, this);
  scheduled_.emplace(source_id, std::move(request));
}

gboolean GraphApi::on_timer(gpointer data) {
  auto* api = static_cast<GraphApi*>(data);
  auto entry = api->scheduled_.find(g_source_get_id(g_main_current_source()));
  std::unique_ptr<Request> request = std::move(entry->second);
  api->scheduled_.erase(entry);
  if (request->outcome) {
    GraphResult outcome = *request->outcome;
    api->finish(std::move(request), outcome);
  } else {
    api->send(std::move(request));
  }
  return G_SOURCE_REMOVE;
}

void GraphApi::finish(std::unique_ptr<Request> request, const GraphResult& result) {
  if (!result.ok)
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "graph %s %s failed: %s", request->action.c_str(),
          request->subject.c_str(), describe_failure(result).c_str());
  GraphCallback done = std::move(request->done);
  request.reset();
  --in_flight_;
  // Last: the callback may destroy this GraphApi.
  if (done) done(result);
}

}  // namespace vb
