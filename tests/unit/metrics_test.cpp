#include <gtest/gtest.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include <string>

#include "call/call.h"
#include "http/metrics.h"

namespace vb {
namespace {

const std::vector<std::string> kTools = {"create_task", "end_call"};

bool contains_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, EscapesLabelValues) {
  EXPECT_EQ(prometheus_escape_label("plain_code"), "plain_code");
  EXPECT_EQ(prometheus_escape_label(R"(a\b)"), R"(a\\b)");
  EXPECT_EQ(prometheus_escape_label(R"(say "hi")"), R"(say \"hi\")");
  EXPECT_EQ(prometheus_escape_label("two\nlines"), R"(two\nlines)");
}

TEST(Metrics, FormatsNumbers) {
  EXPECT_EQ(prometheus_number(0), "0");
  EXPECT_EQ(prometheus_number(42), "42");
  EXPECT_EQ(prometheus_number(0.05), "0.05");
  EXPECT_EQ(prometheus_number(1.5), "1.5");
  EXPECT_EQ(prometheus_number(1e21), "1e+21");
  EXPECT_EQ(prometheus_number(1.0 / 0.0), "+Inf");
  EXPECT_EQ(prometheus_number(0.0 / 0.0), "NaN");
}

TEST(Metrics, HistogramBucketsAreCumulativeAndInclusive) {
  Histogram histogram({0.1, 1, 10});
  for (double value : {0.05, 0.1, 0.5, 1.0, 3.0, 11.0}) histogram.observe(value);
  EXPECT_EQ(histogram.count(), 6u);
  EXPECT_DOUBLE_EQ(histogram.sum(), 15.65);
  // le is "less than or equal": 0.1 falls in the 0.1 bucket, 1.0 in the 1 bucket.
  EXPECT_EQ(histogram.cumulative_counts(), (std::vector<uint64_t>{2, 4, 5, 6}));

  std::string text;
  histogram.render(text, "x_seconds");
  EXPECT_EQ(text,
            "x_seconds_bucket{le=\"0.1\"} 2\n"
            "x_seconds_bucket{le=\"1\"} 4\n"
            "x_seconds_bucket{le=\"10\"} 5\n"
            "x_seconds_bucket{le=\"+Inf\"} 6\n"
            "x_seconds_sum 15.65\n"
            "x_seconds_count 6\n");
}

TEST(Metrics, RendersEveryFamilyWithHelpAndType) {
  Metrics metrics(kTools);
  LiveState live;
  live.max_calls = 7;
  live.database_up = true;
  const std::string text = metrics.render(live);
  for (const char* family :
       {"voicebridge_active_calls gauge", "voicebridge_max_calls gauge", "voicebridge_calls_total counter",
        "voicebridge_capacity_rejections_total counter", "voicebridge_call_setup_seconds histogram",
        "voicebridge_realtime_errors_total counter", "voicebridge_audio_frames_total counter",
        "voicebridge_barge_ins_total counter", "voicebridge_tool_calls_total counter", "voicebridge_database_up gauge",
        "voicebridge_database_errors_total counter", "voicebridge_webhook_signature_failures_total counter",
        "voicebridge_webhooks_total counter", "voicebridge_draining gauge"}) {
    EXPECT_TRUE(contains_line(text, std::string("# TYPE ") + family)) << family;
    const std::string name = std::string(family).substr(0, std::string(family).find(' '));
    EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
  }
  // Known series exist at 0 before anything happened.
  EXPECT_TRUE(contains_line(text, R"(voicebridge_calls_total{direction="inbound",outcome="failed"} 0)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_calls_total{direction="outbound",outcome="completed"} 0)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_tool_calls_total{tool="end_call",result="error"} 0)"));
  EXPECT_TRUE(contains_line(text, "voicebridge_max_calls 7"));
  EXPECT_TRUE(contains_line(text, "voicebridge_database_up 1"));
  EXPECT_TRUE(contains_line(text, "voicebridge_draining 0"));
  EXPECT_TRUE(contains_line(text, "voicebridge_call_setup_seconds_count 0"));
}

TEST(Metrics, NoDatabaseGaugeWithoutDatabase) {
  Metrics metrics(kTools);
  const std::string text = metrics.render(LiveState{});
  EXPECT_EQ(text.find("voicebridge_database_up"), std::string::npos);
  EXPECT_TRUE(contains_line(text, "voicebridge_database_errors_total 0"));
}

TEST(Metrics, CountsWhatHappened) {
  Metrics metrics(kTools);
  metrics.call_ended(CallDirection::Inbound, CallOutcome::Completed);
  metrics.call_ended(CallDirection::Inbound, CallOutcome::Completed);
  metrics.call_ended(CallDirection::Inbound, CallOutcome::Rejected);
  metrics.capacity_rejection();
  metrics.call_setup(0.3);
  metrics.tool_call("create_task", true);
  metrics.tool_call("create_task", false);
  metrics.tool_call("drop_tables", true);
  metrics.realtime_error("rate_limit_exceeded");
  metrics.realtime_error("");
  metrics.media_finished({100, 50, 2});
  LiveState live;
  live.active_inbound = 1;
  live.draining = true;
  live.webhooks = 9;
  live.signature_failures = 3;
  live.database_errors = 4;
  live.live_media = {10, 5, 1};
  const std::string text = metrics.render(live);
  EXPECT_TRUE(contains_line(text, R"(voicebridge_calls_total{direction="inbound",outcome="completed"} 2)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_calls_total{direction="inbound",outcome="rejected"} 1)"));
  EXPECT_TRUE(contains_line(text, "voicebridge_capacity_rejections_total 1"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_call_setup_seconds_bucket{le="0.25"} 0)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_call_setup_seconds_bucket{le="0.5"} 1)"));
  EXPECT_TRUE(contains_line(text, "voicebridge_call_setup_seconds_count 1"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_tool_calls_total{tool="create_task",result="ok"} 1)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_tool_calls_total{tool="create_task",result="error"} 1)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_tool_calls_total{tool="unknown",result="ok"} 1)"));
  EXPECT_EQ(text.find("drop_tables"), std::string::npos);
  EXPECT_TRUE(contains_line(text, R"(voicebridge_realtime_errors_total{code="rate_limit_exceeded"} 1)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_realtime_errors_total{code="unknown"} 1)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_audio_frames_total{direction="in"} 110)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_audio_frames_total{direction="out"} 55)"));
  EXPECT_TRUE(contains_line(text, "voicebridge_barge_ins_total 3"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_active_calls{direction="inbound"} 1)"));
  EXPECT_TRUE(contains_line(text, "voicebridge_draining 1"));
  EXPECT_TRUE(contains_line(text, "voicebridge_webhooks_total 9"));
  EXPECT_TRUE(contains_line(text, "voicebridge_webhook_signature_failures_total 3"));
  EXPECT_TRUE(contains_line(text, "voicebridge_database_errors_total 4"));
}

TEST(Metrics, ErrorCodesAreCappedAndEscaped) {
  Metrics metrics(kTools);
  for (size_t i = 0; i < Metrics::kMaxErrorCodes + 5; ++i) metrics.realtime_error("code_" + std::to_string(i));
  metrics.realtime_error("code_0");  // a code already kept stays itself
  metrics.realtime_error("new \"quoted\"\ncode");
  const std::string text = metrics.render(LiveState{});
  size_t series = 0;
  for (size_t at = text.find("\nvoicebridge_realtime_errors_total{"); at != std::string::npos;
       at = text.find("\nvoicebridge_realtime_errors_total{", at + 1))
    ++series;
  EXPECT_EQ(series, Metrics::kMaxErrorCodes + 1);
  EXPECT_TRUE(contains_line(text, R"(voicebridge_realtime_errors_total{code="code_0"} 2)"));
  EXPECT_TRUE(contains_line(text, R"(voicebridge_realtime_errors_total{code="other"} 6)"));

  Metrics fresh(kTools);
  fresh.realtime_error("new \"quoted\"\ncode");
  EXPECT_TRUE(contains_line(fresh.render(LiveState{}),
                            R"(voicebridge_realtime_errors_total{code="new \"quoted\"\ncode"} 1)"));
}

TEST(Metrics, CallOutcomes) {
  EXPECT_EQ(outcome_of(EndReason::CallerHungUp, false), CallOutcome::Completed);
  EXPECT_EQ(outcome_of(EndReason::CallerHungUp, true), CallOutcome::Completed);
  EXPECT_EQ(outcome_of(EndReason::AssistantEnded, true), CallOutcome::Completed);
  EXPECT_EQ(outcome_of(EndReason::MediaTimeout, true), CallOutcome::Completed);
  EXPECT_EQ(outcome_of(EndReason::Shutdown, true), CallOutcome::Completed);
  EXPECT_EQ(outcome_of(EndReason::Shutdown, false), CallOutcome::Rejected);
  EXPECT_EQ(outcome_of(EndReason::RealtimeFailed, false), CallOutcome::Rejected);
  EXPECT_EQ(outcome_of(EndReason::RealtimeFailed, true), CallOutcome::Failed);
  EXPECT_EQ(outcome_of(EndReason::SetupTimeout, false), CallOutcome::Failed);
  EXPECT_EQ(outcome_of(EndReason::MediaFailed, true), CallOutcome::Failed);
  EXPECT_EQ(outcome_of(EndReason::GraphRefused, false), CallOutcome::Failed);
}

// The exposition passes Prometheus' own checker, when it is installed (Debian package prometheus).
TEST(Metrics, PassesPromtool) {
  g_autofree char* promtool = g_find_program_in_path("promtool");
  if (!promtool) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  Metrics metrics(kTools);
  metrics.call_ended(CallDirection::Inbound, CallOutcome::Completed);
  metrics.call_setup(1.2);
  metrics.realtime_error("bad \"code\"\\x");
  metrics.tool_call("create_task", true);
  LiveState live;
  live.database_up = false;
  g_autofree char* path = nullptr;
  int fd = g_file_open_tmp("metrics-XXXXXX.txt", &path, nullptr);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_TRUE(g_file_set_contents(path, metrics.render(live).c_str(), -1, nullptr));
  // promtool reads the exposition from stdin.
  const char* argv[] = {"sh", "-c", "promtool check metrics < \"$1\" 2>&1", "sh", path, nullptr};
  g_autofree char* output = nullptr;
  int status = 0;
  ASSERT_TRUE(g_spawn_sync(nullptr, const_cast<char**>(argv), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr, &output,
                           nullptr, &status, nullptr));
  g_unlink(path);
  EXPECT_TRUE(g_spawn_check_wait_status(status, nullptr)) << output;
  EXPECT_STREQ(output, "") << output;
}

}  // namespace
}  // namespace vb
