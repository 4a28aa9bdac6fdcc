// Client for Meta's Graph API call actions: POST {graph_url}/{phone_number_id}/calls. Async on the GLib main loop.
#pragma once

#include <gio/gio.h>
#include <libsoup/soup.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vb {

struct GraphResult {
  bool ok = false;
  int http_status = 0;  // 0 when no response arrived
  int error_code = 0;   // Meta's error.code
  std::string error_message, error_details, fbtrace_id;
  std::string body;     // raw response body
  bool transport_error = false;
  std::string call_id;  // connect: calls[0].id of the new call
  int attempts = 0;     // requests sent (retries included)
};
using GraphCallback = std::function<void(const GraphResult&)>;

class GraphApi {
 public:
  struct RetryPolicy {
    int max_attempts = 3;
    std::vector<unsigned> delays_ms = {250, 1000};  // before attempt 2, 3, ... (the last repeats)
  };

  GraphApi(std::string graph_url, std::string phone_number_id, std::string access_token);
  ~GraphApi();  // cancels everything in flight: no callback runs afterwards
  GraphApi(const GraphApi&) = delete;
  GraphApi& operator=(const GraphApi&) = delete;

  void pre_accept(const std::string& call_id, const std::string& sdp_answer, GraphCallback done);
  void accept(const std::string& call_id, const std::string& sdp_answer, GraphCallback done);
  void reject(const std::string& call_id, GraphCallback done);
  void terminate(const std::string& call_id, GraphCallback done);
  // Business-initiated call; on success result.call_id holds calls[0].id.
  void connect(const std::string& to, const std::string& sdp_offer, const std::string& biz_opaque,
               GraphCallback done);

  // Drops every pending request and retry; their callbacks are never called. The client stays usable.
  void cancel_all();

  // Requests started whose callback has not run yet (retries waiting included).
  size_t in_flight() const { return in_flight_; }

  void set_retry_policy(RetryPolicy policy) { retry_policy_ = std::move(policy); }
  void set_request_timeout_s(unsigned seconds);  // per attempt; default 10

 private:
  struct Request;
  void start(std::unique_ptr<Request> request);
  void send(std::unique_ptr<Request> request);
  void schedule(std::unique_ptr<Request> request, unsigned delay_ms);
  void on_response(std::unique_ptr<Request> request, GBytes* body, GError* error);
  void finish(std::unique_ptr<Request> request, const GraphResult& result);
  static void on_send_done(GObject* session, GAsyncResult* result, gpointer data);
  static gboolean on_timer(gpointer data);

  std::string calls_url_, authorization_;
  RetryPolicy retry_policy_;
  SoupSession* session_;          // owned
  GCancellable* cancellable_;     // owned; replaced by cancel_all()
  std::map<guint, std::unique_ptr<Request>> scheduled_;  // retry timer source id -> request waiting for it
  size_t in_flight_ = 0;
};

}  // namespace vb
