#include <gtest/gtest.h>

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "main_loop.h"
#include "whatsapp/graph_api.h"

namespace vb {
namespace {

constexpr const char* kToken = "EAAG-test-token";
constexpr const char* kAnswer = "v=0\r\no=- 42 2 IN IP4 198.51.100.7\r\ns=-\r\nt=0 0\r\na=setup:active\r\n";

struct ReceivedRequest {
  std::string method, path, authorization, content_type, body;
};

struct ScriptedResponse {
  guint status;
  std::string body;
};

// An in-process stand-in for graph.facebook.com: records requests, answers from a script.
class FakeGraph {
 public:
  FakeGraph() : server_(soup_server_new(nullptr, nullptr)) {
    soup_server_add_handler(server_, nullptr, &FakeGraph::on_request, this, nullptr);
    g_autoptr(GSocketAddress) address = g_inet_socket_address_new_from_string("127.0.0.1", 0);
    g_autoptr(GError) error = nullptr;
    EXPECT_TRUE(soup_server_listen(server_, address, static_cast<SoupServerListenOptions>(0), &error));
    GSList* uris = soup_server_get_uris(server_);
    port_ = g_uri_get_port(static_cast<GUri*>(uris->data));
    g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
  }
  ~FakeGraph() {
    for (SoupServerMessage* held : held_) soup_server_message_unpause(held);
    soup_server_disconnect(server_);
    g_object_unref(server_);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v23.0"; }
  void respond(guint status, std::string body) { script_.push_back({status, std::move(body)}); }
  void hold_requests() { hold_ = true; }  // never answer: a request stays in flight
  const std::vector<ReceivedRequest>& requests() const { return requests_; }

 private:
  static void on_request(SoupServer*, SoupServerMessage* message, const char* path, GHashTable*, gpointer data) {
    auto* self = static_cast<FakeGraph*>(data);
    SoupMessageHeaders* headers = soup_server_message_get_request_headers(message);
    g_autoptr(GBytes) body = soup_message_body_flatten(soup_server_message_get_request_body(message));
    gsize size = 0;
    const char* bytes = static_cast<const char*>(g_bytes_get_data(body, &size));
    const char* authorization = soup_message_headers_get_one(headers, "Authorization");
    const char* content_type = soup_message_headers_get_content_type(headers, nullptr);
    self->requests_.push_back({soup_server_message_get_method(message), path, authorization ? authorization : "",
                               content_type ? content_type : "", std::string(bytes ? bytes : "", size)});
    if (self->hold_) {
      soup_server_message_pause(message);
      self->held_.push_back(message);
      return;
    }
    ScriptedResponse response{200, R"({"messaging_product":"whatsapp","success":true})"};
    if (!self->script_.empty()) {
      response = self->script_.front();
      self->script_.pop_front();
    }
    soup_server_message_set_status(message, response.status, nullptr);
    soup_server_message_set_response(message, "application/json", SOUP_MEMORY_COPY, response.body.data(),
                                     response.body.size());
  }

  SoupServer* server_;
  int port_ = 0;
  bool hold_ = false;
  std::deque<ScriptedResponse> script_;
  std::vector<ReceivedRequest> requests_;
  std::vector<SoupServerMessage*> held_;
};

// Parses a JSON object body; null on failure.
JsonObject* parse_object(JsonParser* parser, const std::string& body) {
  if (!json_parser_load_from_data(parser, body.data(), static_cast<gssize>(body.size()), nullptr)) return nullptr;
  JsonNode* root = json_parser_get_root(parser);
  return JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
}

class GraphApiTest : public ::testing::Test {
 protected:
  GraphApiTest() : api_(std::make_unique<GraphApi>(fake_.url(), "PNID", kToken)) {
    api_->set_retry_policy({3, {1, 1}});  // keep retries quick; the policy itself is what is under test
  }
  void TearDown() override { test::drain_main_context(); }

  // Runs one action to completion.
  GraphResult run(const std::function<void(GraphCallback)>& action) {
    std::optional<GraphResult> result;
    int calls = 0;
    action([&](const GraphResult& r) {
      result = r;
      ++calls;
    });
    test::run_until([&] { return result.has_value(); });
    test::drain_main_context();
    EXPECT_EQ(calls, 1);
    return result.value_or(GraphResult{});
  }

  FakeGraph fake_;
  std::unique_ptr<GraphApi> api_;
};

TEST_F(GraphApiTest, PreAcceptRequestIsExactlyWhatMetaExpects) {
  auto result = run([&](GraphCallback done) { api_->pre_accept("wacid.ABC", kAnswer, done); });
  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(result.attempts, 1);
  ASSERT_EQ(fake_.requests().size(), 1u);
  const auto& request = fake_.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/v23.0/PNID/calls");
  EXPECT_EQ(request.authorization, std::string("Bearer ") + kToken);
  EXPECT_EQ(request.content_type, "application/json");
  // The SDP travels as a plain JSON string: CRLF escaped once, never double-encoded.
  EXPECT_NE(request.body.find(R"(v=0\r\no=- 42)"), std::string::npos) << request.body;
  EXPECT_EQ(request.body.find(R"(\\r\\n)"), std::string::npos) << request.body;

  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject* body = parse_object(parser, request.body);
  ASSERT_TRUE(body);
  EXPECT_EQ(json_object_get_size(body), 4u);
  EXPECT_STREQ(json_object_get_string_member(body, "messaging_product"), "whatsapp");
  EXPECT_STREQ(json_object_get_string_member(body, "call_id"), "wacid.ABC");
  EXPECT_STREQ(json_object_get_string_member(body, "action"), "pre_accept");
  JsonObject* session = json_object_get_object_member(body, "session");
  ASSERT_TRUE(session);
  EXPECT_STREQ(json_object_get_string_member(session, "sdp_type"), "answer");
  EXPECT_STREQ(json_object_get_string_member(session, "sdp"), kAnswer);
}

TEST_F(GraphApiTest, AcceptRejectTerminateBodies) {
  run([&](GraphCallback done) { api_->accept("wacid.1", kAnswer, done); });
  run([&](GraphCallback done) { api_->reject("wacid.2", done); });
  EXPECT_TRUE(run([&](GraphCallback done) { api_->terminate("wacid.3", done); }).ok);
  ASSERT_EQ(fake_.requests().size(), 3u);
  const char* actions[] = {"accept", "reject", "terminate"};
  for (size_t i = 0; i < 3; ++i) {
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject* body = parse_object(parser, fake_.requests()[i].body);
    ASSERT_TRUE(body);
    EXPECT_STREQ(json_object_get_string_member(body, "action"), actions[i]);
    EXPECT_STREQ(json_object_get_string_member(body, "call_id"), ("wacid." + std::to_string(i + 1)).c_str());
    EXPECT_EQ(json_object_has_member(body, "session"), i == 0) << actions[i];
  }
}

TEST_F(GraphApiTest, ConnectReturnsTheNewCallId) {
  fake_.respond(200, R"({"messaging_product":"whatsapp","calls":[{"id":"wacid.NEW"}]})");
  auto result = run([&](GraphCallback done) { api_->connect("4915112345678", "v=0\r\n", "order-42", done); });
  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.call_id, "wacid.NEW");
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject* body = parse_object(parser, fake_.requests().at(0).body);
  ASSERT_TRUE(body);
  EXPECT_STREQ(json_object_get_string_member(body, "to"), "4915112345678");
  EXPECT_STREQ(json_object_get_string_member(body, "action"), "connect");
  EXPECT_STREQ(json_object_get_string_member(body, "biz_opaque_callback_data"), "order-42");
  EXPECT_FALSE(json_object_has_member(body, "call_id"));
  EXPECT_STREQ(json_object_get_string_member(json_object_get_object_member(body, "session"), "sdp_type"), "offer");
}

TEST_F(GraphApiTest, MetaErrorIsParsedAndLogged) {
  fake_.respond(400, R"({"error":{"message":"No approved call permission","type":"OAuthException","code":138006,)"
                     R"("error_data":{"messaging_product":"whatsapp","details":"ask the user first"},)"
                     R"("fbtrace_id":"AbC123"}})");
  std::vector<std::string> logged;
  guint handler = g_log_set_handler(
      "voicebridge-graph", static_cast<GLogLevelFlags>(G_LOG_LEVEL_MASK),
      [](const gchar*, GLogLevelFlags, const gchar* message, gpointer data) {
        static_cast<std::vector<std::string>*>(data)->push_back(message);
      },
      &logged);
  auto result = run([&](GraphCallback done) { api_->accept("wacid.1", kAnswer, done); });
  g_log_remove_handler("voicebridge-graph", handler);
  EXPECT_FALSE(result.ok);
  EXPECT_FALSE(result.transport_error);
  EXPECT_EQ(result.http_status, 400);
  EXPECT_EQ(result.error_code, 138006);
  EXPECT_EQ(result.error_message, "No approved call permission");
  EXPECT_EQ(result.error_details, "ask the user first");
  EXPECT_EQ(result.fbtrace_id, "AbC123");
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].rfind("graph accept call=wacid.1 failed: HTTP 400 code 138006 No approved call permission "
                            "(ask the user first)", 0),
            0u)
      << logged[0];
  EXPECT_EQ(logged[0].find(kToken), std::string::npos);
}

TEST_F(GraphApiTest, UnexpectedSuccessBodiesAreFailures) {
  fake_.respond(200, R"({"success":false})");
  fake_.respond(200, "<html>");
  fake_.respond(404, "not json");
  EXPECT_FALSE(run([&](GraphCallback done) { api_->pre_accept("wacid.1", kAnswer, done); }).ok);
  EXPECT_FALSE(run([&](GraphCallback done) { api_->pre_accept("wacid.1", kAnswer, done); }).ok);
  auto not_found = run([&](GraphCallback done) { api_->pre_accept("wacid.1", kAnswer, done); });
  EXPECT_FALSE(not_found.ok);
  EXPECT_EQ(not_found.http_status, 404);
  EXPECT_EQ(not_found.error_message, "Not Found");
  EXPECT_EQ(not_found.body, "not json");
}

TEST_F(GraphApiTest, TerminateIsRetriedAfter500) {
  fake_.respond(500, R"({"error":{"message":"temporary","code":1}})");
  auto result = run([&](GraphCallback done) { api_->terminate("wacid.1", done); });
  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(fake_.requests().size(), 2u);
}

TEST_F(GraphApiTest, RejectGivesUpAfterThreeAttempts) {
  for (int i = 0; i < 3; ++i) fake_.respond(429, R"({"error":{"message":"slow down","code":138005}})");
  auto result = run([&](GraphCallback done) { api_->reject("wacid.1", done); });
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.http_status, 429);
  EXPECT_EQ(result.error_code, 138005);
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(fake_.requests().size(), 3u);
}

TEST_F(GraphApiTest, TerminateIsNotRetriedOnClientErrors) {
  fake_.respond(400, R"({"error":{"message":"bad","code":100}})");
  EXPECT_FALSE(run([&](GraphCallback done) { api_->terminate("wacid.1", done); }).ok);
  EXPECT_EQ(fake_.requests().size(), 1u);
}

TEST_F(GraphApiTest, AcceptIsNotRetriedAfter500) {
  fake_.respond(500, R"({"error":{"message":"temporary","code":1}})");
  auto result = run([&](GraphCallback done) { api_->accept("wacid.1", kAnswer, done); });
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.http_status, 500);
  EXPECT_EQ(result.attempts, 1);
  EXPECT_EQ(fake_.requests().size(), 1u);
}

// A port with nothing listening: connection refused.
int closed_port() {
  g_autoptr(GSocket) socket =
      g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, nullptr);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new_from_string("127.0.0.1", 0);
  g_socket_bind(socket, any, TRUE, nullptr);
  g_autoptr(GSocketAddress) bound = g_socket_get_local_address(socket, nullptr);
  return g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));  // closed when `socket` goes
}

TEST(GraphApiTransport, RefusedConnectionIsRetriedEvenForAccept) {
  std::string url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/v23.0";
  GraphApi api(url, "PNID", kToken);
  api.set_retry_policy({3, {1, 1}});
  std::optional<GraphResult> result;
  api.accept("wacid.1", kAnswer, [&](const GraphResult& r) { result = r; });
  test::run_until([&] { return result.has_value(); });
  ASSERT_TRUE(result);
  EXPECT_FALSE(result->ok);
  EXPECT_TRUE(result->transport_error);
  EXPECT_EQ(result->http_status, 0);
  EXPECT_EQ(result->attempts, 3);  // provably never reached Meta: safe to retry
}

TEST(GraphApiTransport, InvalidUrlFailsAsynchronously) {
  GraphApi api("not a url", "PNID", kToken);
  std::optional<GraphResult> result;
  api.terminate("wacid.1", [&](const GraphResult& r) { result = r; });
  EXPECT_FALSE(result);  // never called from inside the request method
  test::run_until([&] { return result.has_value(); });
  EXPECT_TRUE(result->transport_error);
  EXPECT_NE(result->error_message.find("invalid Graph API URL"), std::string::npos);
}

TEST_F(GraphApiTest, DestructionWithRequestInFlight) {
  fake_.hold_requests();
  int calls = 0;
  api_->accept("wacid.1", kAnswer, [&](const GraphResult&) { ++calls; });
  test::run_until([&] { return fake_.requests().size() == 1; });
  api_.reset();
  test::drain_main_context();
  EXPECT_EQ(calls, 0);
}

TEST_F(GraphApiTest, UnansweredAcceptTimesOutWithoutRetry) {
  fake_.hold_requests();
  api_->set_request_timeout_s(1);
  auto result = run([&](GraphCallback done) { api_->accept("wacid.1", kAnswer, done); });
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(result.transport_error);
  EXPECT_EQ(result.attempts, 1);  // it may have reached Meta: never repeated
  EXPECT_EQ(fake_.requests().size(), 1u);
}

TEST_F(GraphApiTest, DestructionWithRetryPending) {
  api_->set_retry_policy({3, {60000}});  // the retry would wait a minute: it must simply vanish
  fake_.respond(503, "{}");
  int calls = 0;
  api_->terminate("wacid.1", [&](const GraphResult&) { ++calls; });
  test::run_until([&] { return fake_.requests().size() == 1; });
  test::drain_main_context();
  api_.reset();
  test::drain_main_context();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(fake_.requests().size(), 1u);
}

TEST_F(GraphApiTest, CancelAllKeepsTheClientUsable) {
  fake_.hold_requests();
  int cancelled_calls = 0;
  api_->pre_accept("wacid.1", kAnswer, [&](const GraphResult&) { ++cancelled_calls; });
  test::run_until([&] { return fake_.requests().size() == 1; });
  api_->cancel_all();
  test::drain_main_context();
  EXPECT_EQ(cancelled_calls, 0);

  FakeGraph other;
  GraphApi fresh(other.url(), "PNID", kToken);
  std::optional<GraphResult> result;
  fresh.terminate("wacid.2", [&](const GraphResult& r) { result = r; });
  api_->cancel_all();  // cancelling one client leaves others alone
  test::run_until([&] { return result.has_value(); });
  EXPECT_TRUE(result->ok);
}

TEST_F(GraphApiTest, CallbackMayDestroyTheClient) {
  bool called = false;
  api_->terminate("wacid.1", [&](const GraphResult& result) {
    called = result.ok;
    api_.reset();
  });
  test::run_until([&] { return called; });
  test::drain_main_context();
  EXPECT_FALSE(api_);
}

}  // namespace
}  // namespace vb
