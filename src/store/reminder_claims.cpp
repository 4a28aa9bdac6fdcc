#include "store/reminder_claims.h"

#include <glib.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <utility>

namespace vb {
namespace {

// Due: pending and past its (next) time, or claimed by a process that has not
// finished it within the claim timeout. SKIP LOCKED lets servers claiming at the
// same moment split the rows instead of waiting on or repeating each other.
constexpr const char* kClaim = R"SQL(
  UPDATE reminders r
  SET status = 'calling', claimed_by = $1, claimed_at = now(), attempts = r.attempts + 1, updated_at = now()
  WHERE r.id IN (
    SELECT id FROM reminders
    WHERE (status = 'pending' AND coalesce(next_attempt_at, remind_at) <= now())
       OR (status = 'calling' AND claimed_at < now() - make_interval(secs => $2::integer))
    ORDER BY coalesce(next_attempt_at, remind_at), id
    LIMIT $3::integer
    FOR UPDATE SKIP LOCKED)
  RETURNING r.id, r.phone_number, r.text, extract(epoch FROM r.remind_at)::bigint AS remind_s,
            extract(epoch FROM r.created_at)::bigint AS created_s, r.attempts)SQL";

// Every outcome applies only while the claim is still ours.
constexpr const char* kOurClaim = " WHERE id = $1::bigint AND status = 'calling' AND claimed_by = $2 RETURNING id";

void record_outcome(Database& db, const char* outcome, std::string set_clause,
                    std::vector<std::optional<std::string>> params, OutcomeDone done) {
  int64_t id = g_ascii_strtoll(params.at(0)->c_str(), nullptr, 10);
  db.query("UPDATE reminders SET " + set_clause + ", updated_at = now()" + kOurClaim, std::move(params),
           [outcome, id, done = std::move(done)](QueryResult result) {
             if (!result.ok()) {
               g_warning("reminder %" G_GINT64_FORMAT ": outcome %s not recorded: %s", id, outcome,
                         result.error().c_str());
               return done(false);
             }
             if (result.rows() == 0) {
               g_warning("reminder %" G_GINT64_FORMAT ": outcome %s not recorded: no longer claimed by this server",
                         id, outcome);
               return done(false);
             }
             g_message("reminder %" G_GINT64_FORMAT ": %s", id, outcome);
             done(true);
           });
}

}  // namespace

std::string reminder_claimer_id() {
  return std::string(g_get_host_name()) + ":" + std::to_string(getpid()) + ":" +
         std::to_string(g_random_int_range(0, G_MAXINT32));
}

void claim_due_reminders(Database& db, const std::string& claimer, int limit, int claim_timeout_s,
                         std::function<void(std::optional<std::vector<ClaimedReminder>>)> done) {
  db.query(kClaim, {claimer, std::to_string(claim_timeout_s), std::to_string(std::max(limit, 1))},
           [done = std::move(done)](QueryResult result) {
             if (!result.ok()) {
               g_warning("reminders: claiming due reminders failed: %s", result.error().c_str());
               return done(std::nullopt);
             }
             std::vector<ClaimedReminder> claimed;
             for (int row = 0; row < result.rows(); ++row) {
               ClaimedReminder reminder;
               reminder.id = result.integer(row, "id").value_or(0);
               reminder.phone_number = result.value(row, "phone_number").value_or("");
               reminder.text = result.value(row, "text").value_or("");
               reminder.remind_at_unix = result.integer(row, "remind_s").value_or(0);
               reminder.created_at_unix = result.integer(row, "created_s").value_or(0);
               reminder.attempts = static_cast<int>(result.integer(row, "attempts").value_or(0));
               claimed.push_back(std::move(reminder));
             }
             std::sort(claimed.begin(), claimed.end(),
                       [](const auto& a, const auto& b) { return a.remind_at_unix < b.remind_at_unix; });
             done(std::move(claimed));
           });
}

void reminder_delivered(Database& db, const std::string& claimer, int64_t id, const std::string& call_id,
                        OutcomeDone done) {
  record_outcome(db, "delivered", "status = 'delivered', call_id = nullif(left($3, 256), ''), last_error = NULL",
                 {std::to_string(id), claimer, call_id}, std::move(done));
}

void reminder_missed(Database& db, const std::string& claimer, int64_t id, const std::string& why,
                     const ReminderRetryPolicy& policy, OutcomeDone done) {
  // The exponent is capped: a larger backoff than 2^16 times the base is never meant.
  record_outcome(db, "missed",
                 "last_error = left($3, 2000),"
                 " status = CASE WHEN attempts >= $4::integer THEN 'missed' ELSE 'pending' END,"
                 " next_attempt_at = CASE WHEN attempts >= $4::integer THEN next_attempt_at"
                 " ELSE now() + make_interval(secs => $5::integer * power(2, least(greatest(attempts - 1, 0), 16)))"
                 " END",
                 {std::to_string(id), claimer, why, std::to_string(policy.max_attempts),
                  std::to_string(policy.backoff_s)},
                 std::move(done));
}

void reminder_failed(Database& db, const std::string& claimer, int64_t id, const std::string& why,
                     OutcomeDone done) {
  record_outcome(db, "failed", "status = 'failed', last_error = left($3, 2000)", {std::to_string(id), claimer, why},
                 std::move(done));
}

void reminder_rescheduled(Database& db, const std::string& claimer, int64_t id, int64_t next_attempt_unix,
                          const std::string& why, OutcomeDone done) {
  record_outcome(db, "rescheduled",
                 "status = 'pending', last_error = left($3, 2000), next_attempt_at = to_timestamp($4::bigint),"
                 " attempts = greatest(attempts - 1, 0)",
                 {std::to_string(id), claimer, why, std::to_string(next_attempt_unix)}, std::move(done));
}

void reminder_released(Database& db, const std::string& claimer, int64_t id, const std::string& why,
                       OutcomeDone done) {
  record_outcome(db, "released",
                 "status = 'pending', last_error = left($3, 2000), next_attempt_at = now(),"
                 " attempts = greatest(attempts - 1, 0)",
                 {std::to_string(id), claimer, why}, std::move(done));
}

int64_t daily_limit_retry_time(const std::string& error_details, int64_t now_unix, const ReminderRetryPolicy& policy) {
  int64_t fallback = now_unix + policy.daily_limit_wait_s;
  // Too early or absurdly late times are not what Meta meant: wait the default.
  auto plausible = [&](int64_t when) { return when > now_unix && when <= now_unix + 8 * 24 * 3600; };

  static const std::regex kIsoTime(R"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)");
  std::smatch match;
  if (std::regex_search(error_details, match, kIsoTime)) {
    std::string text = match.str();
    if (text[10] == ' ') text[10] = 'T';
    g_autoptr(GTimeZone) utc = g_time_zone_new_utc();
    g_autoptr(GDateTime) when = g_date_time_new_from_iso8601(text.c_str(), utc);
    if (when && plausible(g_date_time_to_unix(when)))
      return g_date_time_to_unix(when);
  }
  static const std::regex kUnixTime(R"(\b\d{10}\b)");
  if (std::regex_search(error_details, match, kUnixTime)) {
    int64_t when = g_ascii_strtoll(match.str().c_str(), nullptr, 10);
    if (plausible(when))
      return when;
  }
  return fallback;
}

}  // namespace vb
