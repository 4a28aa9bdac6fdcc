// The process-wide network thread shared by every openairealtime instance, and
// a thin WebSocket client over libsoup that lives on it.
#pragma once

#include <libsoup/soup.h>

#include "glib_ptr.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace openairealtime {

// One GLib main loop on one thread for all instances: keeps libsoup
// single-threaded and the thread count per call low. Refcounted: the first
// acquire() starts it, dropping the last reference stops and joins it.
class NetworkThread {
 public:
  static std::shared_ptr<NetworkThread> acquire();
  ~NetworkThread();
  NetworkThread(const NetworkThread&) = delete;
  NetworkThread& operator=(const NetworkThread&) = delete;

  GMainContext* context() const { return context_.get(); }
  bool is_current() const;
  // Runs `work` on the network thread and returns once it has run.
  void run_sync(const std::function<void()>& work);

 private:
  NetworkThread();

  std::unique_ptr<GMainContext, decltype(&g_main_context_unref)> context_;
  std::unique_ptr<GMainLoop, decltype(&g_main_loop_unref)> loop_;
  GThread* thread_;  // joined (or detached) by the destructor
};

// Receives the events of one WebSocketClient, on the network thread. A handler
// may destroy the client that called it.
class WebSocketListener {
 public:
  virtual void on_websocket_open() = 0;
  virtual void on_websocket_text(const char* text, gsize size) = 0;
  // The handshake failed; `http_status` is 0 when no HTTP response came back.
  virtual void on_websocket_failed(guint http_status, const std::string& message) = 0;
  virtual void on_websocket_closed(gushort code, const std::string& reason) = 0;

 protected:
  ~WebSocketListener() = default;
};

// One WebSocket connection attempt. Create, use and destroy it on the network
// thread; destroying it cancels the handshake or drops the socket, and no
// listener call happens afterwards.
class WebSocketClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  explicit WebSocketClient(WebSocketListener& listener);
  ~WebSocketClient();
  WebSocketClient(const WebSocketClient&) = delete;
  WebSocketClient& operator=(const WebSocketClient&) = delete;

  void connect(const std::string& url, const Headers& headers);
  bool is_open() const;
  // True while the socket cannot take more data: libsoup would queue whatever
  // we send now without bound, so the caller should hold it back.
  bool congested() const;
  bool send(const std::string& text);
  void close();

 private:
  static void on_connected(GObject* source, GAsyncResult* result, gpointer self);
  static void on_message(SoupWebsocketConnection* connection, gint type, GBytes* message, gpointer self);
  static void on_closed(SoupWebsocketConnection* connection, gpointer self);

  WebSocketListener& listener_;
  GObjectPtr<SoupSession> session_;
  GObjectPtr<GCancellable> cancellable_;
  GObjectPtr<SoupMessage> handshake_;
  GObjectPtr<SoupWebsocketConnection> connection_;
  GObjectPtr<GSocket> socket_;  // under the WebSocket (and TLS), for congested()
};

}  // namespace openairealtime
