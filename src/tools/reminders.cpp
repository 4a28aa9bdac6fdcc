// create_reminder, list_reminders, cancel_reminder. The reminder scheduler
// (src/store/reminder_scheduler.h) calls the caller back at remind_at.
#include <utility>

#include "tools/handlers.h"

namespace vb::tools {
namespace {

constexpr size_t kMaxReminderChars = 500;
constexpr int kMaxPendingReminders = 50;

constexpr const char* kReminderColumns =
    "id, text, extract(epoch FROM remind_at)::bigint AS remind_s, status";

void add_reminder(JsonObjectWriter& json, const QueryResult& rows, int row, const std::string& time_zone) {
  json.add("id", rows.integer(row, "id").value_or(0))
      .add("text", rows.value(row, "text"))
      .add_time("remind_at", rows.integer(row, "remind_s"), time_zone)
      .add("status", rows.value(row, "status"));
}

}  // namespace

void create_reminder(ToolCall call, Arguments& args) {
  args.allow_only({"text", "remind_at"});
  auto text = args.text("text", true, kMaxReminderChars);
  auto remind_at = args.future_time("remind_at", true, call.now_unix);
  if (answered_invalid(call, args))
    return;
  call.db.query(std::string("INSERT INTO reminders (phone_number, text, remind_at)"
                            " SELECT $1, $2, to_timestamp($3::bigint)"
                            " WHERE (SELECT count(*) FROM reminders WHERE phone_number = $1 AND status = 'pending') < ") +
                    std::to_string(kMaxPendingReminders) + " RETURNING " + kReminderColumns,
                {call.phone_number, *text, std::to_string(*remind_at)},
                [call](QueryResult result) {
                  if (!result.ok())
                    return call.done(database_error_json(result));
                  if (result.rows() == 0)
                    return call.done(error_json("limit_reached",
                                                "the caller already has " + std::to_string(kMaxPendingReminders) +
                                                    " pending reminders; cancel some first"));
                  JsonObjectWriter json;
                  json.add_bool("ok", true).begin_object("reminder");
                  add_reminder(json, result, 0, call.time_zone);
                  json.end_object();
                  call.done(json.finish());
                });
}

void list_reminders(ToolCall call, Arguments& args) {
  args.allow_only({"status", "limit"});
  auto status = args.choice("status", {"pending", "all"}, "pending");
  auto limit = args.integer("limit", 1, 50, 20);
  if (answered_invalid(call, args))
    return;
  // Pending: soonest first. All: the most recent first, past ones included.
  call.db.query(std::string("SELECT ") + kReminderColumns +
                    ", count(*) OVER () AS total FROM reminders"
                    " WHERE phone_number = $1 AND ($2 = 'all' OR status IN ('pending', 'calling'))"
                    " ORDER BY CASE WHEN $2 = 'all' THEN -extract(epoch FROM remind_at)"
                    " ELSE extract(epoch FROM remind_at) END, id LIMIT $3::integer",
                {call.phone_number, *status, std::to_string(*limit)},
                [call](QueryResult result) {
                  if (!result.ok())
                    return call.done(database_error_json(result));
                  call.done(list_json(result, "reminders", add_reminder, call.time_zone));
                });
}

void cancel_reminder(ToolCall call, Arguments& args) {
  args.allow_only({"reminder_id"});
  auto id = args.id("reminder_id");
  if (answered_invalid(call, args))
    return;
  // One statement: lock the caller's row, cancel it only while pending, and
  // report its status before the change.
  static constexpr const char* kCancel = R"SQL(
    WITH target AS (
      SELECT id, status FROM reminders WHERE id = $1::bigint AND phone_number = $2 FOR UPDATE
    ), cancelled AS (
      UPDATE reminders r SET status = 'cancelled', updated_at = now() FROM target
      WHERE r.id = target.id AND target.status = 'pending'
      RETURNING r.id
    )
    SELECT r.id, r.text, extract(epoch FROM r.remind_at)::bigint AS remind_s, target.status AS previous_status,
           EXISTS (SELECT 1 FROM cancelled) AS cancelled
    FROM target JOIN reminders r ON r.id = target.id)SQL";
  call.db.query(kCancel, {std::to_string(*id), call.phone_number}, [call, id = *id](QueryResult result) {
    if (!result.ok())
      return call.done(database_error_json(result));
    if (result.rows() == 0)
      return call.done(error_json("not_found", "this caller has no reminder with id " + std::to_string(id) +
                                                   "; use list_reminders to find the right id"));
    if (result.value(0, "cancelled") != "t") {
      std::string previous = result.value(0, "previous_status").value_or("?");
      return call.done(error_json(
          "not_cancellable", "reminder " + std::to_string(id) + " cannot be cancelled: it is " +
                                 (previous == "calling" ? "being delivered right now" : "already " + previous)));
    }
    JsonObjectWriter json;
    json.add_bool("ok", true)
        .begin_object("reminder")
        .add("id", id)
        .add("text", result.value(0, "text"))
        .add_time("remind_at", result.integer(0, "remind_s"), call.time_zone)
        .add("status", "cancelled")
        .end_object();
    call.done(json.finish());
  });
}

}  // namespace vb::tools
