// voicebridge: answers WhatsApp Business voice calls with an OpenAI Realtime
// voice agent. One GLib main loop owns the HTTP server, the Graph API client
// and the call table; each call's media runs in its own GStreamer pipeline.
#include <glib-unix.h>
#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "call/call_table.h"
#include "call/media.h"
#include "call/srtp_crypto.h"
#include "config.h"
#include "glib_util.h"
#include "http/metrics.h"
#include "http/server.h"
#include "log.h"
#include "store/database.h"
#include "store/reminder_scheduler.h"
#include "tools/tools.h"
#include "whatsapp/graph_api.h"

namespace vb {
namespace {

// After the drain, the terminate/reject requests still in flight get this long to be answered.
constexpr int64_t kGraphFlushLimitUs = 5 * G_USEC_PER_SEC;
constexpr guint kGraphFlushPollMs = 50;

// "ok", "down", or "none" when no DATABASE_URL is configured.
const char* database_state(const Database* db) {
  if (!db)
    return "none";
  return db->healthy() ? "ok" : "down";
}

double capacity_used_percent(const CallTable& calls, const Config& config) {
  const double percent = 100.0 * static_cast<double>(calls.active_calls()) / config.max_concurrent_calls;
  return std::round(percent * 10) / 10;
}

std::string health_json(const CallTable& calls, const Config& config, const Database* db, gint64 started_us) {
  const bool database_down = db && !db->healthy();
  const char* status = calls.draining() ? "draining" : database_down ? "degraded" : "healthy";
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "status");
  json_builder_add_string_value(builder, status);
  json_builder_set_member_name(builder, "database");
  json_builder_add_string_value(builder, database_state(db));
  json_builder_set_member_name(builder, "active_calls");
  json_builder_add_int_value(builder, static_cast<gint64>(calls.active_calls()));
  json_builder_set_member_name(builder, "max_calls");
  json_builder_add_int_value(builder, config.max_concurrent_calls);
  json_builder_set_member_name(builder, "capacity_used_percent");
  json_builder_add_double_value(builder, capacity_used_percent(calls, config));
  json_builder_set_member_name(builder, "uptime_s");
  json_builder_add_int_value(builder, (g_get_monotonic_time() - started_us) / G_USEC_PER_SEC);
  json_builder_set_member_name(builder, "version");
  json_builder_add_string_value(builder, VERSION);
  json_builder_end_object(builder);
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autofree char* text = json_to_string(root, FALSE);
  return text;
}

// GET /ready: 200 while a new call would be taken, 503 (and why) otherwise.
HttpResponse readiness(const CallTable& calls, const Config& config) {
  const std::string load =
      std::to_string(calls.active_calls()) + " of " + std::to_string(config.max_concurrent_calls) + " calls\n";
  if (calls.draining())
    return {503, "text/plain", "not ready: draining (shutting down), " + load};
  if (calls.at_capacity())
    return {503, "text/plain", "not ready: at capacity, " + load};
  return {200, "text/plain", "ready: " + load};
}

HttpResponse metrics_text(const Metrics& metrics, const CallTable& calls, const Config& config, const Database* db,
                          const HttpServer& http) {
  LiveState live;
  live.active_inbound = calls.active_calls(CallDirection::Inbound);
  live.active_outbound = calls.active_calls(CallDirection::Outbound);
  live.max_calls = config.max_concurrent_calls;
  live.draining = calls.draining();
  if (db) {
    live.database_up = db->healthy();
    live.database_errors = db->errors();
  }
  live.webhooks = http.counters().webhooks_received;
  live.signature_failures = http.counters().signature_failures;
  live.live_media = calls.live_media();
  return {200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(live)};
}

// SIGTERM/SIGINT: refuse new calls (Graph reject), let the active ones end on
// their own for up to DRAIN_TIMEOUT_S, terminate the rest, wait (bounded) for
// the Graph API requests still in flight, then quit the main loop. A second
// signal stops waiting for the active calls.
class Drain {
 public:
  Drain(CallTable& calls, GraphApi& graph, GMainLoop* loop, int timeout_s)
      : calls_(calls), graph_(graph), loop_(loop), timeout_s_(timeout_s) {}

  void on_signal() {
    if (calls_.draining()) {
      g_message("second stop signal: ending %zu call(s) now", calls_.active_calls());
      end_remaining();
      return;
    }
    calls_.start_draining();
    if (calls_.active_calls() == 0) {
      flush_and_quit();
      return;
    }
    g_message("draining: %zu call(s) up, new calls are rejected; ending the rest in %d s", calls_.active_calls(),
              timeout_s_);
    drain_timer_ = run_after(static_cast<guint>(timeout_s_) * 1000, [this] {
      drain_timer_.release();
      g_message("drain timeout: ending %zu call(s)", calls_.active_calls());
      end_remaining();
    });
  }

  // The table's calls leave it only after their media is freed: exit once the last one has.
  void on_call_removed() {
    if (calls_.draining() && calls_.active_calls() == 0)
      flush_and_quit();
  }

 private:
  void end_remaining() {
    drain_timer_.reset();
    calls_.end_all(EndReason::Shutdown);
  }

  void flush_and_quit() {
    if (flushing_)
      return;
    flushing_ = true;
    drain_timer_.reset();
    flush_deadline_us_ = g_get_monotonic_time() + kGraphFlushLimitUs;
    quit_when_graph_done();
  }

  void quit_when_graph_done() {
    const size_t pending = graph_.in_flight();
    if (pending == 0 || g_get_monotonic_time() >= flush_deadline_us_) {
      if (pending)
        g_warning("stopping with %zu Graph API request(s) unanswered", pending);
      g_main_loop_quit(loop_);
      return;
    }
    flush_timer_ = run_after(kGraphFlushPollMs, [this] {
      flush_timer_.release();
      quit_when_graph_done();
    });
  }

  CallTable& calls_;
  GraphApi& graph_;
  GMainLoop* loop_;
  const int timeout_s_;
  bool flushing_ = false;
  int64_t flush_deadline_us_ = 0;
  ScopedSource drain_timer_;
  ScopedSource flush_timer_;
};

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
  Metrics metrics(Tools::names());
  Tools tools(db.get(), config);
  CallTable calls(config, graph, tools, db.get(), metrics);
  HttpServer::Handlers handlers;
  handlers.on_webhook = [&calls](WebhookBatch batch) { calls.handle(batch); };
  handlers.health_json = [&] { return health_json(calls, config, db.get(), started_us); };
  HttpServer http(config, std::move(handlers));
  http.add_handler("GET", "/ready", [&](const HttpRequest&) { return readiness(calls, config); });
  http.add_handler("GET", "/metrics",
                   [&](const HttpRequest&) { return metrics_text(metrics, calls, config, db.get(), http); });
  std::string error;
  if (!http.listen("0.0.0.0", config.port, &error)) {
    g_printerr("voicebridge: cannot listen on port %d: %s\n", config.port, error.c_str());
    return 1;
  }
  g_message("voicebridge %s listening on port %d; %s", VERSION, http.port(), config.describe().c_str());

  // Reminders are called out by every server process sharing the database.
  std::unique_ptr<ReminderScheduler> reminders;
  if (db) {
    const ReminderRetryPolicy policy{config.reminder_max_attempts, config.reminder_retry_backoff_s};
    const std::string claimer = reminder_claimer_id();
    reminders = std::make_unique<ReminderScheduler>(
        *db, claimer, ReminderSchedulerSettings{config.reminder_tick_s, config.reminder_claim_timeout_s},
        [&calls] { return calls.free_capacity(); },
        [&calls, claimer, policy](const ClaimedReminder& reminder) {
          calls.place_reminder_call(reminder, claimer, policy);
        });
    reminders->start();
  }

  Drain drain(calls, graph, loop, config.drain_timeout_s);
  calls.on_call_removed = [&drain](const std::string&) { drain.on_call_removed(); };
  auto on_signal = [](gpointer data) -> gboolean {
    static_cast<Drain*>(data)->on_signal();
    return G_SOURCE_CONTINUE;
  };
  ScopedSource sigterm(g_unix_signal_add(SIGTERM, on_signal, &drain));
  ScopedSource sigint(g_unix_signal_add(SIGINT, on_signal, &drain));

  g_main_loop_run(loop);
  calls.on_call_removed = nullptr;
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
  if (result.config->log_format == vb::LogFormat::Json)
    vb::use_json_logs();
  vb::log_element_warnings();
  if (!vb::register_static_plugins()) {
    g_printerr("voicebridge: cannot register the openairealtime, voiceopus and voicertp elements\n");
    return 1;
  }
  if (std::string error; !vb::use_openssl_srtp_crypto(&error))
    g_warning("media: %s; SRTP stays on libsrtp2's own crypto, at several times the CPU per packet", error.c_str());
  vb::warm_up_media();
  return vb::run(*result.config);
}
