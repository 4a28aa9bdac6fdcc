// The calls table: one row per finished call, with its transcript.
#include <gtest/gtest.h>

#include "../unit/main_loop.h"
#include "postgres_fixture.h"
#include "store/calls.h"

namespace vb {
namespace {

class CallsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.start();
    ASSERT_TRUE(test::run_until([&] { return db_.healthy(); }));
  }
  bool record(const CallRecord& call) {
    std::optional<bool> ok;
    record_call(db_, call, [&](bool result) { ok = result; });
    EXPECT_FALSE(ok) << "answered inside record_call()";
    test::run_until([&] { return ok.has_value(); });
    return ok.value_or(false);
  }
  static CallRecord sample() {
    CallRecord call;
    call.call_id = "wacid.HBgLMTQxNTU1NTAxMjMVAgARGCA=";
    call.direction = "inbound";
    call.phone_number = "+14155550123";
    call.end_reason = "caller hung up";
    call.started_us = 1767225600000000;  // 2026-01-01T00:00:00Z
    call.answered_us = call.started_us + 2500000;
    call.ended_us = call.started_us + 95123456;
    call.transcript = {{"user", "Remind me to call \"Mum\" at 6 pm, ok?"}, {"assistant", "Done — 18:00 it is. 👍"}};
    call.input_tokens = 1234;
    call.output_tokens = 567;
    return call;
  }

  test::TestDatabase database_{test::shared_server_url()};
  test::Sql sql_{database_.conninfo()};
  Database db_{database_.conninfo(), 1};
};

TEST_F(CallsTest, AFinishedCallIsRecordedWithItsTranscript) {
  ASSERT_TRUE(record(sample()));
  EXPECT_EQ(sql_.scalar("SELECT call_id || '|' || direction || '|' || phone_number || '|' || end_reason || '|' ||"
                        " input_tokens || '|' || output_tokens FROM calls"),
            "wacid.HBgLMTQxNTU1NTAxMjMVAgARGCA=|inbound|14155550123|caller hung up|1234|567");
  EXPECT_EQ(sql_.scalar("SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '|' ||"
                        " extract(epoch FROM answered_at - started_at) || '|' ||"
                        " extract(epoch FROM ended_at - started_at) FROM calls"),
            "2026-01-01 00:00:00.000000|2.500000|95.123456");
  EXPECT_EQ(sql_.scalar("SELECT transcript = '[{\"role\": \"user\", \"text\": \"Remind me to call \\\"Mum\\\" at 6 pm, "
                        "ok?\"}, {\"role\": \"assistant\", \"text\": \"Done — 18:00 it is. 👍\"}]'::jsonb FROM calls"),
            "t");
  EXPECT_EQ(sql_.scalar("SELECT transcript -> 1 ->> 'text' FROM calls"), "Done — 18:00 it is. 👍");
}

TEST_F(CallsTest, RecordingAgainReplacesTheRow) {
  CallRecord call = sample();
  ASSERT_TRUE(record(call));
  call.transcript.push_back({"user", "Bye"});
  call.end_reason = "assistant ended the call";
  ASSERT_TRUE(record(call));
  EXPECT_EQ(sql_.count("calls"), 1);
  EXPECT_EQ(sql_.scalar("SELECT jsonb_array_length(transcript) || '|' || end_reason FROM calls"),
            "3|assistant ended the call");
}

TEST_F(CallsTest, UnansweredCallsAndUnknownNumbers) {
  CallRecord call = sample();
  call.phone_number = "";  // a caller known only by username
  call.answered_us = 0;
  call.transcript.clear();
  ASSERT_TRUE(record(call));
  EXPECT_EQ(sql_.scalar("SELECT (answered_at IS NULL) || '|' || phone_number || '|' || transcript::text FROM calls"),
            "true||[]");
}

TEST_F(CallsTest, InvalidRecordsAreRefusedWithoutARow) {
  auto with = [](auto change) {
    CallRecord call = sample();
    change(call);
    return call;
  };
  EXPECT_FALSE(record(with([](CallRecord& c) { c.direction = "sideways"; })));
  EXPECT_FALSE(record(with([](CallRecord& c) { c.call_id.clear(); })));
  EXPECT_FALSE(record(with([](CallRecord& c) { c.started_us = 0; })));
  EXPECT_FALSE(record(with([](CallRecord& c) { c.phone_number = "not a number"; })));
  EXPECT_FALSE(record(with([](CallRecord& c) { c.output_tokens = -1; })));
  EXPECT_FALSE(record(with([](CallRecord& c) { c.transcript.push_back({"user", "\xff\xfe"}); })));
  // The database's own checks: ended before it started.
  EXPECT_FALSE(record(with([](CallRecord& c) { c.ended_us = c.started_us - 1; })));
  EXPECT_EQ(sql_.count("calls"), 0);
}

}  // namespace
}  // namespace vb
