// The HTTP front door: Meta's webhook (verification GET, signed event POST) and /health, on libsoup 3.
#pragma once

#include <libsoup/soup.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "config.h"
#include "whatsapp/webhook.h"

namespace vb {

struct HttpCounters {
  uint64_t webhooks_received = 0;   // POST /webhook requests, whatever their outcome
  uint64_t signature_failures = 0;  // 401: X-Hub-Signature-256 missing or wrong
  uint64_t bodies_too_large = 0;    // 413
  uint64_t malformed = 0;           // 400: signed, but not a webhook payload
};

struct HttpRequest {
  std::string method, path, query;  // query is raw (still percent-encoded), without '?'
  std::string_view body;
  SoupServerMessage* message;       // for headers; valid only during the handler call
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

class HttpServer {
 public:
  static constexpr size_t kMaxBodyBytes = 2 * 1024 * 1024;

  struct Handlers {
    std::function<void(WebhookBatch)> on_webhook;  // called from an idle on the main loop AFTER the 200 is sent
    std::function<std::string()> health_json;      // body of GET /health
  };
  using RouteHandler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer(const Config& config, Handlers handlers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds address:port ("0.0.0.0" in production; port 0 picks a free one). False with *error set on failure.
  bool listen(const std::string& address, int port, std::string* error);
  int port() const;  // the bound port, 0 before listen()
  const HttpCounters& counters() const { return counters_; }

  // Serves `method` on the exact `path` (e.g. GET /metrics). Other methods on a known path get 405, unknown paths 404.
  void add_handler(const std::string& method, const std::string& path, RouteHandler handler);

 private:
  static void on_request(SoupServer*, SoupServerMessage* message, const char* path, GHashTable*, gpointer self);
  static void on_request_headers(SoupServer*, SoupServerMessage* message, const char*, GHashTable*, gpointer self);
  static void on_request_chunk(SoupServerMessage* message, GBytes* chunk, gpointer);
  static gboolean dispatch_webhooks(gpointer self);

  HttpResponse verify_subscription(const HttpRequest& request);
  HttpResponse receive_webhook(const HttpRequest& request);
  HttpResponse route(const HttpRequest& request);
  HttpResponse reject_too_large(const HttpRequest& request);

  std::string verify_token_, app_secret_;
  Handlers handlers_;
  std::map<std::string, std::map<std::string, RouteHandler>> routes_;  // path -> method -> handler
  HttpCounters counters_;
  std::deque<WebhookBatch> pending_batches_;
  guint dispatch_source_ = 0;
  SoupServer* server_;  // owned; unreffed in the destructor after the listeners are closed
};

}  // namespace vb
