// The reminder scheduler's rows: claiming due reminders exactly once across
// every server process sharing the database, and recording each call's outcome.
//
// A claim sets status 'calling', claimed_by (the process) and claimed_at and
// counts an attempt. Only the holder of a claim can record its outcome; a claim
// older than the claim timeout (its process died) is claimed again by anyone.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "store/database.h"

namespace vb {

struct ClaimedReminder {
  int64_t id = 0;
  std::string phone_number;
  std::string text;
  int64_t remind_at_unix = 0;   // when the caller asked to be reminded
  int64_t created_at_unix = 0;  // when the reminder was set
  int attempts = 0;             // this claim included
};

struct ReminderRetryPolicy {
  int max_attempts = 3;     // REMINDER_MAX_ATTEMPTS: missed calls before the reminder is missed for good
  int backoff_s = 300;      // REMINDER_RETRY_BACKOFF_S: before the second attempt, doubling after each miss
  int daily_limit_wait_s = 24 * 3600;  // Meta's daily limit without a time in its error: try again after this
};

// A string naming this server process in claimed_by: host, pid and a random part
// (pids repeat across containers and restarts).
std::string reminder_claimer_id();

// Claims up to `limit` (>= 1) reminders that are due (pending and past their
// time) or whose claim is older than `claim_timeout_s`, oldest first. `done`
// gets the claimed reminders, or nullopt after a log line when the database
// failed or is unavailable (nothing was claimed then).
void claim_due_reminders(Database& db, const std::string& claimer, int limit, int claim_timeout_s,
                         std::function<void(std::optional<std::vector<ClaimedReminder>>)> done);

// The outcome of one claimed reminder's call. `done(true)` when recorded;
// false after a log line when the claim is no longer ours (taken over), the
// reminder is gone, or the database failed.
using OutcomeDone = std::function<void(bool recorded)>;

// The call was answered: delivered for good (the claim ends), with its call id.
void reminder_delivered(Database& db, const std::string& claimer, int64_t id, const std::string& call_id,
                        OutcomeDone done);

// Not answered or rejected: pending again after the backoff (backoff_s, doubled
// for each earlier attempt), or 'missed' once max_attempts calls were made.
void reminder_missed(Database& db, const std::string& claimer, int64_t id, const std::string& why,
                     const ReminderRetryPolicy& policy, OutcomeDone done);

// Cannot be delivered (e.g. 138006: no call permission): 'failed', not retried.
void reminder_failed(Database& db, const std::string& claimer, int64_t id, const std::string& why,
                     OutcomeDone done);

// Meta's daily call limit (138012): pending again at `next_attempt_unix`, the
// attempt not counted.
void reminder_rescheduled(Database& db, const std::string& claimer, int64_t id, int64_t next_attempt_unix,
                          const std::string& why, OutcomeDone done);

// The call could not be placed for a passing reason of ours (draining, Graph API
// unreachable): pending again now, the attempt not counted.
void reminder_released(Database& db, const std::string& claimer, int64_t id, const std::string& why,
                       OutcomeDone done);

// When a 138012 error allows the next business-initiated call: a unix time or an
// ISO 8601 date-time found in Meta's error details, else now + daily_limit_wait_s.
int64_t daily_limit_retry_time(const std::string& error_details, int64_t now_unix, const ReminderRetryPolicy& policy);

}  // namespace vb
