#include <gtest/gtest.h>

#include <json-glib/json-glib.h>

#include <string>

#include "log.h"

namespace vb {
namespace {

// 2026-01-31T12:34:56.789Z
constexpr int64_t kTime = 1769862896789000;

JsonObject* parse_object(const std::string& line, JsonParser* parser) {
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line per entry";
  EXPECT_TRUE(json_parser_load_from_data(parser, line.c_str(), -1, nullptr)) << line;
  JsonNode* root = json_parser_get_root(parser);
  EXPECT_TRUE(root && JSON_NODE_HOLDS_OBJECT(root)) << line;
  return root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
}

TEST(JsonLog, LineShape) {
  const std::string line =
      json_log_line(kTime, G_LOG_LEVEL_WARNING, "voicebridge", "call wacid.ABC caller +49151*****678: ending (x)");
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject* object = parse_object(line, parser);
  ASSERT_TRUE(object);
  EXPECT_STREQ(json_object_get_string_member(object, "ts"), "2026-01-31T12:34:56.789Z");
  EXPECT_STREQ(json_object_get_string_member(object, "level"), "warning");
  EXPECT_STREQ(json_object_get_string_member(object, "domain"), "voicebridge");
  EXPECT_STREQ(json_object_get_string_member(object, "message"), "call wacid.ABC caller +49151*****678: ending (x)");
  EXPECT_STREQ(json_object_get_string_member(object, "call_id"), "wacid.ABC");
  EXPECT_EQ(json_object_get_size(object), 5u);
}

TEST(JsonLog, NoCallIdWhenNotAboutACall) {
  const std::string line = json_log_line(kTime, G_LOG_LEVEL_MESSAGE, "", "listening on 0.0.0.0:8080");
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject* object = parse_object(line, parser);
  ASSERT_TRUE(object);
  EXPECT_FALSE(json_object_has_member(object, "call_id"));
  EXPECT_STREQ(json_object_get_string_member(object, "level"), "message");
  EXPECT_STREQ(json_object_get_string_member(object, "domain"), "");
}

TEST(JsonLog, EscapesAndRepairsText) {
  const std::string message = std::string("quote \" backslash \\ newline\n tab\t bad \xff byte");
  const std::string line = json_log_line(kTime, G_LOG_LEVEL_DEBUG, "voicebridge-http", message);
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject* object = parse_object(line, parser);
  ASSERT_TRUE(object);
  const std::string parsed = json_object_get_string_member(object, "message");
  EXPECT_EQ(parsed.substr(0, 37), "quote \" backslash \\ newline\n tab\t bad");
  EXPECT_TRUE(g_utf8_validate(parsed.c_str(), -1, nullptr));
  EXPECT_STREQ(json_object_get_string_member(object, "level"), "debug");
}

TEST(JsonLog, Levels) {
  struct Case {
    GLogLevelFlags level;
    const char* name;
  };
  for (const Case& c : {Case{G_LOG_LEVEL_CRITICAL, "critical"}, Case{G_LOG_LEVEL_INFO, "info"},
                        Case{GLogLevelFlags(G_LOG_LEVEL_ERROR | G_LOG_FLAG_FATAL), "error"}}) {
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject* object = parse_object(json_log_line(kTime, c.level, "d", "m"), parser);
    ASSERT_TRUE(object);
    EXPECT_STREQ(json_object_get_string_member(object, "level"), c.name);
  }
}

TEST(JsonLog, CallIdOfGraphLines) {
  EXPECT_EQ(call_id_in("graph terminate call=wacid.XYZ failed: HTTP 500"), "wacid.XYZ");
  EXPECT_EQ(call_id_in("call wacid.1: rejecting: at capacity"), "wacid.1");
  EXPECT_EQ(call_id_in("webhook: call wacid.2 is for phone number id 1, not ours"), "");
  EXPECT_EQ(call_id_in("media: warning"), "");
}

TEST(MaskPhoneNumber, KeepsHeadAndTail) {
  EXPECT_EQ(mask_phone_number("+4915112345678"), "+4915******678");
  EXPECT_EQ(mask_phone_number("12345678"), "********");
}

}  // namespace
}  // namespace vb
