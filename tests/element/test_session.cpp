// openairealtime against the fake Realtime server: connection, session.update,
// input, errors, function calls, reconnection, rotation and lifecycle.
#include <arpa/inet.h>
#include <dirent.h>
#include <json-glib/json-glib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include "element_fixture.h"

using namespace element_test;

namespace {

struct JsonDoc {
  explicit JsonDoc(const std::string& text) : parser(json_parser_new()) {
    g_autoptr(GError) error = nullptr;
    loaded = json_parser_load_from_data(parser, text.c_str(), -1, &error);
  }
  ~JsonDoc() { g_object_unref(parser); }
  JsonObject* root() const { return json_node_get_object(json_parser_get_root(parser)); }
  JsonParser* parser;
  bool loaded;
};

// Follows a dotted path of object members.
JsonNode* path(JsonObject* object, const std::string& dotted) {
  JsonNode* node = nullptr;
  size_t start = 0;
  while (object) {
    const size_t dot = dotted.find('.', start);
    const std::string name = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    node = json_object_get_member(object, name.c_str());
    if (dot == std::string::npos || !node) return node;
    object = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : nullptr;
    start = dot + 1;
  }
  return nullptr;
}

std::string str(JsonObject* object, const std::string& dotted) {
  JsonNode* node = path(object, dotted);
  return node && JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING
             ? json_node_get_string(node)
             : "<missing>";
}

// Threads of this process, or those named exactly `name`.
int thread_count(const char* name) {
  int count = 0;
  DIR* tasks = opendir("/proc/self/task");
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
    std::string comm_name;
    std::getline(comm, comm_name);
    if (!name || comm_name == name) ++count;
  }
  closedir(tasks);
  return count;
}

// A WebSocket server that completes the handshake, makes the session ready
// and then never reads again: the element's socket backs up.
class StalledServer {
 public:
  StalledServer() : listener_(socket(AF_INET, SOCK_STREAM, 0)) {
    const int small = 4096;  // a small window fills fast
    setsockopt(listener_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(listener_, 1);
    socklen_t length = sizeof address;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~StalledServer() {
    shutdown(listener_, SHUT_RDWR);  // unblocks accept()
    thread_.join();
    if (client_ >= 0) close(client_);
    close(listener_);
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/realtime"; }

 private:
  void serve() {
    client_ = accept(listener_, nullptr, nullptr);
    if (client_ < 0) return;
    std::string request;
    char buffer[1024];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t got = read(client_, buffer, sizeof buffer);
      if (got <= 0) return;
      request.append(buffer, static_cast<size_t>(got));
    }
    const std::string header = "Sec-WebSocket-Key: ";
    const size_t at = request.find(header);
    if (at == std::string::npos) return;
    const std::string key = request.substr(at + header.size(), request.find("\r\n", at) - at - header.size());
    const std::string accept_text = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    guint8 digest[20];
    gsize digest_length = sizeof digest;
    GChecksum* sha1 = g_checksum_new(G_CHECKSUM_SHA1);
    g_checksum_update(sha1, reinterpret_cast<const guchar*>(accept_text.data()), accept_text.size());
    g_checksum_get_digest(sha1, digest, &digest_length);
    g_checksum_free(sha1);
    g_autofree gchar* accept_key = g_base64_encode(digest, digest_length);
    write_all("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " + std::string(accept_key) + "\r\n\r\n");
    write_frame(R"({"type":"session.created","session":{"id":"sess_stalled"}})");
    write_frame(R"({"type":"session.updated","session":{"id":"sess_stalled"}})");
  }
  void write_frame(const std::string& text) {
    std::string frame = {static_cast<char>(0x81), static_cast<char>(text.size())};  // short text frames only
    write_all(frame + text);
  }
  void write_all(const std::string& data) {
    for (size_t sent = 0; sent < data.size();) {
      const ssize_t wrote = write(client_, data.data() + sent, data.size() - sent);
      if (wrote <= 0) return;
      sent += static_cast<size_t>(wrote);
    }
  }

  int listener_;
  int client_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

size_t count_type(const fake_realtime::SessionSnapshot& snapshot, const std::string& type) {
  return std::count(snapshot.event_types.begin(), snapshot.event_types.end(), type);
}

// Collects the openairealtime log lines (INFO and above) while it exists.
class LogCapture {
 public:
  LogCapture() {
    gst_debug_set_active(TRUE);
    gst_debug_set_threshold_for_name("openairealtime", GST_LEVEL_INFO);
    gst_debug_add_log_function(&LogCapture::log, this, nullptr);
  }
  ~LogCapture() {
    gst_debug_remove_log_function_by_data(this);
    gst_debug_unset_threshold_for_name("openairealtime");
  }
  bool contains(const std::string& text) {
    std::lock_guard lock(mutex_);
    return std::any_of(lines_.begin(), lines_.end(), [&](const std::string& line) { return line.find(text) != std::string::npos; });
  }

 private:
  static void log(GstDebugCategory* category, GstDebugLevel, const gchar*, const gchar*, gint, GObject*,
                  GstDebugMessage* message, gpointer self) {
    if (g_strcmp0(gst_debug_category_get_name(category), "openairealtime") != 0) return;
    auto* capture = static_cast<LogCapture*>(self);
    std::lock_guard lock(capture->mutex_);
    capture->lines_.emplace_back(gst_debug_message_get(message));
  }
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

using Configure = std::function<void(GstElement*)>;

class SessionTest : public ::testing::Test {
 protected:
  // The element on the fake server, once its session is ready.
  static std::unique_ptr<ElementHarness> start(fake_realtime::Server& server, const Configure& configure = nullptr) {
    auto harness = std::make_unique<ElementHarness>([&](GstElement* element) {
      g_object_set(element, "url", server.url().c_str(), "api-key", "sk-test", nullptr);
      if (configure) configure(element);
    });
    EXPECT_TRUE(harness->wait_session_state("ready")) << "the session never became ready";
    return harness;
  }
};

TEST_F(SessionTest, SessionUpdateHasTheGaShape) {
  fake_realtime::Server server;
  const char* tools = R"([{"type":"function","name":"get_weather","description":"Weather for a city",)"
                      R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}])";
  auto harness = start(server, [&](GstElement* element) {
    g_object_set(element, "voice", "cedar", "instructions", "Be brief.", "tools", tools, "vad-threshold", 0.7,
                 "vad-silence-duration-ms", 350u, "vad-prefix-padding-ms", 200u, "input-transcription-model",
                 "gpt-4o-mini-transcribe", "input-transcription-language", "de", "noise-reduction", 2, nullptr);
  });

  const fake_realtime::SessionSnapshot session = server.session(0);
  EXPECT_EQ(session.path, "/v1/realtime");
  EXPECT_EQ(session.query, "model=gpt-realtime");
  EXPECT_EQ(session.authorization, "Bearer sk-test");
  EXPECT_FALSE(session.beta_header);
  ASSERT_FALSE(session.last_session_update.empty());
  EXPECT_EQ(session.last_session_update.find("null"), std::string::npos) << session.last_session_update;

  JsonDoc update(session.last_session_update);
  ASSERT_TRUE(update.loaded);
  JsonObject* root = update.root();
  EXPECT_EQ(str(root, "type"), "session.update");
  EXPECT_EQ(str(root, "session.type"), "realtime");
  EXPECT_EQ(str(root, "session.model"), "gpt-realtime");
  EXPECT_EQ(str(root, "session.instructions"), "Be brief.");
  EXPECT_EQ(str(root, "session.audio.input.format.type"), "audio/pcm");
  EXPECT_EQ(json_node_get_int(path(root, "session.audio.input.format.rate")), 24000);
  EXPECT_EQ(str(root, "session.audio.output.format.type"), "audio/pcm");
  EXPECT_EQ(json_node_get_int(path(root, "session.audio.output.format.rate")), 24000);
  EXPECT_EQ(str(root, "session.audio.output.voice"), "cedar");
  EXPECT_EQ(str(root, "session.audio.input.turn_detection.type"), "server_vad");
  EXPECT_DOUBLE_EQ(json_node_get_double(path(root, "session.audio.input.turn_detection.threshold")), 0.7);
  EXPECT_EQ(json_node_get_int(path(root, "session.audio.input.turn_detection.silence_duration_ms")), 350);
  EXPECT_EQ(json_node_get_int(path(root, "session.audio.input.turn_detection.prefix_padding_ms")), 200);
  EXPECT_EQ(path(root, "session.audio.input.turn_detection.idle_timeout_ms"), nullptr);
  EXPECT_EQ(str(root, "session.audio.input.transcription.model"), "gpt-4o-mini-transcribe");
  EXPECT_EQ(str(root, "session.audio.input.transcription.language"), "de");
  EXPECT_EQ(str(root, "session.audio.input.noise_reduction.type"), "far_field");
  EXPECT_EQ(path(root, "session.voice"), nullptr) << "beta-era flat field";
  JsonNode* tool_list = path(root, "session.tools");
  ASSERT_TRUE(tool_list && JSON_NODE_HOLDS_ARRAY(tool_list));
  JsonObject* tool = json_array_get_object_element(json_node_get_array(tool_list), 0);
  EXPECT_EQ(str(tool, "type"), "function");
  EXPECT_EQ(str(tool, "name"), "get_weather");
  EXPECT_EQ(str(tool, "parameters.properties.city.type"), "string");
}

TEST_F(SessionTest, SemanticVadAndDefaults) {
  fake_realtime::Server server;
  auto harness = start(server, [](GstElement* element) {
    g_object_set(element, "turn-detection", 1, "vad-eagerness", 2, nullptr);
  });
  JsonDoc update(server.session(0).last_session_update);
  ASSERT_TRUE(update.loaded);
  JsonObject* root = update.root();
  EXPECT_EQ(str(root, "session.audio.input.turn_detection.type"), "semantic_vad");
  EXPECT_EQ(str(root, "session.audio.input.turn_detection.eagerness"), "high");
  EXPECT_EQ(path(root, "session.audio.input.turn_detection.threshold"), nullptr);
  EXPECT_EQ(str(root, "session.audio.output.voice"), "marin");
  EXPECT_EQ(path(root, "session.instructions"), nullptr);
  EXPECT_EQ(path(root, "session.tools"), nullptr);
  EXPECT_EQ(path(root, "session.audio.input.transcription"), nullptr);
  EXPECT_EQ(path(root, "session.audio.input.noise_reduction"), nullptr);
}

TEST_F(SessionTest, InvalidToolsAreRejected) {
  GstElement* element = gst_element_factory_make("openairealtime", nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(element, bus);
  const char* valid = R"([{"type":"function","name":"ok"}])";
  g_object_set(element, "tools", valid, nullptr);
  g_object_set(element, "tools", R"([{"type":"function","function":{"name":"x"}}])", nullptr);
  g_object_set(element, "tools", "{not json", nullptr);
  g_autofree gchar* tools = nullptr;
  g_object_get(element, "tools", &tools, nullptr);
  EXPECT_STREQ(tools, valid);
  GstMessage* warning = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING);
  EXPECT_TRUE(warning);
  if (warning) gst_message_unref(warning);
  gst_bus_set_flushing(bus, TRUE);  // queued messages hold the element
  gst_object_unref(bus);
  gst_object_unref(element);
}

TEST_F(SessionTest, AzureUrlAndApiKeyHeader) {
  fake_realtime::Server server;
  ElementHarness harness([&](GstElement* element) {
    g_object_set(element, "azure", TRUE, "url", (server.base_url() + "/").c_str(), "api-key", "az-key", "model",
                 "my-deployment", nullptr);
  });
  ASSERT_TRUE(harness.wait_session_state("ready"));
  const fake_realtime::SessionSnapshot session = server.session(0);
  EXPECT_EQ(session.path, "/openai/v1/realtime");
  EXPECT_EQ(session.query, "model=my-deployment");
  EXPECT_EQ(session.api_key, "az-key");
  EXPECT_EQ(session.authorization, "");
}

TEST_F(SessionTest, InputAudioReachesTheServerIntact) {
  fake_realtime::Server server;
  auto harness = start(server, [](GstElement* element) { g_object_set(element, "input-chunk-ms", 40u, nullptr); });
  std::vector<int16_t> input(kRate * 3 / 2 + 123);  // 1.5 s and a partial chunk
  guint32 state = 12345;
  for (int16_t& sample : input) {
    state = state * 1103515245 + 12345;
    sample = static_cast<int16_t>((state >> 16) % 400) - 200;  // quiet noise: no VAD turn
  }
  harness->push(input, 100);
  gst_harness_push_event(harness->harness(), gst_event_new_eos());
  ASSERT_TRUE(server.wait_until([&](const fake_realtime::Server& s) {
    return s.session(0).input_audio.size() >= input.size();
  }));
  const fake_realtime::SessionSnapshot session = server.session(0);
  EXPECT_EQ(session.input_audio, input);
  EXPECT_EQ(session.appends, input.size() / (2 * kFrameSamples) + 1) << "40 ms appends plus the final partial one";
  EXPECT_EQ(harness->stat("dropped-input-ms"), 0u);
}

TEST_F(SessionTest, AudioBeforeTheSessionIsReadyIsQueuedAndBounded) {
  // A listener that accepts TCP but never answers the WebSocket handshake: the
  // session cannot take audio, so the element must queue, bound and count.
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t length = sizeof address;
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string url = "ws://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/v1/realtime";
  {
    LogCapture logs;
    ElementHarness harness([&](GstElement* element) {
      g_object_set(element, "url", url.c_str(), "max-input-queue-ms", 500u, "connect-timeout-ms", 60000u, nullptr);
    });
    harness.push(silence(3000));
    EXPECT_EQ(harness.stat("dropped-input-ms"), 2500u);
    EXPECT_EQ(harness.stat("sent-input-ms"), 0u);
    EXPECT_TRUE(logs.contains("dropped"));
  }
  close(listener);
}

TEST_F(SessionTest, SlowSocketKeepsTheInputQueueBounded) {
  StalledServer server;
  LogCapture logs;
  ElementHarness harness([&](GstElement* element) {
    g_object_set(element, "url", server.url().c_str(), "max-input-queue-ms", 1000u, nullptr);
  });
  ASSERT_TRUE(harness.wait_session_state("ready"));
  // The kernel's send buffer takes up to tcp_wmem max (4 MiB on Debian, about
  // 65 s of base64 audio) before the socket stops being writable; beyond that
  // only the element's bounded queue may hold audio.
  const int pushed_ms = 150000;
  for (int ms = 0; ms < pushed_ms; ms += 1000) {
    harness.push(tone(1000, 300, 0.3));
    g_usleep(10000);  // lets the network thread drain: without backpressure it would send everything
  }
  const guint64 sent = harness.stat("sent-input-ms");
  const guint64 dropped = harness.stat("dropped-input-ms");
  EXPECT_LT(sent, 90000u) << "audio is held back once the socket stops taking it";
  EXPECT_GT(dropped, 55000u) << "and the bounded queue drops the oldest";
  EXPECT_LE(sent + dropped, static_cast<guint64>(pushed_ms));
  EXPECT_GE(sent + dropped + 1000, static_cast<guint64>(pushed_ms)) << "at most the queue bound is still waiting";
  EXPECT_TRUE(logs.contains("dropped"));
}

TEST_F(SessionTest, AuthFailureIsFatal) {
  fake_realtime::Behaviour behaviour;
  behaviour.required_api_key = "the-right-key";
  fake_realtime::Server server(behaviour);
  ElementHarness harness([&](GstElement* element) {
    g_object_set(element, "url", server.url().c_str(), "api-key", "wrong", nullptr);
  });
  MessagePtr error = harness.wait_message_type(GST_MESSAGE_ERROR);
  ASSERT_TRUE(error);
  const GstStructure* details = nullptr;
  gst_message_parse_error_details(error.get(), &details);
  ASSERT_TRUE(details);
  EXPECT_TRUE(gst_structure_has_name(details, "openairealtime-error"));
  EXPECT_STREQ(gst_structure_get_string(details, "type"), "authentication_error");
  EXPECT_STREQ(gst_structure_get_string(details, "code"), "http_401");
  EXPECT_TRUE(harness.wait_session_state("closed"));
}

TEST_F(SessionTest, UnreachableServerFailsAfterConnectTimeout) {
  int probe = socket(AF_INET, SOCK_STREAM, 0);  // find a free port, then close it
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length);
  close(probe);
  const std::string url = "ws://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/v1/realtime";
  ElementHarness harness([&](GstElement* element) {
    g_object_set(element, "url", url.c_str(), "connect-timeout-ms", 1500u, nullptr);
  });
  MessagePtr error = harness.wait_message_type(GST_MESSAGE_ERROR);
  ASSERT_TRUE(error);
  const GstStructure* details = nullptr;
  gst_message_parse_error_details(error.get(), &details);
  ASSERT_TRUE(details);
  EXPECT_STREQ(gst_structure_get_string(details, "code"), "connect_timeout");
  EXPECT_TRUE(harness.wait_session_state("connecting"));
  EXPECT_TRUE(harness.wait_element_message("openairealtime-session", [](const GstStructure* s) {
    guint attempt = 0;
    return gst_structure_get_uint(s, "attempt", &attempt) && attempt >= 2;
  })) << "retries with backoff within the timeout";
}

TEST_F(SessionTest, ServerErrorBecomesAWarningWithDetails) {
  fake_realtime::Server server;
  auto harness = start(server);
  server.send_error(0, "invalid_request_error", "invalid_value", "Something was wrong.");
  MessagePtr warning = harness->wait_message_type(GST_MESSAGE_WARNING);
  ASSERT_TRUE(warning);
  const GstStructure* details = nullptr;
  gst_message_parse_warning_details(warning.get(), &details);
  ASSERT_TRUE(details);
  EXPECT_TRUE(gst_structure_has_name(details, "openairealtime-error"));
  EXPECT_STREQ(gst_structure_get_string(details, "type"), "invalid_request_error");
  EXPECT_STREQ(gst_structure_get_string(details, "code"), "invalid_value");
  EXPECT_STREQ(gst_structure_get_string(details, "message"), "Something was wrong.");
  // Benign codes are not reported.
  server.send_error(0, "invalid_request_error", "response_cancel_not_active", "nothing to cancel");
  server.send_error(0, "invalid_request_error", "other_code", "marker");
  MessagePtr next = harness->wait_message(
      [&](GstMessage* m) { return GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING && m != warning.get(); }, 10000);
  ASSERT_TRUE(next);
  gst_message_parse_warning_details(next.get(), &details);
  EXPECT_STREQ(gst_structure_get_string(details, "code"), "other_code");
}

TEST_F(SessionTest, MalformedServerEventsAreLoggedAndIgnored) {
  LogCapture logs;
  fake_realtime::Server server;
  auto harness = start(server);
  server.send_raw(0, "{this is not json");
  server.send_raw(0, R"({"no_type":true})");
  server.send_raw(0, R"(["an","array"])");
  server.send_raw(0, R"({"type":"response.output_audio.delta","delta":42})");
  server.start_reply(0);
  ASSERT_TRUE(ElementHarness::eventually([&] { return harness->stat("received-ms") >= 1000; }));
  EXPECT_TRUE(logs.contains("malformed server event"));
  EXPECT_TRUE(logs.contains("without a type"));
  EXPECT_FALSE(harness->wait_message_type(GST_MESSAGE_ERROR, 100));
  EXPECT_TRUE(server.session(0).open);
}

TEST_F(SessionTest, FunctionCallRoundTrip) {
  fake_realtime::Behaviour behaviour;
  behaviour.function_call = fake_realtime::FunctionCall{"get_weather", R"({"city":"Paris"})"};
  fake_realtime::Server server(behaviour);
  struct Call {
    std::mutex mutex;
    std::string call_id, name, arguments;
    GThread* thread = nullptr;
  } call;
  auto connect_handler = [&call](GstElement* element) {
  g_signal_connect(element, "function-call",
                   G_CALLBACK(+[](GstElement*, const gchar* call_id, const gchar* name, const gchar* arguments,
                                  Call* call) {
                     std::lock_guard lock(call->mutex);
                     call->call_id = call_id;
                     call->name = name;
                     call->arguments = arguments;
                     call->thread = g_thread_self();
                   }),
                   &call);
  };
  auto harness = start(server, connect_handler);
  harness->push(caller_turn());
  ASSERT_TRUE(ElementHarness::eventually([&] {
    std::lock_guard lock(call.mutex);
    return !call.call_id.empty();
  }));
  EXPECT_EQ(call.name, "get_weather");
  EXPECT_EQ(call.arguments, R"({"city":"Paris"})");
  EXPECT_NE(call.thread, g_thread_self());

  gboolean accepted = FALSE;
  g_signal_emit_by_name(harness->element(), "function-result", "no-such-call", "{}", &accepted);
  EXPECT_FALSE(accepted);
  g_signal_emit_by_name(harness->element(), "function-result", call.call_id.c_str(), "not json", &accepted);
  EXPECT_FALSE(accepted);
  g_signal_emit_by_name(harness->element(), "function-result", call.call_id.c_str(), R"({"temperature_c":21})",
                        &accepted);
  EXPECT_TRUE(accepted);

  ASSERT_TRUE(ElementHarness::eventually([&] { return harness->stat("received-ms") >= 1000; }))
      << "the model spoke the result";
  const fake_realtime::SessionSnapshot session = server.session(0);
  ASSERT_EQ(session.function_outputs.size(), 1u);
  EXPECT_EQ(session.function_outputs[0], R"({"temperature_c":21})");
  EXPECT_EQ(session.responses_started, 2);
  const auto output_at = std::find(session.event_types.begin(), session.event_types.end(), "conversation.item.create");
  ASSERT_NE(output_at, session.event_types.end());
  EXPECT_NE(std::find(output_at, session.event_types.end(), "response.create"), session.event_types.end());
  EXPECT_EQ(std::count(session.errors_sent.begin(), session.errors_sent.end(),
                       "conversation_already_has_active_response"),
            0);
}

TEST_F(SessionTest, CreateResponseIsQueuedWhileAResponseIsActive) {
  fake_realtime::Server server;
  gboolean accepted = FALSE;
  GstElement* idle = gst_element_factory_make("openairealtime", nullptr);
  g_signal_emit_by_name(idle, "create-response", "Greet the caller.", &accepted);
  EXPECT_FALSE(accepted) << "not running yet";
  gst_object_unref(idle);
  auto harness = start(server);
  g_signal_emit_by_name(harness->element(), "create-response", "Greet the caller.", &accepted);
  EXPECT_TRUE(accepted);
  g_signal_emit_by_name(harness->element(), "create-response", nullptr, &accepted);
  EXPECT_TRUE(accepted);
  ASSERT_TRUE(server.wait_until([](const fake_realtime::Server& s) { return s.session(0).responses_started == 2; }));
  const fake_realtime::SessionSnapshot session = server.session(0);
  EXPECT_EQ(count_type(session, "response.create"), 2u);
  EXPECT_TRUE(session.errors_sent.empty());
  auto first = std::find_if(session.events.begin(), session.events.end(), [](const std::string& e) {
    return e.find("\"response.create\"") != std::string::npos;
  });
  ASSERT_NE(first, session.events.end());
  EXPECT_NE(first->find("Greet the caller."), std::string::npos);
  ASSERT_TRUE(harness->wait_element_message("openairealtime-usage", [](const GstStructure* s) {
    gint total = -1;
    return gst_structure_get_int(s, "total-tokens", &total) && gst_structure_get_string(s, "response-id") &&
           g_strcmp0(gst_structure_get_string(s, "status"), "completed") == 0;
  }));
}

TEST_F(SessionTest, ReconnectsAfterADropAndReplaysHistory) {
  fake_realtime::Server server;
  auto harness = start(server, [](GstElement* element) {
    g_object_set(element, "input-transcription-model", "gpt-4o-mini-transcribe", nullptr);
  });
  harness->push(caller_turn());
  ASSERT_TRUE(harness->wait_element_message("openairealtime-transcript", [](const GstStructure* s) {
    return g_strcmp0(gst_structure_get_string(s, "role"), "assistant") == 0;
  }));
  server.drop(0);
  ASSERT_TRUE(harness->wait_element_message("openairealtime-session", [](const GstStructure* s) {
    guint attempt = 0;
    return g_strcmp0(gst_structure_get_string(s, "state"), "reconnecting") == 0 &&
           gst_structure_get_uint(s, "attempt", &attempt) && attempt == 1;
  }));
  ASSERT_TRUE(server.wait_until([](const fake_realtime::Server& s) {
    return s.session_count() == 2 && !s.session(1).created_items.empty();
  }));
  const fake_realtime::SessionSnapshot first = server.session(0);
  const fake_realtime::SessionSnapshot second = server.session(1);
  EXPECT_EQ(second.last_session_update, first.last_session_update);
  const std::string transcript = server.behaviour().reply_transcript;
  const bool replayed = std::any_of(second.created_items.begin(), second.created_items.end(), [&](const std::string& item) {
    return item.find("\"output_text\"") != std::string::npos && item.find(transcript) != std::string::npos &&
           item.find("\"assistant\"") != std::string::npos;
  });
  EXPECT_TRUE(replayed) << "assistant transcript replayed as an output_text message";
  EXPECT_GE(harness->stat("reconnects"), 1u);
  // Audio flows on the new connection.
  const int64_t before = server.session(1).input_samples;
  harness->push(silence(400));
  EXPECT_TRUE(server.wait_until([&](const fake_realtime::Server& s) { return s.session(1).input_samples > before; }));
}

TEST_F(SessionTest, GivesUpWhenReconnectAttemptsAreExhausted) {
  auto server = std::make_unique<fake_realtime::Server>();
  auto harness = start(*server, [](GstElement* element) {
    g_object_set(element, "reconnect-max-attempts", 2u, nullptr);
  });
  server.reset();  // the server goes away for good
  MessagePtr error = harness->wait_message_type(GST_MESSAGE_ERROR);
  ASSERT_TRUE(error);
  const GstStructure* details = nullptr;
  gst_message_parse_error_details(error.get(), &details);
  ASSERT_TRUE(details);
  EXPECT_STREQ(gst_structure_get_string(details, "code"), "reconnect_exhausted");
  EXPECT_TRUE(harness->wait_element_message("openairealtime-session", [](const GstStructure* s) {
    guint attempt = 0;
    return g_strcmp0(gst_structure_get_string(s, "state"), "reconnecting") == 0 &&
           gst_structure_get_uint(s, "attempt", &attempt) && attempt == 2;
  }));
  EXPECT_TRUE(harness->wait_session_state("closed"));
  // The output keeps running (silence) so downstream RTP never stops.
  EXPECT_TRUE(gst_harness_crank_single_clock_wait(harness->harness()));
  GstBuffer* frame = gst_harness_pull(harness->harness());
  ASSERT_TRUE(frame);
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(frame, GST_BUFFER_FLAG_GAP));
  gst_buffer_unref(frame);
}

TEST_F(SessionTest, SessionExpiredReconnects) {
  fake_realtime::Server server;
  auto harness = start(server);
  server.send_error(0, "invalid_request_error", "session_expired", "Your session hit the maximum duration of 60 minutes.");
  ASSERT_TRUE(server.wait_until([](const fake_realtime::Server& s) { return s.session_count() == 2; }));
  EXPECT_TRUE(harness->wait_message_type(GST_MESSAGE_ERROR, 200) == nullptr);
}

TEST_F(SessionTest, RotatesBeforeSessionMaxDuration) {
  fake_realtime::Server server;
  auto harness = start(server, [](GstElement* element) {
    g_object_set(element, "session-max-duration", 1u, nullptr);
  });
  ASSERT_TRUE(server.wait_until([](const fake_realtime::Server& s) {
    return s.session_count() >= 2 && !s.session(1).last_session_update.empty();
  }));
  EXPECT_EQ(server.session(1).last_session_update, server.session(0).last_session_update);
  EXPECT_TRUE(harness->wait_element_message("openairealtime-session", [](const GstStructure* s) {
    guint attempt = 0;
    return g_strcmp0(gst_structure_get_string(s, "state"), "ready") == 0 && gst_structure_get_uint(s, "attempt", &attempt) &&
           gst_structure_get_string(s, "session-id") != nullptr;
  }));
}

TEST_F(SessionTest, ManyInstancesLeaveNoThreadOrObjectBehind) {
  fake_realtime::Server server;
  int baseline = 0;
  for (int round = 0; round < 6; ++round) {
    std::vector<GstElement*> weak(3, nullptr);
    {
      std::vector<std::unique_ptr<ElementHarness>> harnesses;
      for (GstElement*& element : weak) {
        harnesses.push_back(start(server));
        element = harnesses.back()->element();
        g_object_add_weak_pointer(G_OBJECT(element), reinterpret_cast<gpointer*>(&element));
      }
      EXPECT_EQ(thread_count("openairealtime"), 1) << "one network thread shared by all instances";
    }
    for (GstElement* element : weak) EXPECT_EQ(element, nullptr) << "element finalized";
    EXPECT_EQ(thread_count("openairealtime"), 0) << "network thread stopped with the last instance";
    if (round == 0) baseline = thread_count(nullptr);
  }
  // Pooled threads (GLib, GstTaskPool) finish their work and park (at most 2
  // idle); a thread kept per instance would add 18 here.
  EXPECT_TRUE(ElementHarness::eventually([&] { return thread_count(nullptr) <= baseline + 2; }, 5000))
      << thread_count(nullptr) << " threads, " << baseline << " after the first round";
  EXPECT_TRUE(server.wait_until([](const fake_realtime::Server& s) {
    for (size_t i = 0; i < s.session_count(); ++i)
      if (s.session(i).open) return false;
    return true;
  })) << "every WebSocket closed";
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new GstEnvironment);
  return RUN_ALL_TESTS();
}
