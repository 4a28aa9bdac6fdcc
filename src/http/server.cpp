#include "http/server.h"

#include <gio/gio.h>

#include <utility>

#include "whatsapp/signature.h"

namespace vb {
namespace {

constexpr const char* kLogDomain = "voicebridge-http";

void set_response(SoupServerMessage* message, const HttpResponse& response) {
  soup_server_message_set_status(message, response.status, nullptr);
  // libsoup 3.2's server never closes a keep-alive connection the client has
  // closed (CLOSE_WAIT, one fd lost per connection; fixed upstream in 3.3.0).
  // Closing after each response costs Meta one TCP handshake per webhook.
  soup_message_headers_replace(soup_server_message_get_response_headers(message), "Connection", "close");
  soup_server_message_set_response(message, response.content_type.c_str(), SOUP_MEMORY_COPY, response.body.data(),
                                   response.body.size());
}

// Marks a request whose body outgrew kMaxBodyBytes while it was read.
constexpr const char* kBodyTooLargeKey = "voicebridge-body-too-large";

HttpResponse text(int status, std::string body) { return {status, "text/plain", std::move(body)}; }

// Why a signature check failed, for the log line (never the header's content).
const char* signature_failure_reason(const char* header) {
  if (!header || !*header) return "missing X-Hub-Signature-256";
  if (!g_str_has_prefix(header, "sha256=")) return "X-Hub-Signature-256 without the sha256= prefix";
  return "X-Hub-Signature-256 does not match the body";
}

}  // namespace

HttpServer::HttpServer(const Config& config, Handlers handlers)
    : verify_token_(config.verify_token),
      app_secret_(config.app_secret),
      handlers_(std::move(handlers)),
      server_(soup_server_new("server-header", "voicebridge", nullptr)) {
  soup_server_add_early_handler(server_, nullptr, &HttpServer::on_request_headers, this, nullptr);
  soup_server_add_handler(server_, nullptr, &HttpServer::on_request, this, nullptr);
  add_handler("GET", "/webhook", [this](const HttpRequest& request) { return verify_subscription(request); });
  add_handler("POST", "/webhook", [this](const HttpRequest& request) { return receive_webhook(request); });
  if (handlers_.health_json)
    add_handler("GET", "/health", [this](const HttpRequest&) {
      return HttpResponse{200, "application/json", handlers_.health_json()};
    });
}

HttpServer::~HttpServer() {
  if (dispatch_source_) g_source_remove(dispatch_source_);
  soup_server_disconnect(server_);
  g_object_unref(server_);
}

bool HttpServer::listen(const std::string& address, int port, std::string* error) {
  g_autoptr(GSocketAddress) socket_address =
      g_inet_socket_address_new_from_string(address.c_str(), static_cast<guint>(port));
  if (!socket_address || port < 0 || port > 65535) {
    if (error) *error = "invalid listen address " + address + ":" + std::to_string(port);
    return false;
  }
  g_autoptr(GError) listen_error = nullptr;
  if (!soup_server_listen(server_, socket_address, static_cast<SoupServerListenOptions>(0), &listen_error)) {
    if (error) *error = "cannot listen on " + address + ":" + std::to_string(port) + ": " + listen_error->message;
    return false;
  }
  g_log(kLogDomain, G_LOG_LEVEL_MESSAGE, "listening on %s:%d", address.c_str(), this->port());
  return true;
}

int HttpServer::port() const {
  GSList* listeners = soup_server_get_listeners(server_);
  int bound = 0;
  if (listeners) {
    g_autoptr(GSocketAddress) local = g_socket_get_local_address(G_SOCKET(listeners->data), nullptr);
    if (local && G_IS_INET_SOCKET_ADDRESS(local))
      bound = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
  }
  g_slist_free(listeners);
  return bound;
}

void HttpServer::add_handler(const std::string& method, const std::string& path, RouteHandler handler) {
  routes_[path][method] = std::move(handler);
}

// Runs after the headers, before the body is read: a status set here is sent at once and the body is never read.
void HttpServer::on_request_headers(SoupServer*, SoupServerMessage* message, const char* path, GHashTable*,
                                    gpointer self) {
  SoupMessageHeaders* headers = soup_server_message_get_request_headers(message);
  if (soup_message_headers_get_encoding(headers) == SOUP_ENCODING_CONTENT_LENGTH &&
      soup_message_headers_get_content_length(headers) > static_cast<goffset>(kMaxBodyBytes)) {
    HttpRequest request{soup_server_message_get_method(message), path, "", {}, message};
    set_response(message, static_cast<HttpServer*>(self)->reject_too_large(request));
    return;
  }
  // Chunked bodies declare no size: watch them grow and stop storing them once over the limit.
  g_signal_connect(message, "got-chunk", G_CALLBACK(&HttpServer::on_request_chunk), nullptr);
}

void HttpServer::on_request_chunk(SoupServerMessage* message, GBytes*, gpointer) {
  SoupMessageBody* body = soup_server_message_get_request_body(message);
  if (body->length <= static_cast<goffset>(kMaxBodyBytes)) return;
  // The rest is read and dropped (libsoup offers no way to stop reading); the handler answers 413.
  soup_message_body_set_accumulate(body, FALSE);
  soup_message_body_truncate(body);
  g_object_set_data(G_OBJECT(message), kBodyTooLargeKey, GINT_TO_POINTER(1));
}

void HttpServer::on_request(SoupServer*, SoupServerMessage* message, const char* path, GHashTable*, gpointer self) {
  auto* server = static_cast<HttpServer*>(self);
  SoupMessageBody* request_body = soup_server_message_get_request_body(message);
  g_autoptr(GBytes) body = soup_message_body_flatten(request_body);
  gsize body_size = 0;
  const auto* body_data = static_cast<const char*>(g_bytes_get_data(body, &body_size));
  const char* query = g_uri_get_query(soup_server_message_get_uri(message));

  HttpRequest request{soup_server_message_get_method(message), path, query ? query : "",
                      std::string_view(body_data ? body_data : "", body_size), message};
  if (g_object_get_data(G_OBJECT(message), kBodyTooLargeKey)) {
    set_response(message, server->reject_too_large(request));
    return;
  }
  set_response(message, server->route(request));
}

HttpResponse HttpServer::reject_too_large(const HttpRequest& request) {
  if (request.path == "/webhook" && request.method == "POST") {
    ++counters_.webhooks_received;
    ++counters_.bodies_too_large;
  }
  g_log(kLogDomain, G_LOG_LEVEL_WARNING, "%s %s rejected: body over %zu bytes", request.method.c_str(),
        request.path.c_str(), kMaxBodyBytes);
  return text(SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "Payload Too Large");
}

HttpResponse HttpServer::route(const HttpRequest& request) {
  auto path = routes_.find(request.path);
  if (path == routes_.end()) return text(SOUP_STATUS_NOT_FOUND, "Not Found");
  auto handler = path->second.find(request.method);
  if (handler == path->second.end()) {
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "%s %s rejected: method not allowed", request.method.c_str(),
          request.path.c_str());
    std::string allowed;
    for (const auto& [method, unused] : path->second) allowed += (allowed.empty() ? "" : ", ") + method;
    soup_message_headers_replace(soup_server_message_get_response_headers(request.message), "Allow",
                                 allowed.c_str());
    return text(SOUP_STATUS_METHOD_NOT_ALLOWED, "Method Not Allowed");
  }
  return handler->second(request);
}

HttpResponse HttpServer::verify_subscription(const HttpRequest& request) {
  // Parse the raw query ourselves: the parameter names contain dots.
  g_autoptr(GHashTable) params =
      g_uri_parse_params(request.query.c_str(), -1, "&", G_URI_PARAMS_NONE, nullptr);
  auto param = [&](const char* name) -> const char* {
    return params ? static_cast<const char*>(g_hash_table_lookup(params, name)) : nullptr;
  };
  const char* mode = param("hub.mode");
  const char* token = param("hub.verify_token");
  const char* challenge = param("hub.challenge");
  if (!mode || g_strcmp0(mode, "subscribe") != 0 || !challenge) {
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "webhook verification rejected: hub.mode is not subscribe or no challenge");
    return text(SOUP_STATUS_FORBIDDEN, "Forbidden");
  }
  if (!token || !constant_time_equals(verify_token_, token)) {
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "webhook verification rejected: hub.verify_token does not match");
    return text(SOUP_STATUS_FORBIDDEN, "Forbidden");
  }
  g_log(kLogDomain, G_LOG_LEVEL_MESSAGE, "webhook verification accepted");
  return text(SOUP_STATUS_OK, challenge);
}

HttpResponse HttpServer::receive_webhook(const HttpRequest& request) {
  ++counters_.webhooks_received;
  const char* signature =
      soup_message_headers_get_one(soup_server_message_get_request_headers(request.message), "X-Hub-Signature-256");
  if (!verify_webhook_signature(app_secret_, request.body, signature)) {
    ++counters_.signature_failures;
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "webhook rejected: %s", signature_failure_reason(signature));
    return text(SOUP_STATUS_UNAUTHORIZED, "Unauthorized");
  }
  WebhookParseResult parsed = parse_webhook(request.body);
  if (!parsed.batch) {
    ++counters_.malformed;
    g_log(kLogDomain, G_LOG_LEVEL_WARNING, "webhook rejected: %s", parsed.error.c_str());
    return text(SOUP_STATUS_BAD_REQUEST, "Bad Request");
  }
  for (const auto& warning : parsed.batch->warnings)
    g_log(kLogDomain, G_LOG_LEVEL_INFO, "webhook: %s", warning.c_str());
  if (handlers_.on_webhook) {
    pending_batches_.push_back(std::move(*parsed.batch));
    if (!dispatch_source_) dispatch_source_ = g_idle_add(&HttpServer::dispatch_webhooks, this);
  }
  return text(SOUP_STATUS_OK, "OK");
}

gboolean HttpServer::dispatch_webhooks(gpointer self) {
  auto* server = static_cast<HttpServer*>(self);
  server->dispatch_source_ = 0;
  // Take the queue first: a handler may receive more webhooks (nested loop) or destroy the server.
  std::deque<WebhookBatch> batches = std::exchange(server->pending_batches_, {});
  auto on_webhook = server->handlers_.on_webhook;
  for (auto& batch : batches) on_webhook(std::move(batch));
  return G_SOURCE_REMOVE;
}

}  // namespace vb
