// voicebridge: answers WhatsApp Business voice calls with an OpenAI Realtime
// voice agent. One GLib main loop owns the HTTP server, the Graph API client
// and the call table; each call's media runs in its own GStreamer pipeline.
#include <glib-unix.h>
#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <cstdio>
#include <memory>

#include "call/call_table.h"
#include "call/media.h"
#include "config.h"
#include "glib_util.h"
#include "http/server.h"
#include "store/database.h"
#include "tools/tools.h"
#include "whatsapp/graph_api.h"

namespace vb {
namespace {

// Time given to the terminate/reject requests of ended calls before exiting.
constexpr guint kShutdownGraceMs = 2000;

// "ok", "down", or "none" when no DATABASE_URL is configured.
const char* database_state(const Database* db) {
  if (!db)
    return "none";
  return db->healthy() ? "ok" : "down";
}

std::string health_json(const CallTable& calls, const Config& config, const Database* db, gint64 started_us) {
  const bool database_down = db && !db->healthy();
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "status");
  json_builder_add_string_value(builder, database_down ? "degraded" : "healthy");
  json_builder_set_member_name(builder, "database");
  json_builder_add_string_value(builder, database_state(db));
  json_builder_set_member_name(builder, "active_calls");
  json_builder_add_int_value(builder, static_cast<gint64>(calls.active_calls()));
  json_builder_set_member_name(builder, "max_calls");
  json_builder_add_int_value(builder, config.max_concurrent_calls);
  json_builder_set_member_name(builder, "uptime_s");
  json_builder_add_int_value(builder, (g_get_monotonic_time() - started_us) / G_USEC_PER_SEC);
  json_builder_set_member_name(builder, "version");
  json_builder_add_string_value(builder, VERSION);
  json_builder_end_object(builder);
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autofree char* text = json_to_string(root, FALSE);
  return text;
}

int run(const Config& config) {
  g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
  const gint64 started_us = g_get_monotonic_time();

  GraphApi graph(config.graph_url, config.phone_number_id, config.access_token);
  std::unique_ptr<Database> db;
  if (!config.database_url.empty()) {
    db = std::make_unique<Database>(config.database_url, config.database_pool_size);
    db->start();
  } else {
    g_message("no DATABASE_URL: tasks and reminders are unavailable to the assistant");
  }
  Tools tools(db.get(), config);
  CallTable calls(config, graph, tools, db.get());
  HttpServer::Handlers handlers;
  handlers.on_webhook = [&calls](WebhookBatch batch) { calls.handle(batch); };
  handlers.health_json = [&] { return health_json(calls, config, db.get(), started_us); };
  HttpServer http(config, std::move(handlers));
  std::string error;
  if (!http.listen("0.0.0.0", config.port, &error)) {
    g_printerr("voicebridge: cannot listen on port %d: %s\n", config.port, error.c_str());
    return 1;
  }
  g_message("voicebridge %s listening on port %d; %s", VERSION, http.port(), config.describe().c_str());

  ScopedSource exit_timer;
  auto shut_down = [&] {
    if (exit_timer.active())
      return;
    g_message("shutting down: ending %zu call(s)", calls.active_calls());
    calls.end_all(EndReason::Shutdown);
    exit_timer = run_after(kShutdownGraceMs, [&] {
      exit_timer.release();
      g_main_loop_quit(loop);
    });
  };
  using ShutDown = decltype(shut_down);
  auto on_signal = [](gpointer data) -> gboolean {
    (*static_cast<ShutDown*>(data))();
    return G_SOURCE_CONTINUE;
  };
  ScopedSource sigterm(g_unix_signal_add(SIGTERM, on_signal, &shut_down));
  ScopedSource sigint(g_unix_signal_add(SIGINT, on_signal, &shut_down));

  g_main_loop_run(loop);
  graph.cancel_all();
  g_message("stopped");
  return 0;
}

}  // namespace
}  // namespace vb

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  auto result = vb::load_config([](const char* name) { return g_getenv(name); });
  if (!result.config) {
    g_printerr("voicebridge: invalid configuration:\n");
    for (const auto& error : result.errors)
      g_printerr("  %s\n", error.c_str());
    g_printerr("See README.md for every setting.\n");
    return 2;
  }
  if (!vb::register_static_plugins()) {
    g_printerr("voicebridge: cannot register the openairealtime element\n");
    return 1;
  }
  return vb::run(*result.config);
}
