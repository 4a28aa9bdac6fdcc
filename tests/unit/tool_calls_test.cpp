// ToolCalls: end_call hangs up after its grace period unless the call ended
// first; any other tool answers the AI while the call is up and is counted in
// the metrics either way. Without a database every tool answers "unavailable",
// which is enough to follow a result through.
#include <gtest/gtest.h>

#include <glib.h>

#include <functional>
#include <string>
#include <vector>

#include "call/tool_calls.h"
#include "config.h"
#include "http/metrics.h"
#include "tools/tools.h"

namespace vb {
namespace {

struct Answer {
  std::string tool_call_id, result;
};

class ToolCallsTest : public ::testing::Test {
 protected:
  // Iterates the default main context until `done` or 10 s have passed.
  static bool iterate_until(const std::function<bool()>& done) {
    const gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!done() && g_get_monotonic_time() < deadline) g_main_context_iteration(nullptr, FALSE), g_usleep(1000);
    return done();
  }
  // Iterates whatever is ready for `ms`.
  static void iterate_for(int ms) {
    const gint64 end = g_get_monotonic_time() + ms * 1000;
    while (g_get_monotonic_time() < end) g_main_context_iteration(nullptr, FALSE), g_usleep(1000);
  }
  std::string metrics_text() { return metrics_.render(LiveState{}); }

  Config config_;
  Tools tools_{nullptr, config_};
  Metrics metrics_{Tools::names()};
  int hang_ups_ = 0;
  std::vector<Answer> answers_;
  std::vector<std::string> log_;
  ToolCalls calls_{tools_, metrics_, "15550001111",
                   {.log = [this](const std::string& line) { log_.push_back(line); },
                    .hang_up = [this] { ++hang_ups_; },
                    .answer = [this](const std::string& id, const std::string& result) {
                      answers_.push_back({id, result});
                    }}};
};

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST_F(ToolCallsTest, EndCallHangsUpOnceAfterTheGracePeriodWithoutAnAnswer) {
  calls_.on_function_call("call_1", "end_call", "{}");
  calls_.on_function_call("call_2", "end_call", "{}");  // a second one does not hang up twice
  EXPECT_EQ(hang_ups_, 0) << "hung up before the goodbye could be heard";
  ASSERT_TRUE(iterate_until([&] { return hang_ups_ > 0; }));
  iterate_for(50);
  EXPECT_EQ(hang_ups_, 1);
  EXPECT_TRUE(answers_.empty()) << "an output for end_call would make the model speak again";
  EXPECT_TRUE(has_line(metrics_text(), R"(voicebridge_tool_calls_total{tool="end_call",result="ok"} 2)"));
}

TEST_F(ToolCallsTest, NoHangUpOnceTheCallHasEnded) {
  calls_.on_function_call("call_1", "end_call", "{}");
  calls_.stop();
  iterate_for(3500);  // past the grace period
  EXPECT_EQ(hang_ups_, 0);
}

TEST_F(ToolCallsTest, AToolAnswersWithItsResultWhileTheCallIsUp) {
  calls_.on_function_call("call_7", "list_tasks", "{}");
  EXPECT_TRUE(answers_.empty()) << "results come later on the main loop, never inside the call";
  ASSERT_TRUE(iterate_until([&] { return !answers_.empty(); }));
  EXPECT_EQ(answers_[0].tool_call_id, "call_7");
  EXPECT_TRUE(Tools::is_error(answers_[0].result)) << answers_[0].result;
  EXPECT_TRUE(has_line(metrics_text(), R"(voicebridge_tool_calls_total{tool="list_tasks",result="error"} 1)"));
  EXPECT_EQ(log_, (std::vector<std::string>{"tool list_tasks called", "tool list_tasks answered with an error"}));
}

TEST_F(ToolCallsTest, AResultAfterTheCallEndedIsCountedButNotAnswered) {
  calls_.on_function_call("call_7", "list_tasks", "{}");
  calls_.stop();
  ASSERT_TRUE(iterate_until([&] {
    return has_line(metrics_text(), R"(voicebridge_tool_calls_total{tool="list_tasks",result="error"} 1)");
  }));
  EXPECT_TRUE(answers_.empty());
  calls_.on_function_call("call_8", "list_tasks", "{}");  // the AI's last words after the end: ignored
  iterate_for(50);
  EXPECT_TRUE(answers_.empty());
}

}  // namespace
}  // namespace vb
