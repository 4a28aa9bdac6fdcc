#include <gtest/gtest.h>

#include <string>

#include "whatsapp/webhook.h"

namespace vb {
namespace {

constexpr const char* kOfferSdp =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 3480 UDP/TLS/RTP/SAVPF 111 126\r\na=mid:audio\r\n";

std::string envelope(const std::string& changes) {
  return R"({"object":"whatsapp_business_account","entry":[{"id":"WABA1","changes":[)" + changes + "]}]}";
}

std::string calls_change(const std::string& value_members) {
  return R"({"field":"calls","value":{"messaging_product":"whatsapp",)"
         R"("metadata":{"display_phone_number":"15550001111","phone_number_id":"PNID1"},)" +
         value_members + "}}";
}

const std::string kUserConnect = calls_change(
    R"("contacts":[{"profile":{"name":"Alice"},"wa_id":"4915112345678"}],)"
    R"("calls":[{"id":"wacid.ABC","from":"4915112345678","to":"15550001111","event":"connect",)"
    R"("timestamp":"1700000000","direction":"USER_INITIATED",)"
    R"("session":{"sdp_type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n)"
    R"(m=audio 3480 UDP/TLS/RTP/SAVPF 111 126\r\na=mid:audio\r\n"}}])");

TEST(Webhook, UserInitiatedConnectWithOfferAndContact) {
  auto result = parse_webhook(envelope(kUserConnect));
  ASSERT_TRUE(result.batch) << result.error;
  ASSERT_EQ(result.batch->events.size(), 1u);
  const CallEvent& call = result.batch->events[0];
  EXPECT_EQ(call.kind, CallEvent::Kind::Connect);
  EXPECT_EQ(call.event, "connect");
  EXPECT_EQ(call.call_id, "wacid.ABC");
  EXPECT_EQ(call.from, "4915112345678");
  EXPECT_EQ(call.to, "15550001111");
  EXPECT_EQ(call.direction, "USER_INITIATED");
  EXPECT_EQ(call.timestamp, 1700000000);
  EXPECT_EQ(call.sdp_type, "offer");
  EXPECT_EQ(call.sdp, kOfferSdp);  // JSON \r\n escapes decoded to real CRLFs
  EXPECT_EQ(call.caller_name, "Alice");
  EXPECT_EQ(call.phone_number_id, "PNID1");
  EXPECT_EQ(call.duration_s, -1);
  EXPECT_TRUE(call.errors.empty());
  EXPECT_TRUE(result.batch->statuses.empty());
  EXPECT_TRUE(result.batch->warnings.empty());
}

TEST(Webhook, TerminateWithErrorsInBothPlaces) {
  auto body = envelope(calls_change(
      R"("contacts":[{"profile":{"name":"Bob"},"wa_id":"111"},{"profile":{"name":"Alice"},"wa_id":"4915112345678"}],)"
      R"("calls":[{"id":"wacid.ABC","from":"4915112345678","to":"15550001111","event":"terminate",)"
      R"("direction":"USER_INITIATED","timestamp":"1700000020","status":"FAILED","duration":20,)"
      R"("errors":[{"code":138021,"message":"Media receive timeout",)"
      R"("error_data":{"details":"no media for a long time"}}]}],)"
      R"("errors":[{"code":131044,"title":"Payment required"}])"));
  auto result = parse_webhook(body);
  ASSERT_TRUE(result.batch) << result.error;
  ASSERT_EQ(result.batch->events.size(), 1u);
  const CallEvent& call = result.batch->events[0];
  EXPECT_EQ(call.kind, CallEvent::Kind::Terminate);
  EXPECT_EQ(call.status, "FAILED");
  EXPECT_EQ(call.duration_s, 20);
  EXPECT_EQ(call.caller_name, "Alice");  // matched by wa_id, not the first contact
  ASSERT_EQ(call.errors.size(), 2u);
  EXPECT_EQ(call.errors[0].code, 138021);
  EXPECT_EQ(call.errors[0].message, "Media receive timeout");
  EXPECT_EQ(call.errors[0].details, "no media for a long time");
  EXPECT_EQ(call.errors[1].code, 131044);
  EXPECT_EQ(call.errors[1].message, "Payment required");  // title when there is no message
}

TEST(Webhook, BusinessInitiatedConnectWithAnswerAndNoContacts) {
  auto body = envelope(calls_change(
      R"("calls":[{"id":"wacid.OUT","from":"15550001111","to":"4915112345678","event":"connect",)"
      R"("timestamp":"1700000100","direction":"BUSINESS_INITIATED","biz_opaque_callback_data":"order-42",)"
      R"("session":{"sdp_type":"answer","sdp":"v=0\r\n"}}])"));
  auto result = parse_webhook(body);
  ASSERT_TRUE(result.batch) << result.error;
  ASSERT_EQ(result.batch->events.size(), 1u);
  const CallEvent& call = result.batch->events[0];
  EXPECT_EQ(call.direction, "BUSINESS_INITIATED");
  EXPECT_EQ(call.sdp_type, "answer");
  EXPECT_EQ(call.sdp, "v=0\r\n");
  EXPECT_EQ(call.biz_opaque_callback_data, "order-42");
  EXPECT_EQ(call.caller_name, "");
}

TEST(Webhook, CallStatuses) {
  auto body = envelope(calls_change(
      R"("statuses":[)"
      R"({"id":"wacid.OUT","type":"call","status":"RINGING","timestamp":"1700000101","recipient_id":"4915112345678",)"
      R"("biz_opaque_callback_data":"order-42"},)"
      R"({"id":"wacid.OUT","type":"call","status":"ACCEPTED","timestamp":"1700000105","recipient_id":"4915112345678"},)"
      R"({"id":"wacid.OUT2","type":"call","status":"REJECTED","timestamp":"1700000200","recipient_id":"4915112345679"},)"
      R"({"id":"wamid.MSG","type":"message","status":"delivered"}])"));
  auto result = parse_webhook(body);
  ASSERT_TRUE(result.batch) << result.error;
  const auto& statuses = result.batch->statuses;
  ASSERT_EQ(statuses.size(), 3u);
  EXPECT_EQ(statuses[0].call_id, "wacid.OUT");
  EXPECT_EQ(statuses[0].status, "RINGING");
  EXPECT_EQ(statuses[0].timestamp, 1700000101);
  EXPECT_EQ(statuses[0].recipient_id, "4915112345678");
  EXPECT_EQ(statuses[0].biz_opaque_callback_data, "order-42");
  EXPECT_EQ(statuses[1].status, "ACCEPTED");
  EXPECT_EQ(statuses[2].call_id, "wacid.OUT2");
  EXPECT_EQ(statuses[2].status, "REJECTED");
  ASSERT_EQ(result.batch->warnings.size(), 1u);
  EXPECT_NE(result.batch->warnings[0].find("message"), std::string::npos);
  EXPECT_TRUE(result.batch->events.empty());
}

TEST(Webhook, SeveralChangesKeepPayloadOrderAndIgnoreMessages) {
  std::string messages = R"({"field":"messages","value":{"messages":[{"id":"wamid.1","from":"491","type":"text"}],)"
                         R"("statuses":[{"id":"wamid.1","status":"read"}]}})";
  std::string terminate = calls_change(
      R"("calls":[{"id":"wacid.ABC","event":"terminate","timestamp":"1700000001","status":"COMPLETED"}])");
  std::string body = R"({"object":"whatsapp_business_account","entry":[)"
                     R"({"id":"W","changes":[)" + kUserConnect + "," + messages + R"(]},)"
                     R"({"id":"W","changes":[)" + terminate + R"(]}]})";
  auto result = parse_webhook(body);
  ASSERT_TRUE(result.batch) << result.error;
  ASSERT_EQ(result.batch->events.size(), 2u);
  EXPECT_EQ(result.batch->events[0].kind, CallEvent::Kind::Connect);
  EXPECT_EQ(result.batch->events[1].kind, CallEvent::Kind::Terminate);
  EXPECT_EQ(result.batch->events[1].status, "COMPLETED");
  EXPECT_TRUE(result.batch->statuses.empty());  // message statuses never leak into call statuses
  ASSERT_EQ(result.batch->warnings.size(), 1u);
  EXPECT_NE(result.batch->warnings[0].find("\"messages\" ignored"), std::string::npos);
}

TEST(Webhook, UnknownEventIsKeptAsOther) {
  auto result = parse_webhook(envelope(calls_change(
      R"("calls":[{"id":"wacid.X","event":"call_recording_available","timestamp":"1700000000"}])")));
  ASSERT_TRUE(result.batch);
  ASSERT_EQ(result.batch->events.size(), 1u);
  EXPECT_EQ(result.batch->events[0].kind, CallEvent::Kind::Other);
  EXPECT_EQ(result.batch->events[0].event, "call_recording_available");
}

TEST(Webhook, CallWithoutIdOrEventIsSkippedWithWarning) {
  auto result = parse_webhook(envelope(calls_change(
      R"("calls":[{"event":"connect"},{"id":"wacid.NOEVENT"},"not an object",)"
      R"({"id":"wacid.OK","event":"terminate"}])")));
  ASSERT_TRUE(result.batch);
  ASSERT_EQ(result.batch->events.size(), 1u);
  EXPECT_EQ(result.batch->events[0].call_id, "wacid.OK");
  EXPECT_EQ(result.batch->events[0].timestamp, 0);
  EXPECT_EQ(result.batch->warnings.size(), 3u);
}

TEST(Webhook, WrongTypesBecomeWarnings) {
  auto result = parse_webhook(envelope(calls_change(
      R"("contacts":"nope","calls":[{"id":"wacid.T","event":"connect","from":4915112345678,)"
      R"("timestamp":1700000000,"duration":"abc","session":{"sdp_type":"offer","sdp":42},)"
      R"("errors":[{"code":"138021","message":7}]}])")));
  ASSERT_TRUE(result.batch) << result.error;
  ASSERT_EQ(result.batch->events.size(), 1u);
  const CallEvent& call = result.batch->events[0];
  EXPECT_EQ(call.timestamp, 1700000000);  // a number is accepted as well as a string
  EXPECT_EQ(call.from, "");
  EXPECT_EQ(call.sdp, "");
  EXPECT_EQ(call.duration_s, -1);
  ASSERT_EQ(call.errors.size(), 1u);
  EXPECT_EQ(call.errors[0].code, 138021);
  const auto& warnings = result.batch->warnings;
  auto has = [&](const std::string& text) {
    for (const auto& warning : warnings)
      if (warning.find(text) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("value.contacts: expected an array"));
  EXPECT_TRUE(has("calls[0].from: expected a string"));
  EXPECT_TRUE(has("calls[0].session.sdp: expected a string"));
  EXPECT_TRUE(has("calls[0].duration: expected an integer"));
  EXPECT_TRUE(has("errors[0].message: expected a string"));
}

TEST(Webhook, BadTimestampStringsAreWarnings) {
  for (const char* timestamp : {R"("17000x")", R"("")", R"("99999999999999999999999")", "1.5", "true", "[]"}) {
    auto result = parse_webhook(envelope(calls_change(
        std::string(R"("calls":[{"id":"wacid.T","event":"connect","timestamp":)") + timestamp + "}]")));
    ASSERT_TRUE(result.batch) << timestamp;
    ASSERT_EQ(result.batch->events.size(), 1u) << timestamp;
    EXPECT_EQ(result.batch->events[0].timestamp, 0) << timestamp;
    EXPECT_EQ(result.batch->warnings.size(), 1u) << timestamp;
  }
}

TEST(Webhook, EnvelopeErrors) {
  EXPECT_EQ(parse_webhook("").error, "empty body");
  EXPECT_NE(parse_webhook("{\"entry\":[").error.find("invalid JSON"), std::string::npos);
  EXPECT_EQ(parse_webhook("[1,2]").error, "not a JSON object");
  EXPECT_EQ(parse_webhook("\"entry\"").error, "not a JSON object");
  EXPECT_EQ(parse_webhook("{}").error, "no \"entry\" array");
  EXPECT_EQ(parse_webhook("{\"entry\":{}}").error, "no \"entry\" array");
  EXPECT_FALSE(parse_webhook(std::string("{\"entry\":[]}\0junk", 17)).batch);
  auto truncated = envelope(kUserConnect);
  for (size_t length : {truncated.size() / 3, truncated.size() / 2, truncated.size() - 1})
    EXPECT_FALSE(parse_webhook(truncated.substr(0, length)).batch) << length;
}

TEST(Webhook, EmptyAndOddButValidEnvelopes) {
  auto empty = parse_webhook(R"({"object":"whatsapp_business_account","entry":[]})");
  ASSERT_TRUE(empty.batch);
  EXPECT_TRUE(empty.batch->events.empty());
  auto odd = parse_webhook(R"({"object":"page","entry":[1,{"changes":[{"field":"calls"}]},{"changes":null}]})");
  ASSERT_TRUE(odd.batch);
  EXPECT_TRUE(odd.batch->events.empty());
  EXPECT_EQ(odd.batch->warnings.size(), 3u);  // object kind, entry[0] not an object, calls without value
}

TEST(Webhook, HugeBatchIsParsedCompletely) {
  std::string calls;
  constexpr int kCalls = 1000;  // Meta batches up to 1000 updates in one POST
  for (int i = 0; i < kCalls; ++i) {
    if (i) calls += ",";
    calls += R"({"id":"wacid.)" + std::to_string(i) + R"(","event":"connect","timestamp":"1700000000",)"
             R"("session":{"sdp_type":"offer","sdp":")" + std::string(1500, 'a') + R"("}})";
  }
  auto result = parse_webhook(envelope(calls_change("\"calls\":[" + calls + "]")));
  ASSERT_TRUE(result.batch);
  ASSERT_EQ(result.batch->events.size(), static_cast<size_t>(kCalls));
  EXPECT_EQ(result.batch->events.back().call_id, "wacid.999");
  EXPECT_EQ(result.batch->events.back().sdp.size(), 1500u);
}

TEST(Webhook, DeeplyNestedJunkDoesNotCrash) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto result = parse_webhook(R"({"entry":[{"changes":[{"field":"calls","value":{"calls":)" + deep + "}}]}]}");
  EXPECT_FALSE(result.batch);
  EXPECT_NE(result.error.find("nested"), std::string::npos);
  // Brackets inside strings are text, not nesting.
  auto in_string = parse_webhook(envelope(calls_change(
      R"("calls":[{"id":"wacid.S","event":"connect","session":{"sdp":")" + deep + R"(\"]"}}])")));
  ASSERT_TRUE(in_string.batch) << in_string.error;
  EXPECT_EQ(in_string.batch->events[0].sdp.size(), deep.size() + 2);
}

}  // namespace
}  // namespace vb
