// The reminder scheduler's claims and outcomes against a real PostgreSQL.
#include <gtest/gtest.h>

#include <unistd.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../unit/main_loop.h"
#include "postgres_fixture.h"
#include "store/reminder_claims.h"
#include "store/reminder_scheduler.h"

namespace vb {
namespace {

class ReminderClaimsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.start();
    ASSERT_TRUE(test::run_until([&] { return db_.healthy(); }));
  }

  // Inserts `count` reminders due `seconds_from_now` from now; returns the first id.
  int64_t add_reminders(int count, int seconds_from_now = -60, const std::string& status = "pending") {
    return g_ascii_strtoll(
        sql_
            .scalar("INSERT INTO reminders (phone_number, text, remind_at, status)"
                    " SELECT '4915112345678', 'Reminder ' || n, now() + make_interval(secs => " +
                    std::to_string(seconds_from_now) + ") + n * interval '1 millisecond', '" + status +
                    "' FROM generate_series(1, " + std::to_string(count) + ") AS n RETURNING id")
            .c_str(),
        nullptr, 10);
  }

  std::vector<ClaimedReminder> claim(Database& db, const std::string& claimer, int limit, int timeout_s = 300) {
    std::optional<std::optional<std::vector<ClaimedReminder>>> answer;
    claim_due_reminders(db, claimer, limit, timeout_s, [&](auto claimed) { answer = std::move(claimed); });
    EXPECT_TRUE(test::run_until([&] { return answer.has_value(); }));
    EXPECT_TRUE(answer && *answer) << "claim failed";
    return answer && *answer ? **answer : std::vector<ClaimedReminder>{};
  }

  template <typename Outcome>
  bool outcome(Outcome start) {
    std::optional<bool> recorded;
    start([&](bool ok) { recorded = ok; });
    EXPECT_TRUE(test::run_until([&] { return recorded.has_value(); }));
    return recorded.value_or(false);
  }

  std::string row(int64_t id, const std::string& expression) {
    return sql_.scalar("SELECT " + expression + " FROM reminders WHERE id = " + std::to_string(id));
  }

  // Makes a reminder waiting for a retry due now.
  void make_due(int64_t id) { sql_.exec("UPDATE reminders SET next_attempt_at = now() WHERE id = " + std::to_string(id)); }

  test::TestDatabase database_{test::shared_server_url()};
  test::Sql sql_{database_.conninfo()};
  Database db_{database_.conninfo(), 2};
  ReminderRetryPolicy policy_{3, 300, 24 * 3600};
};

TEST_F(ReminderClaimsTest, TwoProcessesRacingClaimEveryReminderExactlyOnce) {
  constexpr int kReminders = 200;
  add_reminders(kReminders);
  Database other{database_.conninfo(), 4};
  other.start();
  ASSERT_TRUE(test::run_until([&] { return other.healthy(); }));

  // Both "processes" keep several small claims in flight at once until nothing is left.
  std::map<int64_t, std::string> owner;
  std::vector<int64_t> duplicates;
  int running = 0;
  std::function<void(Database&, std::string)> keep_claiming = [&](Database& db, std::string who) {
    ++running;
    claim_due_reminders(db, who, 3, 300, [&, who](std::optional<std::vector<ClaimedReminder>> claimed) {
      --running;
      ASSERT_TRUE(claimed);
      for (const auto& reminder : *claimed)
        if (!owner.emplace(reminder.id, who).second)
          duplicates.push_back(reminder.id);
      if (!claimed->empty())
        keep_claiming(db, who);
    });
  };
  for (int i = 0; i < 4; ++i) {
    keep_claiming(db_, "process-a");
    keep_claiming(other, "process-b");
  }
  ASSERT_TRUE(test::run_until([&] { return running == 0; }, 60));
  // A claim finding every due row locked by the other claims comes back empty:
  // sweep whatever such a chain left behind.
  for (auto remaining = claim(db_, "sweep", 50); !remaining.empty(); remaining = claim(db_, "sweep", 50))
    for (const auto& reminder : remaining)
      if (!owner.emplace(reminder.id, "sweep").second)
        duplicates.push_back(reminder.id);

  EXPECT_TRUE(duplicates.empty()) << duplicates.size() << " reminders claimed twice";
  EXPECT_EQ(owner.size(), static_cast<size_t>(kReminders));
  EXPECT_EQ(sql_.count("reminders WHERE status = 'calling' AND attempts = 1 AND claimed_at IS NOT NULL"), kReminders);
  for (const char* who : {"process-a", "process-b", "sweep"}) {
    int64_t claimed_here = 0;
    for (const auto& [id, claimer] : owner) claimed_here += claimer == who;
    EXPECT_EQ(sql_.count(std::string("reminders WHERE claimed_by = '") + who + "'"), claimed_here) << who;
  }
}

TEST_F(ReminderClaimsTest, OnlyDuePendingRemindersAreClaimedUpToTheLimit) {
  int64_t due = add_reminders(5);
  add_reminders(3, 3600);  // later
  for (const char* status : {"cancelled", "delivered", "missed", "failed"}) add_reminders(1, -60, status);

  auto first = claim(db_, "me", 3);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0].id, due);  // oldest first
  EXPECT_EQ(first[0].text, "Reminder 1");
  EXPECT_EQ(first[0].phone_number, "4915112345678");
  EXPECT_EQ(first[0].attempts, 1);
  EXPECT_EQ(std::to_string(first[0].remind_at_unix), row(due, "extract(epoch FROM remind_at)::bigint"));
  EXPECT_EQ(std::to_string(first[0].created_at_unix), row(due, "extract(epoch FROM created_at)::bigint"));

  EXPECT_EQ(claim(db_, "me", 10).size(), 2u);
  EXPECT_EQ(claim(db_, "me", 10).size(), 0u);
  EXPECT_EQ(sql_.count("reminders WHERE status = 'calling'"), 5);
}

TEST_F(ReminderClaimsTest, AClaimOfADeadProcessIsTakenOverAfterTheTimeout) {
  int64_t id = add_reminders(1);
  ASSERT_EQ(claim(db_, "dead-process", 5).size(), 1u);
  EXPECT_EQ(claim(db_, "survivor", 5, 300).size(), 0u);  // still fresh

  sql_.exec("UPDATE reminders SET claimed_at = now() - interval '301 seconds' WHERE id = " + std::to_string(id));
  auto taken = claim(db_, "survivor", 5, 300);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, id);
  EXPECT_EQ(taken[0].attempts, 2);
  EXPECT_EQ(row(id, "claimed_by"), "survivor");

  // The old holder can no longer record an outcome; the new one can.
  EXPECT_FALSE(outcome([&](auto done) { reminder_delivered(db_, "dead-process", id, "wacid.OLD", done); }));
  EXPECT_TRUE(outcome([&](auto done) { reminder_delivered(db_, "survivor", id, "wacid.NEW", done); }));
  EXPECT_EQ(row(id, "status || '|' || call_id"), "delivered|wacid.NEW");
}

TEST_F(ReminderClaimsTest, DeliveredIsFinal) {
  int64_t id = add_reminders(1);
  ASSERT_EQ(claim(db_, "me", 1).size(), 1u);
  EXPECT_TRUE(outcome([&](auto done) { reminder_delivered(db_, "me", id, "wacid.ABC", done); }));
  EXPECT_EQ(row(id, "status || '|' || call_id || '|' || attempts"), "delivered|wacid.ABC|1");
  // Neither a second outcome nor an expired claim brings it back.
  EXPECT_FALSE(outcome([&](auto done) { reminder_missed(db_, "me", id, "no answer", policy_, done); }));
  sql_.exec("UPDATE reminders SET claimed_at = now() - interval '1 day'");
  EXPECT_EQ(claim(db_, "other", 5, 300).size(), 0u);
}

TEST_F(ReminderClaimsTest, MissedCallsAreRetriedWithDoublingBackoffThenMissedForGood) {
  int64_t id = add_reminders(1);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto claimed = claim(db_, "me", 1);
    ASSERT_EQ(claimed.size(), 1u) << attempt;
    EXPECT_EQ(claimed[0].attempts, attempt);
    EXPECT_TRUE(outcome([&](auto done) { reminder_missed(db_, "me", id, "not answered", policy_, done); }));
    EXPECT_EQ(row(id, "status || '|' || last_error"), "pending|not answered") << attempt;
    // The backoff doubles: 300 s, then 600 s (both times from the same statement's now()).
    EXPECT_EQ(row(id, "extract(epoch FROM next_attempt_at - updated_at)::bigint"),
              std::to_string(300 << (attempt - 1)));
    EXPECT_EQ(claim(db_, "me", 1).size(), 0u) << "claimed before its backoff";
    make_due(id);
  }
  ASSERT_EQ(claim(db_, "me", 1).size(), 1u);
  EXPECT_TRUE(outcome([&](auto done) { reminder_missed(db_, "me", id, "rejected", policy_, done); }));
  EXPECT_EQ(row(id, "status || '|' || attempts || '|' || last_error"), "missed|3|rejected");
  make_due(id);
  EXPECT_EQ(claim(db_, "me", 1).size(), 0u);
  // The time the caller asked for is untouched.
  EXPECT_EQ(row(id, "remind_at < now()"), "t");
}

TEST_F(ReminderClaimsTest, NoPermissionFailsWithoutRetry) {
  int64_t id = add_reminders(1);
  ASSERT_EQ(claim(db_, "me", 1).size(), 1u);
  EXPECT_TRUE(outcome([&](auto done) {
    reminder_failed(db_, "me", id, "138006: no approved call permission from the recipient", done);
  }));
  EXPECT_EQ(row(id, "status || '|' || last_error"), "failed|138006: no approved call permission from the recipient");
  make_due(id);
  EXPECT_EQ(claim(db_, "me", 1).size(), 0u);
}

TEST_F(ReminderClaimsTest, TheDailyLimitReschedulesWithoutCountingTheAttempt) {
  int64_t id = add_reminders(1);
  ASSERT_EQ(claim(db_, "me", 1).size(), 1u);
  int64_t next = g_ascii_strtoll(sql_.scalar("SELECT extract(epoch FROM now() + interval '5 hours')::bigint").c_str(),
                                 nullptr, 10);
  EXPECT_TRUE(outcome([&](auto done) { reminder_rescheduled(db_, "me", id, next, "138012: daily limit", done); }));
  EXPECT_EQ(row(id, "status || '|' || attempts || '|' || last_error || '|' || extract(epoch FROM next_attempt_at)::bigint"),
            "pending|0|138012: daily limit|" + std::to_string(next));
  EXPECT_EQ(claim(db_, "me", 1).size(), 0u);
  make_due(id);
  auto again = claim(db_, "me", 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 1);
}

TEST_F(ReminderClaimsTest, AReleasedClaimIsDueAgainAtOnce) {
  int64_t id = add_reminders(1);
  ASSERT_EQ(claim(db_, "me", 1).size(), 1u);
  EXPECT_TRUE(outcome([&](auto done) { reminder_released(db_, "me", id, "server draining", done); }));
  EXPECT_EQ(row(id, "status || '|' || attempts"), "pending|0");
  EXPECT_EQ(claim(db_, "other", 1).size(), 1u);
}

TEST_F(ReminderClaimsTest, OutcomesForUnknownOrUnclaimedRemindersAreRefused) {
  int64_t id = add_reminders(1);
  EXPECT_FALSE(outcome([&](auto done) { reminder_delivered(db_, "me", id, "wacid.X", done); }));  // never claimed
  EXPECT_FALSE(outcome([&](auto done) { reminder_failed(db_, "me", id + 100, "gone", done); }));
  EXPECT_EQ(row(id, "status"), "pending");
}

TEST_F(ReminderClaimsTest, TheSchedulerClaimsOnlyWhatItHasCapacityFor) {
  add_reminders(5);
  int free = 0;
  std::vector<ClaimedReminder> placed;
  ReminderScheduler scheduler(db_, reminder_claimer_id(), {3600, 300, 20}, [&] { return free; },
                              [&](const ClaimedReminder& reminder) { placed.push_back(reminder); });

  scheduler.start();  // full: claims nothing
  test::drain_main_context();
  EXPECT_EQ(sql_.count("reminders WHERE status = 'calling'"), 0);

  free = 2;
  scheduler.tick();
  ASSERT_TRUE(test::run_until([&] { return placed.size() == 2; }));
  EXPECT_EQ(scheduler.claimed(), 2u);
  EXPECT_EQ(sql_.count("reminders WHERE status = 'calling' AND claimed_by = '" + scheduler.claimer() + "'"), 2);

  free = 10;
  scheduler.tick();
  scheduler.tick();  // ignored while the first claim runs
  ASSERT_TRUE(test::run_until([&] { return placed.size() == 5; }));
  std::set<int64_t> ids;
  for (const auto& reminder : placed) ids.insert(reminder.id);
  EXPECT_EQ(ids.size(), 5u);
}

TEST(DailyLimitRetryTime, ReadsMetasTimeOrWaitsADay) {
  ReminderRetryPolicy policy;
  const int64_t now = 1767225600;  // 2026-01-01T00:00:00Z
  EXPECT_EQ(daily_limit_retry_time("Next call allowed after 2026-01-01T06:30:00Z", now, policy), now + 6 * 3600 + 1800);
  EXPECT_EQ(daily_limit_retry_time("until 2026-01-01 02:00:00+01:00", now, policy), now + 3600);
  EXPECT_EQ(daily_limit_retry_time("retry after 1767240000", now, policy), 1767240000);
  EXPECT_EQ(daily_limit_retry_time("limit reached", now, policy), now + 24 * 3600);
  EXPECT_EQ(daily_limit_retry_time("", now, policy), now + 24 * 3600);
  // Times in the past or months away are not believed.
  EXPECT_EQ(daily_limit_retry_time("after 2025-12-31T00:00:00Z", now, policy), now + 24 * 3600);
  EXPECT_EQ(daily_limit_retry_time("after 2026-06-01T00:00:00Z", now, policy), now + 24 * 3600);
}

TEST(ReminderClaimerId, NamesTheProcessUniquely) {
  std::string a = reminder_claimer_id(), b = reminder_claimer_id();
  EXPECT_NE(a, b);
  EXPECT_NE(a.find(":" + std::to_string(getpid()) + ":"), std::string::npos) << a;
}

}  // namespace
}  // namespace vb
