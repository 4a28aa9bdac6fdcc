// Proves the fake Realtime server speaks the GA protocol the way the reference
// describes, through a real libsoup WebSocket client on its own GMainContext.
#include <gtest/gtest.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_realtime_server.h"

namespace {

using fake_realtime::Behaviour;
using fake_realtime::FunctionCall;
using fake_realtime::Server;

constexpr int kSamplesPerMs = 24;

std::vector<int16_t> tone(int ms, int hz = 300, double amplitude = 0.3) {
  std::vector<int16_t> pcm(static_cast<size_t>(ms) * kSamplesPerMs);
  for (size_t i = 0; i < pcm.size(); ++i)
    pcm[i] = static_cast<int16_t>(amplitude * 32767 * std::sin(2 * G_PI * hz * static_cast<double>(i) / 24000));
  return pcm;
}

std::vector<int16_t> silence(int ms) {
  return std::vector<int16_t>(static_cast<size_t>(ms) * kSamplesPerMs, 0);
}

std::vector<int16_t> concat(std::vector<int16_t> a, const std::vector<int16_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

int64_t now_us() {
  return g_get_monotonic_time();
}

struct Event {
  std::string type;
  std::string text;
  JsonNode* root = nullptr;
  int64_t received_us = 0;
  JsonObject* object() const { return json_node_get_object(root); }
  std::string str(const char* key) const {
    JsonNode* node = json_object_get_member(object(), key);
    return node && JSON_NODE_TYPE(node) == JSON_NODE_VALUE ? json_node_get_string(node) : "";
  }
  JsonObject* obj(const char* key) const { return json_object_get_object_member(object(), key); }
};

std::string member(JsonObject* object, const char* key) {
  JsonNode* node = object ? json_object_get_member(object, key) : nullptr;
  return node && JSON_NODE_TYPE(node) == JSON_NODE_VALUE && json_node_get_value_type(node) == G_TYPE_STRING
             ? json_node_get_string(node)
             : "";
}

// Makes a context the thread default for a scope (libsoup binds to it).
class ContextScope {
 public:
  explicit ContextScope(GMainContext* context) : context_(context) { g_main_context_push_thread_default(context_); }
  ~ContextScope() { g_main_context_pop_thread_default(context_); }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  GMainContext* context_;
};

// A WebSocket client on its own main context, pumped by the test thread.
// Several may exist at once: each makes its context the thread default only
// while it works.
class Client {
 public:
  Client() : context_(g_main_context_new()) {
    ContextScope scope(context_);
    session_ = soup_session_new();
  }
  ~Client() {
    {
      ContextScope scope(context_);
      if (ws_) {
        g_signal_handlers_disconnect_by_data(ws_, this);
        g_object_unref(ws_);
      }
      for (Event& e : events_)
        json_node_unref(e.root);
      g_object_unref(session_);
      while (g_main_context_iteration(context_, FALSE)) {
      }
    }
    g_main_context_unref(context_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Returns true once the WebSocket is open; otherwise http_status() says why.
  bool connect(const std::string& url, const std::map<std::string, std::string>& headers = {}) {
    ContextScope scope(context_);
    SoupMessage* msg = soup_message_new("GET", url.c_str());
    if (!msg)
      throw std::invalid_argument("bad url " + url);
    for (const auto& [name, value] : headers)
      soup_message_headers_append(soup_message_get_request_headers(msg), name.c_str(), value.c_str());
    bool finished = false;
    struct Pending {
      Client* self;
      bool* finished;
    } pending{this, &finished};
    soup_session_websocket_connect_async(
        session_, msg, nullptr, nullptr, G_PRIORITY_DEFAULT, nullptr,
        [](GObject* source, GAsyncResult* result, gpointer data) {
          auto* p = static_cast<Pending*>(data);
          GError* error = nullptr;
          p->self->ws_ = soup_session_websocket_connect_finish(SOUP_SESSION(source), result, &error);
          g_clear_error(&error);
          *p->finished = true;
        },
        &pending);
    pump_until([&] { return finished; });
    http_status_ = soup_message_get_status(msg);
    g_object_unref(msg);
    if (!ws_)
      return false;
    g_signal_connect(ws_, "message", G_CALLBACK(on_message), this);
    g_signal_connect(ws_, "closed", G_CALLBACK(on_closed), this);
    return true;
  }

  bool connect_openai(const Server& server, const std::string& key = "sk-test") {
    return connect(server.url() + "?model=gpt-realtime", {{"Authorization", "Bearer " + key}});
  }

  guint http_status() const { return http_status_; }
  bool closed() const { return closed_; }
  gushort close_code() const { return close_code_; }

  void send(const std::string& text) {
    ContextScope scope(context_);
    soup_websocket_connection_send_text(ws_, text.c_str());
  }

  void append(const std::vector<int16_t>& pcm, int chunk_ms = 20) {
    const size_t chunk = static_cast<size_t>(chunk_ms) * kSamplesPerMs;
    for (size_t start = 0; start < pcm.size(); start += chunk) {
      const size_t n = std::min(chunk, pcm.size() - start);
      std::vector<uint8_t> bytes(n * 2);
      for (size_t i = 0; i < n; ++i) {
        bytes[2 * i] = static_cast<uint8_t>(pcm[start + i] & 0xff);
        bytes[2 * i + 1] = static_cast<uint8_t>((static_cast<uint16_t>(pcm[start + i]) >> 8) & 0xff);
      }
      g_autofree char* b64 = g_base64_encode(bytes.data(), bytes.size());
      send(std::string(R"({"type":"input_audio_buffer.append","audio":")") + b64 + "\"}");
    }
  }

  bool pump_until(const std::function<bool()>& done, int timeout_ms = 10000) {
    ContextScope scope(context_);
    const int64_t deadline = now_us() + int64_t{timeout_ms} * 1000;
    while (!done()) {
      if (now_us() > deadline)
        return false;
      GSource* wake = g_timeout_source_new(10);
      g_source_set_callback(wake, [](gpointer) -> gboolean { return G_SOURCE_REMOVE; }, nullptr, nullptr);
      g_source_attach(wake, context_);
      g_main_context_iteration(context_, TRUE);
      g_source_destroy(wake);
      g_source_unref(wake);
    }
    return true;
  }

  size_t count(const std::string& type) const {
    return static_cast<size_t>(std::count_if(events_.begin(), events_.end(), [&](const Event& e) { return e.type == type; }));
  }

  // The nth (0-based) event of this type, waiting for it; throws on timeout.
  const Event& wait_for(const std::string& type, size_t nth = 0, int timeout_ms = 10000) {
    if (!pump_until([&] { return count(type) > nth; }, timeout_ms))
      throw std::runtime_error("timed out waiting for " + type + " #" + std::to_string(nth) + "; got: " + types());
    size_t seen = 0;
    for (const Event& e : events_)
      if (e.type == type && seen++ == nth)
        return e;
    throw std::logic_error("unreachable");
  }

  // The next error event after the ones already consumed.
  const Event& next_error() { return wait_for("error", errors_consumed_++); }

  std::string types() const {
    std::string all;
    for (const Event& e : events_)
      all += e.type + " ";
    return all;
  }
  const std::deque<Event>& events() const { return events_; }

 private:
  static void on_message(SoupWebsocketConnection*, gint, GBytes* message, gpointer self) {
    gsize length = 0;
    const auto* data = static_cast<const char*>(g_bytes_get_data(message, &length));
    g_autoptr(JsonParser) parser = json_parser_new();
    Event e;
    e.text.assign(data, length);
    e.received_us = now_us();
    if (json_parser_load_from_data(parser, data, static_cast<gssize>(length), nullptr) &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
      e.root = json_node_ref(json_parser_get_root(parser));
      e.type = member(json_node_get_object(e.root), "type");
    } else {
      e.root = json_node_init_object(json_node_alloc(), json_object_new());
      e.type = "(unparseable)";
    }
    static_cast<Client*>(self)->events_.push_back(std::move(e));
  }
  static void on_closed(SoupWebsocketConnection* ws, gpointer self) {
    auto* client = static_cast<Client*>(self);
    client->closed_ = true;
    client->close_code_ = soup_websocket_connection_get_close_code(ws);
  }

  GMainContext* context_;
  SoupSession* session_ = nullptr;
  SoupWebsocketConnection* ws_ = nullptr;
  std::deque<Event> events_;
  size_t errors_consumed_ = 0;
  guint http_status_ = 0;
  bool closed_ = false;
  gushort close_code_ = 0;
};

const char* kValidUpdate = R"({"type":"session.update","event_id":"evt_update","session":{
  "type":"realtime","model":"gpt-realtime","instructions":"Be brief.","output_modalities":["audio"],
  "audio":{"input":{"format":{"type":"audio/pcm","rate":24000},
                    "transcription":{"model":"gpt-4o-mini-transcribe"},
                    "turn_detection":{"type":"server_vad","silence_duration_ms":300}},
           "output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}}}})";

// Connects and completes the session.update handshake.
void open_session(Client& client, const Server& server) {
  ASSERT_TRUE(client.connect_openai(server));
  client.wait_for("session.created");
  client.send(kValidUpdate);
  client.wait_for("session.updated");
}

// Sum of decoded audio bytes of the deltas of one response, in ms.
int delta_ms_of(const Client& client, const std::string& response_id) {
  size_t bytes = 0;
  for (const Event& e : client.events()) {
    if (e.type != "response.output_audio.delta" || e.str("response_id") != response_id)
      continue;
    gsize n = 0;
    g_autofree guchar* pcm = g_base64_decode(e.str("delta").c_str(), &n);
    bytes += n;
  }
  return static_cast<int>(bytes / 48);
}

std::string response_status(const Event& done) {
  return member(done.obj("response"), "status");
}

// ---------------------------------------------------------------------------

TEST(FakeRealtime, RefusesBadHandshakes) {
  Server server{Behaviour{.required_api_key = "sk-right"}};
  {
    Client client;
    EXPECT_FALSE(client.connect(server.url() + "?model=gpt-realtime"));
    EXPECT_EQ(client.http_status(), 401u);
  }
  {
    Client client;
    EXPECT_FALSE(client.connect_openai(server, "sk-wrong"));
    EXPECT_EQ(client.http_status(), 401u);
  }
  {
    Client client;
    EXPECT_FALSE(client.connect(server.url(), {{"Authorization", "Bearer sk-right"}}));
    EXPECT_EQ(client.http_status(), 400u);  // no model
  }
  {
    Client client;  // Azure: api-version means the retired preview protocol
    EXPECT_FALSE(client.connect(server.base_url() + "/openai/v1/realtime?model=dep&api-version=2025-04-01-preview",
                                {{"api-key", "sk-right"}}));
    EXPECT_EQ(client.http_status(), 401u);
  }
  {
    Client client;  // Azure wants api-key, not a missing header
    EXPECT_FALSE(client.connect(server.base_url() + "/openai/v1/realtime?model=dep"));
    EXPECT_EQ(client.http_status(), 401u);
  }
  EXPECT_EQ(server.session_count(), 0u);

  Client openai, azure;
  ASSERT_TRUE(openai.connect_openai(server, "sk-right"));
  ASSERT_TRUE(azure.connect(server.base_url() + "/openai/v1/realtime?model=my-deployment", {{"api-key", "sk-right"}}));
  const Event& created = openai.wait_for("session.created");
  EXPECT_EQ(member(created.obj("session"), "object"), "realtime.session");
  EXPECT_EQ(member(created.obj("session"), "id").rfind("sess_", 0), 0u);
  EXPECT_TRUE(json_object_has_member(created.obj("session"), "expires_at"));
  EXPECT_EQ(created.str("event_id").rfind("event_", 0), 0u);
  azure.wait_for("session.created");
  ASSERT_EQ(server.session_count(), 2u);
  const auto first = server.session(0), second = server.session(1);
  EXPECT_EQ(first.path, "/v1/realtime");
  EXPECT_EQ(first.query, "model=gpt-realtime");
  EXPECT_EQ(first.authorization, "Bearer sk-right");
  EXPECT_EQ(second.path, "/openai/v1/realtime");
  EXPECT_EQ(second.api_key, "sk-right");
  EXPECT_TRUE(first.open && second.open);
  EXPECT_THROW(server.session(2), std::out_of_range);
}

TEST(FakeRealtime, RefusesTheBetaHeaderLikeTheRealApi) {
  Server server;
  Client client;
  ASSERT_TRUE(client.connect(server.url() + "?model=gpt-realtime",
                             {{"Authorization", "Bearer sk"}, {"OpenAI-Beta", "realtime=v1"}}));
  const Event& error = client.wait_for("error");
  EXPECT_EQ(member(error.obj("error"), "code"), "beta_api_shape_disabled");
  ASSERT_TRUE(client.pump_until([&] { return client.closed(); }));
  EXPECT_EQ(client.close_code(), 4000);
  EXPECT_EQ(client.count("session.created"), 0u);
  ASSERT_TRUE(server.wait_until([](const Server& s) { return !s.session(0).open; }));
  EXPECT_TRUE(server.session(0).beta_header);
  EXPECT_EQ(server.session(0).errors_sent, std::vector<std::string>{"beta_api_shape_disabled"});
}

TEST(FakeRealtime, ValidatesSessionUpdateShape) {
  Server server;
  Client client;
  ASSERT_TRUE(client.connect_openai(server));
  client.wait_for("session.created");
  struct Case {
    const char* event;
    const char* code;
    const char* param;
  };
  const Case cases[] = {
      {R"({"type":"session.update","event_id":"e1","session":{"type":"realtime","voice":"alloy"}})",
       "unknown_parameter", "session.voice"},
      {R"({"type":"session.update","session":{"modalities":["audio"],"type":"realtime"}})", "unknown_parameter",
       "session.modalities"},
      {R"({"type":"session.update","session":{"type":"realtime","input_audio_format":"pcm16"}})",
       "unknown_parameter", "session.input_audio_format"},
      {R"({"type":"session.update","session":{"type":"realtime","turn_detection":{"type":"server_vad"}}})",
       "unknown_parameter", "session.turn_detection"},
      {R"({"type":"session.update","session":{"instructions":"x"}})", "missing_required_parameter", "session.type"},
      {R"({"type":"session.update","session":{"type":"realtime","audio":{"output":{"format":{"type":"audio/pcm"}}}}})",
       "missing_required_parameter", "session.audio.output.format.rate"},
      {R"({"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}})",
       "invalid_value", "session.audio.input.format.rate"},
      {R"({"type":"session.update","session":{"type":"realtime","audio":{"input":{"turn_detection":{"type":"server_vad","create_response":null}}}}})",
       "invalid_type", "session.audio.input.turn_detection.create_response"},
      {R"({"type":"session.update","session":{"type":"realtime","tools":[{"type":"function","function":{"name":"f"}}]}})",
       "missing_required_parameter", "session.tools[0].name"},
  };
  for (const Case& c : cases) {
    client.send(c.event);
    const Event& error = client.next_error();
    EXPECT_EQ(member(error.obj("error"), "type"), "invalid_request_error") << c.event;
    EXPECT_EQ(member(error.obj("error"), "code"), c.code) << c.event;
    EXPECT_EQ(member(error.obj("error"), "param"), c.param) << c.event;
  }
  EXPECT_EQ(member(client.wait_for("error", 0).obj("error"), "event_id"), "e1");  // client event_id echoed
  EXPECT_EQ(client.count("session.updated"), 0u);

  client.send(kValidUpdate);
  const Event& updated = client.wait_for("session.updated");
  JsonObject* session = updated.obj("session");
  EXPECT_EQ(member(session, "instructions"), "Be brief.");
  JsonObject* audio = json_object_get_object_member(session, "audio");
  JsonObject* output = json_object_get_object_member(audio, "output");
  EXPECT_EQ(member(output, "voice"), "marin");
  EXPECT_EQ(json_object_get_int_member(json_object_get_object_member(output, "format"), "rate"), 24000);
  JsonObject* detection = json_object_get_object_member(json_object_get_object_member(audio, "input"), "turn_detection");
  EXPECT_EQ(json_object_get_int_member(detection, "silence_duration_ms"), 300);
  EXPECT_TRUE(json_object_get_boolean_member(detection, "interrupt_response"));  // default filled in

  client.send("{not json");
  EXPECT_EQ(member(client.next_error().obj("error"), "type"), "invalid_request_error");
  client.send(R"({"type":"response.audio.delta"})");  // a beta event name
  EXPECT_EQ(member(client.next_error().obj("error"), "param"), "type");

  ASSERT_TRUE(server.wait_until([](const Server& s) { return s.session(0).errors_sent.size() == 11; }));
  const auto record = server.session(0);
  EXPECT_EQ(record.instructions, "Be brief.");
  EXPECT_EQ(record.last_session_update, kValidUpdate);
  EXPECT_EQ(record.events.size(), std::size(cases) + 3);
  EXPECT_EQ(record.event_types.back(), "response.audio.delta");
}

TEST(FakeRealtime, SpeechThenSilenceGivesAFastSpokenReply) {
  const Behaviour behaviour{.reply_ms = 2000, .reply_speed = 8.0, .delta_ms = 100};
  Server server{behaviour};
  Client client;
  open_session(client, server);
  const auto input = concat(concat(silence(200), tone(600, 300)), silence(600));
  client.append(input);

  const Event& started = client.wait_for("input_audio_buffer.speech_started");
  EXPECT_EQ(json_object_get_int_member(started.object(), "audio_start_ms"), 0);  // 200 ms minus 300 ms padding
  const Event& stopped = client.wait_for("input_audio_buffer.speech_stopped");
  EXPECT_EQ(stopped.str("item_id"), started.str("item_id"));
  EXPECT_EQ(json_object_get_int_member(stopped.object(), "audio_end_ms"), 800);
  EXPECT_EQ(client.wait_for("input_audio_buffer.committed").str("item_id"), started.str("item_id"));
  EXPECT_EQ(client.wait_for("conversation.item.input_audio_transcription.completed").str("transcript"),
            "(fake transcript of 600 ms)");
  const Event& created = client.wait_for("response.created");
  const Event& done = client.wait_for("response.done");
  const std::string response_id = member(created.obj("response"), "id");
  EXPECT_EQ(member(done.obj("response"), "id"), response_id);
  EXPECT_EQ(response_status(done), "completed");
  JsonObject* usage = json_object_get_object_member(done.obj("response"), "usage");
  EXPECT_GT(json_object_get_int_member(usage, "output_tokens"), 0);
  EXPECT_TRUE(json_object_has_member(usage, "input_token_details"));

  // The whole reply arrived, as 100 ms deltas interleaved with transcript deltas.
  EXPECT_EQ(delta_ms_of(client, response_id), 2000);
  EXPECT_EQ(client.count("response.output_audio.delta"), 20u);
  EXPECT_EQ(client.wait_for("response.output_audio_transcript.done").str("transcript"),
            "Hello from the fake assistant.");
  EXPECT_EQ(client.count("rate_limits.updated"), 1u);

  // The documented order of one turn.
  const std::vector<std::string> order = {
      "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
      "response.created",                  "rate_limits.updated",               "response.output_item.added",
      "response.content_part.added",       "response.output_audio.delta",       "response.output_audio.done",
      "response.output_audio_transcript.done", "response.content_part.done",    "response.output_item.done",
      "response.done"};
  size_t next = 0;
  for (const Event& e : client.events())
    if (next < order.size() && e.type == order[next])
      ++next;
  EXPECT_EQ(next, order.size()) << client.types();

  // Paced faster than real time: audio length over delivery time, loosely
  // around the configured speed of 8, measured in this very run.
  int64_t first_delta = 0, last_delta = 0;
  for (const Event& e : client.events())
    if (e.type == "response.output_audio.delta") {
      first_delta = first_delta ? first_delta : e.received_us;
      last_delta = e.received_us;
    }
  const double delivery_ms = static_cast<double>(last_delta - first_delta) / 1000.0;
  EXPECT_LT(delivery_ms, 2000 / 2.0) << "deltas should come well faster than real time";
  EXPECT_GT(delivery_ms, 1900 / 8.0 * 0.5) << "deltas should be paced, not dumped at once";

  const auto record = server.session(0);
  EXPECT_EQ(record.input_audio, input);
  EXPECT_EQ(record.appends, input.size() / 480);
  EXPECT_EQ(record.speech_started, 1);
  EXPECT_EQ(record.speech_stopped, 1);
  EXPECT_EQ(record.responses_started, 1);
  EXPECT_NEAR(record.input_dominant_hz, 300, 15);
  EXPECT_GT(record.input_rms, 0.05);
}

TEST(FakeRealtime, BargeInCancelsTheActiveResponse) {
  Server server{Behaviour{.reply_ms = 20000, .reply_speed = 1.0}};
  Client client;
  open_session(client, server);
  client.send(R"({"type":"response.create"})");
  const Event& first_delta = client.wait_for("response.output_audio.delta");
  const std::string response_id = first_delta.str("response_id");
  client.append(tone(200));
  client.wait_for("input_audio_buffer.speech_started");
  const Event& done = client.wait_for("response.done");
  EXPECT_EQ(response_status(done), "cancelled");
  JsonObject* details = json_object_get_object_member(done.obj("response"), "status_details");
  EXPECT_EQ(member(details, "type"), "cancelled");
  EXPECT_EQ(member(details, "reason"), "turn_detected");
  const size_t deltas = client.count("response.output_audio.delta");
  EXPECT_LT(delta_ms_of(client, response_id), 20000);
  // No more deltas once cancelled.
  client.pump_until([] { return false; }, 300);
  EXPECT_EQ(client.count("response.output_audio.delta"), deltas);
  EXPECT_EQ(server.session(0).responses_cancelled, 1);
}

TEST(FakeRealtime, ChecksTruncation) {
  Server server{Behaviour{.reply_ms = 1000, .reply_speed = 20.0}};
  Client client;
  open_session(client, server);
  client.send(R"({"type":"response.create"})");
  const Event& done = client.wait_for("response.done");
  ASSERT_EQ(response_status(done), "completed");
  const std::string item_id = member(client.wait_for("response.output_item.added").obj("item"), "id");
  ASSERT_FALSE(item_id.empty());
  auto truncate = [&](const std::string& item, const std::string& end_ms) {
    client.send(R"({"type":"conversation.item.truncate","item_id":")" + item +
                R"(","content_index":0,"audio_end_ms":)" + end_ms + "}");
  };
  truncate(item_id, "1500");
  const Event& too_long = client.next_error();
  EXPECT_EQ(member(too_long.obj("error"), "message"), "Audio content of 1000ms is already shorter than 1500ms");
  truncate(item_id, "12.5");
  EXPECT_EQ(member(client.next_error().obj("error"), "code"), "invalid_type");
  truncate("item_nope", "10");
  EXPECT_EQ(member(client.next_error().obj("error"), "param"), "item_id");
  truncate(item_id, "400");
  const Event& truncated = client.wait_for("conversation.item.truncated");
  EXPECT_EQ(truncated.str("item_id"), item_id);
  EXPECT_EQ(json_object_get_int_member(truncated.object(), "audio_end_ms"), 400);
  truncate(item_id, "500");  // the item is now 400 ms long
  EXPECT_EQ(member(client.next_error().obj("error"), "message"), "Audio content of 400ms is already shorter than 500ms");

  ASSERT_TRUE(server.wait_until([](const Server& s) { return s.session(0).truncates.size() == 5; }));
  const auto truncates = server.session(0).truncates;
  EXPECT_EQ(truncates[0].audio_sent_ms, 1000);
  EXPECT_EQ(truncates[0].audio_end_ms, 1500);
  EXPECT_EQ(truncates[1].audio_end_ms, -1);
  EXPECT_EQ(truncates[2].audio_sent_ms, -1);
  EXPECT_EQ(truncates[3].item_id, item_id);
  EXPECT_EQ(truncates[4].audio_sent_ms, 400);
}

TEST(FakeRealtime, FunctionCallFlow) {
  Server server{Behaviour{.reply_ms = 300, .reply_speed = 20.0,
                          .function_call = FunctionCall{"get_weather", R"({"city":"Lisbon"})"}}};
  Client client;
  open_session(client, server);
  client.send(R"({"type":"response.create"})");
  const Event& arguments = client.wait_for("response.function_call_arguments.done");
  EXPECT_EQ(arguments.str("name"), "get_weather");
  EXPECT_EQ(arguments.str("arguments"), R"({"city":"Lisbon"})");
  const std::string call_id = arguments.str("call_id");
  EXPECT_EQ(call_id.rfind("call_", 0), 0u);
  const Event& done = client.wait_for("response.done");
  EXPECT_EQ(response_status(done), "completed");
  EXPECT_EQ(client.count("response.output_audio.delta"), 0u);
  JsonArray* output = json_object_get_array_member(done.obj("response"), "output");
  EXPECT_EQ(member(json_array_get_object_element(output, 0), "type"), "function_call");

  client.send(R"({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_bogus","output":"{}"}})");
  EXPECT_EQ(member(client.next_error().obj("error"), "param"), "item.call_id");
  const size_t added_before = client.count("conversation.item.added");
  client.send(R"({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":")" + call_id +
              R"(","output":"{\"temp_c\":21}"}})");
  const Event& added = client.wait_for("conversation.item.added", added_before);
  EXPECT_EQ(member(json_object_get_object_member(added.object(), "item"), "call_id"), call_id);

  client.send(R"({"type":"response.create"})");  // now a spoken reply
  const Event& second = client.wait_for("response.done", 1);
  EXPECT_EQ(response_status(second), "completed");
  EXPECT_EQ(delta_ms_of(client, member(second.obj("response"), "id")), 300);
  EXPECT_EQ(server.session(0).function_outputs, std::vector<std::string>{R"({"temp_c":21})"});
}

// Each turn answers with the next scripted call; the response after a
// function's output speaks; once the calls are used up, turns speak.
TEST(FakeRealtime, FunctionCallSequenceOnePerTurn) {
  Server server{Behaviour{.reply_ms = 300, .reply_speed = 20.0,
                          .function_calls = {FunctionCall{"create_task", R"({"title":"Buy milk"})"},
                                             FunctionCall{"list_tasks", "{}"}}}};
  Client client;
  open_session(client, server);
  auto answer_call = [&](size_t nth, const std::string& output) {
    const Event& call = client.wait_for("response.function_call_arguments.done", nth);
    client.send(R"({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":")" +
                call.str("call_id") + R"(","output":")" + output + R"("}})");
    return std::make_pair(call.str("name"), call.str("arguments"));
  };
  auto response_done = [&](size_t nth) { return member(client.wait_for("response.done", nth).obj("response"), "id"); };

  client.send(R"({"type":"response.create"})");  // turn 1
  EXPECT_EQ(answer_call(0, "{}"), std::make_pair(std::string("create_task"), std::string(R"({"title":"Buy milk"})")));
  response_done(0);
  client.send(R"({"type":"response.create"})");  // after the output: spoken
  EXPECT_EQ(delta_ms_of(client, response_done(1)), 300);
  EXPECT_EQ(client.count("response.function_call_arguments.done"), 1u);

  ASSERT_TRUE(server.start_reply(0));  // turn 2, started by the test
  EXPECT_EQ(answer_call(1, "{\\\"count\\\":1}").first, "list_tasks");
  response_done(2);
  client.send(R"({"type":"response.create"})");
  EXPECT_EQ(delta_ms_of(client, response_done(3)), 300);

  client.send(R"({"type":"response.create"})");  // turn 3: the script is used up
  client.wait_for("response.created", 4);
  EXPECT_FALSE(server.start_reply(0)) << "a response is active";
  EXPECT_EQ(delta_ms_of(client, response_done(4)), 300);
  EXPECT_EQ(client.count("response.function_call_arguments.done"), 2u);

  const fake_realtime::SessionSnapshot s = server.session(0);
  EXPECT_EQ(s.function_outputs, (std::vector<std::string>{"{}", R"({"count":1})"}));
  EXPECT_EQ(s.responses_started, 5);
  EXPECT_FALSE(s.response_active);
  // Each reply: 300 ms of audio = 6 tokens, plus its 5 transcript words; each function call 1.
  EXPECT_EQ(s.output_tokens, 3 * (6 + 5) + 2);
  EXPECT_EQ(s.input_tokens, 0);  // no audio appended

  // A second session starts the script again.
  Client second;
  open_session(second, server);
  second.send(R"({"type":"response.create"})");
  EXPECT_EQ(second.wait_for("response.function_call_arguments.done").str("name"), "create_task");
}

TEST(FakeRealtime, ResponseCreateAndCancelRules) {
  Server server{Behaviour{.reply_ms = 20000, .reply_speed = 1.0}};
  Client client;
  open_session(client, server);
  client.send(R"({"type":"response.cancel"})");
  EXPECT_EQ(member(client.next_error().obj("error"), "code"), "response_cancel_not_active");
  client.send(R"({"type":"response.create"})");
  client.wait_for("response.created");
  client.send(R"({"type":"response.create","event_id":"second"})");
  const Event& busy = client.next_error();
  EXPECT_EQ(member(busy.obj("error"), "code"), "conversation_already_has_active_response");
  EXPECT_EQ(member(busy.obj("error"), "event_id"), "second");
  client.send(R"({"type":"response.cancel"})");
  const Event& done = client.wait_for("response.done");
  EXPECT_EQ(response_status(done), "cancelled");
  EXPECT_EQ(member(json_object_get_object_member(done.obj("response"), "status_details"), "reason"),
            "client_cancelled");

  // History replay after a reconnect: message items are recorded and acknowledged.
  client.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi"}]}})");
  const Event& added = client.wait_for("conversation.item.added", 1);
  EXPECT_EQ(member(json_object_get_object_member(added.object(), "item"), "role"), "assistant");
  client.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"assistant","content":[{"type":"output_audio"}]}})");
  EXPECT_EQ(member(client.next_error().obj("error"), "code"), "invalid_value");
  ASSERT_TRUE(server.wait_until([](const Server& s) { return s.session(0).errors_sent.size() == 3; }));
  EXPECT_EQ(server.session(0).created_items.size(), 1u);
  EXPECT_EQ(server.session(0).responses_cancelled, 1);
}

TEST(FakeRealtime, ServerSideControls) {
  Server server{Behaviour{.reply_ms = 200, .reply_speed = 20.0}};
  Client client;
  open_session(client, server);
  server.send_raw(0, "this is not json");
  client.wait_for("(unparseable)");
  server.send_error(0, "server_error", "boom", "Something broke.");
  const Event& error = client.next_error();
  EXPECT_EQ(member(error.obj("error"), "type"), "server_error");
  EXPECT_EQ(member(error.obj("error"), "code"), "boom");
  server.start_reply(0);
  EXPECT_EQ(response_status(client.wait_for("response.done")), "completed");

  // The HTTP control API on the same port.
  g_autoptr(SoupSession) http = soup_session_new();
  auto request = [&](const char* method, const std::string& path, const std::string& body = "") {
    g_autoptr(SoupMessage) msg = soup_message_new(method, (server.base_url() + path).c_str());
    if (!body.empty()) {
      g_autoptr(GBytes) bytes = g_bytes_new(body.data(), body.size());
      soup_message_set_request_body_from_bytes(msg, "application/json", bytes);
    }
    g_autoptr(GBytes) reply = soup_session_send_and_read(http, msg, nullptr, nullptr);
    gsize n = 0;
    const auto* data = reply ? static_cast<const char*>(g_bytes_get_data(reply, &n)) : "";
    return std::make_pair(soup_message_get_status(msg), std::string(data ? data : "", n));
  };
  client.append(concat(tone(300, 500), silence(100)));
  ASSERT_TRUE(server.wait_until([](const Server& s) { return s.session(0).input_samples == 400 * 24; }));
  const auto [status, json] = request("GET", "/_test/sessions");
  ASSERT_EQ(status, 200u);
  g_autoptr(JsonParser) parser = json_parser_new();
  ASSERT_TRUE(json_parser_load_from_data(parser, json.c_str(), -1, nullptr)) << json;
  JsonArray* sessions = json_node_get_array(json_parser_get_root(parser));
  ASSERT_EQ(json_array_get_length(sessions), 1u);
  JsonObject* s = json_array_get_object_element(sessions, 0);
  EXPECT_EQ(member(s, "path"), "/v1/realtime");
  EXPECT_TRUE(json_object_get_boolean_member(s, "authorization_present"));
  EXPECT_FALSE(json_object_get_boolean_member(s, "api_key_present"));
  EXPECT_EQ(member(s, "instructions"), "Be brief.");
  EXPECT_EQ(json_object_get_int_member(s, "appends"), 20);
  EXPECT_EQ(json_object_get_int_member(s, "input_ms"), 400);
  EXPECT_NEAR(json_object_get_double_member(s, "input_dominant_hz"), 500, 25);
  EXPECT_EQ(json_object_get_int_member(s, "responses_started"), 1);
  JsonArray* events = json_object_get_array_member(s, "events");
  EXPECT_EQ(json_array_get_length(events), 1u);  // the session.update; appends are only counted
  EXPECT_EQ(json_array_get_length(json_object_get_array_member(s, "errors_sent")), 1u);
  EXPECT_TRUE(json_object_get_boolean_member(s, "open"));

  EXPECT_EQ(request("POST", "/_test/sessions/0/send", R"({"type":"custom.event"})").first, 200u);
  client.wait_for("custom.event");
  EXPECT_EQ(request("POST", "/_test/sessions/0/reply").first, 200u);
  client.wait_for("response.done", 1);
  EXPECT_EQ(request("POST", "/_test/sessions/7/drop").first, 404u);
  EXPECT_EQ(request("GET", "/_test/sessions/0/drop").first, 405u);
  EXPECT_EQ(request("POST", "/_test/sessions/0/drop").first, 200u);
  ASSERT_TRUE(client.pump_until([&] { return client.closed(); }));
  EXPECT_EQ(client.close_code(), 0);  // libsoup's way of saying "no close frame arrived"
  ASSERT_TRUE(server.wait_until([](const Server& srv) { return !srv.session(0).open; }));
  EXPECT_THROW(server.drop(3), std::out_of_range);
}

// Onsets for the benchmark: a loud append after a quiet one (or first), and
// the first loud delta of each response; times are g_get_monotonic_time().
TEST(FakeRealtime, TimesSoundOnsetsBothWays) {
  Server server{Behaviour{.reply_ms = 300, .reply_speed = 20.0}};
  Client client;
  open_session(client, server);
  const double before = static_cast<double>(now_us()) / 1e6;
  // Appends: loud (onset), loud, quiet, faint (below 5 %: quiet), loud (onset), quiet.
  client.append(tone(20));
  client.append(tone(20));
  client.append(silence(20));
  client.append(tone(20, 300, 0.04));
  client.append(tone(20));
  client.append(silence(20));
  ASSERT_TRUE(server.wait_until([](const Server& s) { return s.session(0).appends == 6; }));
  server.start_reply(0);
  client.wait_for("response.done");
  server.start_reply(0);
  client.wait_for("response.done", 1);
  const double after = static_cast<double>(now_us()) / 1e6;

  const auto record = server.session(0);
  ASSERT_EQ(record.append_onsets.size(), 2u);
  ASSERT_EQ(record.delta_onsets.size(), 2u);  // one per response, not one per delta
  EXPECT_LE(before, record.append_onsets[0]);
  EXPECT_LT(record.append_onsets[0], record.append_onsets[1]);
  EXPECT_LE(record.append_onsets[1], record.delta_onsets[0]);
  EXPECT_LT(record.delta_onsets[0], record.delta_onsets[1]);
  EXPECT_LE(record.delta_onsets[1], after);

  // Reported by the control API.
  g_autoptr(SoupSession) http = soup_session_new();
  g_autoptr(SoupMessage) msg = soup_message_new("GET", (server.base_url() + "/_test/sessions").c_str());
  g_autoptr(GBytes) reply = soup_session_send_and_read(http, msg, nullptr, nullptr);
  ASSERT_NE(reply, nullptr);
  g_autoptr(JsonParser) parser = json_parser_new();
  gsize length = 0;
  const auto* json = static_cast<const char*>(g_bytes_get_data(reply, &length));
  ASSERT_TRUE(json_parser_load_from_data(parser, json, static_cast<gssize>(length), nullptr));
  JsonObject* s = json_array_get_object_element(json_node_get_array(json_parser_get_root(parser)), 0);
  JsonArray* appends = json_object_get_array_member(s, "append_onsets");
  JsonArray* deltas = json_object_get_array_member(s, "delta_onsets");
  ASSERT_EQ(json_array_get_length(appends), 2u);
  ASSERT_EQ(json_array_get_length(deltas), 2u);
  EXPECT_DOUBLE_EQ(json_array_get_double_element(appends, 1), record.append_onsets[1]);
  EXPECT_DOUBLE_EQ(json_array_get_double_element(deltas, 0), record.delta_onsets[0]);

  // Bounded: only the newest kMaxOnsets are kept.
  const size_t pairs = fake_realtime::SessionSnapshot::kMaxOnsets + 5;
  for (size_t i = 0; i < pairs; ++i) {
    client.append(tone(1));
    client.append(silence(1));
  }
  ASSERT_TRUE(server.wait_until([&](const Server& srv) { return srv.session(0).appends == 6 + 2 * pairs; }));
  const auto bounded = server.session(0);
  ASSERT_EQ(bounded.append_onsets.size(), fake_realtime::SessionSnapshot::kMaxOnsets);
  EXPECT_GT(bounded.append_onsets.front(), record.append_onsets[1]);  // the oldest were dropped
  EXPECT_TRUE(std::is_sorted(bounded.append_onsets.begin(), bounded.append_onsets.end()));
}

TEST(FakeRealtime, ManualTurnsNeedCommitAndResponseCreate) {
  Server server{Behaviour{.reply_ms = 200, .reply_speed = 20.0}};
  Client client;
  ASSERT_TRUE(client.connect_openai(server));
  client.wait_for("session.created");
  client.send(R"({"type":"session.update","session":{"type":"realtime","audio":{"input":{"turn_detection":null}}}})");
  const Event& updated = client.wait_for("session.updated");
  JsonObject* input = json_object_get_object_member(json_object_get_object_member(updated.obj("session"), "audio"), "input");
  EXPECT_TRUE(json_object_get_null_member(input, "turn_detection"));
  client.append(tone(60));
  client.send(R"({"type":"input_audio_buffer.commit"})");
  EXPECT_EQ(member(client.next_error().obj("error"), "code"), "input_audio_buffer_commit_empty");
  client.append(concat(tone(300), silence(600)));
  client.send(R"({"type":"input_audio_buffer.commit"})");
  const Event& committed = client.wait_for("input_audio_buffer.committed");
  EXPECT_FALSE(committed.str("item_id").empty());
  client.pump_until([] { return false; }, 200);
  EXPECT_EQ(client.count("input_audio_buffer.speech_started"), 0u);  // no VAD in manual mode
  EXPECT_EQ(client.count("response.created"), 0u);                   // and no automatic response
  client.send(R"({"type":"response.create"})");
  EXPECT_EQ(response_status(client.wait_for("response.done")), "completed");
}

TEST(FakeRealtime, RejectsNonsenseConfiguration) {
  EXPECT_THROW(Server{Behaviour{.delta_ms = 0}}, std::invalid_argument);
  const Behaviour bad_call{.function_call = FunctionCall{"f", "not json"}};
  EXPECT_THROW(Server{bad_call}, std::invalid_argument);
  const Behaviour bad_in_sequence{.function_calls = {FunctionCall{"f", "{}"}, FunctionCall{"", "{}"}}};
  EXPECT_THROW(Server{bad_in_sequence}, std::invalid_argument);
  const Behaviour both{.function_calls = {FunctionCall{"f", "{}"}}, .function_call = FunctionCall{"g", "{}"}};
  EXPECT_THROW(Server{both}, std::invalid_argument);
  Server server;
  EXPECT_THROW(server.set_behaviour(Behaviour{.reply_speed = 0}), std::invalid_argument);
  EXPECT_EQ(server.behaviour().reply_speed, 4.0);  // unchanged
  EXPECT_THROW(Server(Behaviour{}, server.port()), std::runtime_error);  // port taken
}

TEST(FakeRealtime, StandaloneProgramPrintsItsUrlAndStopsOnSigterm) {
  const char* build_root = getenv("VOICEBRIDGE_BUILD_ROOT");
  ASSERT_NE(build_root, nullptr) << "run through meson test";
  const std::string program = std::string(build_root) + "/tests/doubles/fake-realtime";
  const char* argv[] = {program.c_str(), "--reply-ms", "300", "--function-call", "lookup:{\"q\":1}",
                        "--function-call", "list_tasks:{}", nullptr};
  GPid pid = 0;
  gint out_fd = -1;
  ASSERT_TRUE(g_spawn_async_with_pipes(nullptr, const_cast<char**>(argv), nullptr, G_SPAWN_DO_NOT_REAP_CHILD, nullptr,
                                       nullptr, &pid, nullptr, &out_fd, nullptr, nullptr));
  FILE* out = fdopen(out_fd, "r");
  char line[256] = {};
  ASSERT_NE(fgets(line, sizeof line, out), nullptr);
  unsigned port = 0;
  char rest[8] = {};
  EXPECT_EQ(sscanf(line, "ws://127.0.0.1:%u/v1/realtime%7s", &port, rest), 1) << line;
  EXPECT_GT(port, 0u);

  {
    Client client;
    ASSERT_TRUE(client.connect("ws://127.0.0.1:" + std::to_string(port) + "/v1/realtime?model=m",
                               {{"Authorization", "Bearer k"}}));
    client.wait_for("session.created");
    client.send(R"({"type":"response.create"})");
    EXPECT_EQ(client.wait_for("response.function_call_arguments.done").str("name"), "lookup");
    client.wait_for("response.done");
    client.send(R"({"type":"response.create"})");  // the next turn: the second --function-call
    EXPECT_EQ(client.wait_for("response.function_call_arguments.done", 1).str("name"), "list_tasks");
  }
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(fgets(line, sizeof line, out), nullptr) << "exactly one line on stdout";
  fclose(out);
  g_spawn_close_pid(pid);

  // Bad arguments: a clear message and exit code 2.
  const char* bad[] = {program.c_str(), "--speed", "fast", nullptr};
  gint exit_status = 0;
  g_autofree char* err = nullptr;
  ASSERT_TRUE(g_spawn_sync(nullptr, const_cast<char**>(bad), nullptr, G_SPAWN_STDOUT_TO_DEV_NULL, nullptr, nullptr,
                           nullptr, &err, &exit_status, nullptr));
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 2);
  EXPECT_NE(std::string(err).find("--speed"), std::string::npos);
}

}  // namespace
