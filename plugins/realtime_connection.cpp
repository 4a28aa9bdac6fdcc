#include "realtime_connection.h"

#include <gst/gst.h>

#include <condition_variable>
#include <mutex>

GST_DEBUG_CATEGORY_EXTERN(openairealtime_debug);
#define GST_CAT_DEFAULT openairealtime_debug

namespace openairealtime {
namespace {

// Server events can be large (audio deltas, full session objects).
constexpr guint64 kMaxIncomingPayload = 16 * 1024 * 1024;
constexpr guint kKeepaliveSeconds = 20;

// The GSocket under a WebSocket's stream, through TLS or other wrappers.
GSocket* find_socket(GIOStream* stream) {
  for (int depth = 0; stream && depth < 4; ++depth) {
    if (G_IS_SOCKET_CONNECTION(stream)) return g_socket_connection_get_socket(G_SOCKET_CONNECTION(stream));
    GIOStream* base = nullptr;
    for (const char* property : {"base-io-stream", "base-iostream"}) {
      GParamSpec* spec = g_object_class_find_property(G_OBJECT_GET_CLASS(stream), property);
      if (spec && g_type_is_a(spec->value_type, G_TYPE_IO_STREAM)) {
        g_object_get(stream, property, &base, nullptr);
        break;
      }
    }
    if (base) g_object_unref(base);  // still owned by `stream`
    stream = base;
  }
  return nullptr;
}

gpointer run_loop(gpointer data) {
  // The thread owns its own references: it may outlive the NetworkThread
  // object when the last reference is dropped on this very thread.
  g_autoptr(GMainLoop) loop = static_cast<GMainLoop*>(data);
  GMainContext* context = g_main_loop_get_context(loop);
  g_main_context_push_thread_default(context);
  GST_DEBUG("network thread running");
  g_main_loop_run(loop);
  g_main_context_pop_thread_default(context);
  GST_DEBUG("network thread stopped");
  return nullptr;
}

}  // namespace

std::shared_ptr<NetworkThread> NetworkThread::acquire() {
  static std::mutex mutex;
  static std::weak_ptr<NetworkThread> current;
  std::lock_guard lock(mutex);
  if (auto thread = current.lock()) return thread;
  std::shared_ptr<NetworkThread> thread(new NetworkThread());
  current = thread;
  return thread;
}

NetworkThread::NetworkThread()
    : context_(g_main_context_new(), g_main_context_unref),
      loop_(g_main_loop_new(context_.get(), FALSE), g_main_loop_unref),
      thread_(g_thread_new("openairealtime", run_loop, g_main_loop_ref(loop_.get()))) {}

NetworkThread::~NetworkThread() {
  // Quit from inside the loop so a quit can never race ahead of g_main_loop_run.
  GSource* quit = g_idle_source_new();
  g_source_set_callback(
      quit,
      [](gpointer loop) -> gboolean {
        g_main_loop_quit(static_cast<GMainLoop*>(loop));
        return G_SOURCE_REMOVE;
      },
      g_main_loop_ref(loop_.get()), reinterpret_cast<GDestroyNotify>(g_main_loop_unref));
  g_source_attach(quit, context_.get());
  g_source_unref(quit);
  if (is_current())
    g_thread_unref(thread_);  // last user was on this thread: it ends by itself after this dispatch
  else
    g_thread_join(thread_);
}

bool NetworkThread::is_current() const { return g_thread_self() == thread_; }

void NetworkThread::run_sync(const std::function<void()>& work) {
  if (is_current()) {
    work();
    return;
  }
  struct Job {
    const std::function<void()>& work;
    std::mutex mutex;
    std::condition_variable done_cond;
    bool done = false;
  } job{work};
  g_main_context_invoke(
      context_.get(),
      [](gpointer data) -> gboolean {
        auto* job = static_cast<Job*>(data);
        job->work();
        std::lock_guard lock(job->mutex);
        job->done = true;
        job->done_cond.notify_one();
        return G_SOURCE_REMOVE;
      },
      &job);
  std::unique_lock lock(job.mutex);
  job.done_cond.wait(lock, [&job] { return job.done; });
}

WebSocketClient::WebSocketClient(WebSocketListener& listener)
    : listener_(listener), session_(soup_session_new()), cancellable_(g_cancellable_new()) {}

WebSocketClient::~WebSocketClient() {
  g_cancellable_cancel(cancellable_.get());
  if (connection_) {
    g_signal_handlers_disconnect_by_data(connection_.get(), this);
    close();
  }
  soup_session_abort(session_.get());
}

void WebSocketClient::connect(const std::string& url, const Headers& headers) {
  handshake_.reset(soup_message_new(SOUP_METHOD_GET, url.c_str()));
  if (!handshake_) {
    listener_.on_websocket_failed(0, "invalid URL");
    return;
  }
  SoupMessageHeaders* request_headers = soup_message_get_request_headers(handshake_.get());
  for (const auto& [name, value] : headers) soup_message_headers_replace(request_headers, name.c_str(), value.c_str());
  soup_session_websocket_connect_async(session_.get(), handshake_.get(), nullptr, nullptr, G_PRIORITY_DEFAULT,
                                       cancellable_.get(),
                                       &WebSocketClient::on_connected, this);
}

void WebSocketClient::on_connected(GObject* source, GAsyncResult* result, gpointer self) {
  g_autoptr(GError) error = nullptr;
  SoupWebsocketConnection* connection =
      soup_session_websocket_connect_finish(SOUP_SESSION(source), result, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) return;  // `self` is gone
  auto* client = static_cast<WebSocketClient*>(self);
  if (!connection) {
    guint status = soup_message_get_status(client->handshake_.get());
    client->listener_.on_websocket_failed(status, error ? error->message : "unknown error");
    return;
  }
  client->connection_.reset(connection);
  if (GSocket* socket = find_socket(soup_websocket_connection_get_io_stream(connection)))
    client->socket_.reset(G_SOCKET(g_object_ref(socket)));
  else
    GST_WARNING("cannot find the WebSocket's socket: no congestion control of the input");
  soup_websocket_connection_set_max_incoming_payload_size(connection, kMaxIncomingPayload);
  soup_websocket_connection_set_keepalive_interval(connection, kKeepaliveSeconds);
  g_signal_connect(connection, "message", G_CALLBACK(&WebSocketClient::on_message), client);
  g_signal_connect(connection, "closed", G_CALLBACK(&WebSocketClient::on_closed), client);
  client->listener_.on_websocket_open();
}

void WebSocketClient::on_message(SoupWebsocketConnection*, gint type, GBytes* message, gpointer self) {
  auto* client = static_cast<WebSocketClient*>(self);
  gsize size = 0;
  const auto* data = static_cast<const char*>(g_bytes_get_data(message, &size));
  if (type != SOUP_WEBSOCKET_DATA_TEXT) {
    GST_WARNING("ignoring a binary WebSocket message of %" G_GSIZE_FORMAT " bytes", size);
    return;
  }
  client->listener_.on_websocket_text(data ? data : "", size);
}

void WebSocketClient::on_closed(SoupWebsocketConnection* connection, gpointer self) {
  auto* client = static_cast<WebSocketClient*>(self);
  const char* reason = soup_websocket_connection_get_close_data(connection);
  client->listener_.on_websocket_closed(soup_websocket_connection_get_close_code(connection),
                                        reason ? reason : "");
}

bool WebSocketClient::is_open() const {
  return connection_ && soup_websocket_connection_get_state(connection_.get()) == SOUP_WEBSOCKET_STATE_OPEN;
}

bool WebSocketClient::congested() const {
  return socket_ && !(g_socket_condition_check(socket_.get(), G_IO_OUT) & G_IO_OUT);
}

bool WebSocketClient::send(const std::string& text) {
  if (!is_open()) return false;
  // send_text needs a NUL-terminated string; std::string guarantees one.
  soup_websocket_connection_send_text(connection_.get(), text.c_str());
  return true;
}

void WebSocketClient::close() {
  if (is_open()) soup_websocket_connection_close(connection_.get(), SOUP_WEBSOCKET_CLOSE_NORMAL, nullptr);
}

}  // namespace openairealtime
