// Pure parts of the openairealtime element: URL building, tools validation,
// the append encoder and the two queues.
#include <gtest/gtest.h>

#include "input_queue.h"
#include "playout_queue.h"
#include "realtime_protocol.h"

using namespace openairealtime;

TEST(ConnectUrl, OpenAiAppendsTheModel) {
  SessionConfig config;
  std::string error;
  EXPECT_EQ(build_connect_url(config, error).value(), "wss://api.openai.com/v1/realtime?model=gpt-realtime");
  config.url = "http://127.0.0.1:8080/v1/realtime?x=1";
  config.model = "gpt-realtime-mini";
  EXPECT_EQ(build_connect_url(config, error).value(), "ws://127.0.0.1:8080/v1/realtime?x=1&model=gpt-realtime-mini");
}

TEST(ConnectUrl, AzureUsesTheV1Path) {
  SessionConfig config;
  config.azure = true;
  config.url = "https://x.openai.azure.com/";
  config.model = "my deployment";
  std::string error;
  EXPECT_EQ(build_connect_url(config, error).value(),
            "wss://x.openai.azure.com/openai/v1/realtime?model=my%20deployment");
  config.url = "https://x.openai.azure.com/openai/realtime?api-version=2024-10-01";
  EXPECT_FALSE(build_connect_url(config, error));
  EXPECT_NE(error.find("api-version"), std::string::npos);
}

TEST(ConnectUrl, RejectsUnusableUrls) {
  SessionConfig config;
  std::string error;
  for (const char* url : {"", "ftp://host", "wss://", "api.openai.com"}) {
    config.url = url;
    EXPECT_FALSE(build_connect_url(config, error)) << url;
    EXPECT_FALSE(error.empty());
  }
  EXPECT_EQ(url_for_log("wss://h/v1/realtime?model=m&api-key=secret"), "wss://h/v1/realtime");
}

TEST(Tools, ValidatesTheFlatShape) {
  std::string error;
  EXPECT_TRUE(validate_tools_json("", error));
  EXPECT_TRUE(validate_tools_json(R"([{"type":"function","name":"a","parameters":{}},{"type":"mcp"}])", error));
  EXPECT_FALSE(validate_tools_json(R"({"type":"function"})", error));
  EXPECT_FALSE(validate_tools_json(R"([{"type":"function","function":{"name":"a"}}])", error));
  EXPECT_NE(error.find("nested"), std::string::npos);
  EXPECT_FALSE(validate_tools_json(R"([{"type":"function"}])", error));
  EXPECT_FALSE(validate_tools_json(R"([42])", error));
  EXPECT_FALSE(validate_tools_json("[", error));
}

TEST(SessionUpdate, NoneTurnDetectionIsTheOnlyNull) {
  SessionConfig config;
  config.turn_detection = TurnDetection::None;
  const std::string text = build_session_update(config);
  EXPECT_NE(text.find(R"("turn_detection":null)"), std::string::npos) << text;
  EXPECT_EQ(text.find("null"), text.rfind("null"));
}

TEST(Events, EscapeTheirStrings) {
  EXPECT_EQ(build_truncate("item\"1", 1234),
            R"({"type":"conversation.item.truncate","item_id":"item\"1","content_index":0,"audio_end_ms":1234})");
  EXPECT_EQ(build_history_item({HistoryRole::User, "hi"}),
            R"({"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}})");
}

TEST(AppendEncoder, EncodesBase64AndReusesItsBuffer) {
  AppendEncoder encoder;
  for (gsize size : {0u, 1u, 2u, 3u, 959u, 960u, 1920u}) {
    std::vector<guint8> pcm(size);
    for (gsize i = 0; i < size; ++i) pcm[i] = static_cast<guint8>(i * 7 + 3);
    const std::string& text = encoder.encode(pcm.data(), size);
    const std::string prefix = R"({"type":"input_audio_buffer.append","audio":")";
    ASSERT_EQ(text.compare(0, prefix.size(), prefix), 0);
    ASSERT_EQ(text.substr(text.size() - 2), "\"}");
    const std::string encoded = text.substr(prefix.size(), text.size() - prefix.size() - 2);
    g_autofree gchar* expected = g_base64_encode(pcm.data(), size);
    EXPECT_EQ(encoded, expected) << size;
  }
}

TEST(InputQueue, DropsTheOldestWhenFull) {
  InputQueue queue;
  queue.reset(10);
  const guint8 first[] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(queue.push(first, 8), 0u);
  const guint8 second[] = {9, 10, 11, 12, 13};
  EXPECT_EQ(queue.push(second, 5), 3u);
  guint8 out[16];
  ASSERT_EQ(queue.pop(out, 16), 10u);
  EXPECT_EQ(std::vector<guint8>(out, out + 10), (std::vector<guint8>{4, 5, 6, 7, 8, 9, 10, 11, 12, 13}));
  guint8 big[25];
  for (int i = 0; i < 25; ++i) big[i] = static_cast<guint8>(i);
  EXPECT_EQ(queue.push(big, 25), 15u);
  ASSERT_EQ(queue.pop(out, 4), 4u);
  EXPECT_EQ(out[0], 15);
  EXPECT_EQ(queue.size(), 6u);
}

static GstBuffer* pcm(gsize bytes) { return gst_buffer_new_allocate(nullptr, bytes, nullptr); }

TEST(PlayoutQueue, AccountsPlayedAudioPerItem) {
  gst_init(nullptr, nullptr);
  PlayoutQueue queue(100000);
  ASSERT_TRUE(queue.push("a", pcm(1000)));
  ASSERT_TRUE(queue.push("b", pcm(3000)));
  gst_buffer_unref(queue.take(960));
  std::optional<PlayoutQueue::Cut> cut;
  gst_buffer_unref(queue.take(960));  // 40 bytes of a, 920 of b
  cut = queue.flush();
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->item_id, "b");
  EXPECT_EQ(cut->played_bytes, 920u);
  EXPECT_EQ(cut->received_bytes, 3000u);
  EXPECT_EQ(queue.queued_bytes(), 0u);
  EXPECT_FALSE(queue.flush()) << "nothing queued, nothing to truncate";
  EXPECT_FALSE(queue.push("c", pcm(100001))) << "bounded";
}
