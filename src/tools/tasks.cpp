// create_task, list_tasks, complete_task, delete_task. Every statement names
// the caller's number, so another caller's task is simply not found.
#include <utility>

#include "tools/handlers.h"

namespace vb::tools {
namespace {

constexpr size_t kMaxTitleChars = 200;
constexpr size_t kMaxNotesChars = 2000;
constexpr int kMaxOpenTasks = 200;

constexpr const char* kTaskColumns =
    "id, title, notes, extract(epoch FROM due_at)::bigint AS due_s, status";

void add_task(JsonObjectWriter& json, const QueryResult& rows, int row, const std::string& time_zone) {
  json.add("id", rows.integer(row, "id").value_or(0))
      .add("title", rows.value(row, "title"))
      .add("notes", rows.value(row, "notes"))
      .add_time("due_at", rows.integer(row, "due_s"), time_zone)
      .add("status", rows.value(row, "status"));
}

std::string task_result(const QueryResult& rows, const std::string& time_zone) {
  JsonObjectWriter json;
  json.add_bool("ok", true).begin_object("task");
  add_task(json, rows, 0, time_zone);
  json.end_object();
  return json.finish();
}

std::string no_such_task(int64_t id) {
  return error_json("not_found", "this caller has no task with id " + std::to_string(id) +
                                     "; use list_tasks to find the right id");
}

}  // namespace

void create_task(ToolCall call, Arguments& args) {
  args.allow_only({"title", "notes", "due_at"});
  auto title = args.text("title", true, kMaxTitleChars);
  auto notes = args.text("notes", false, kMaxNotesChars);
  auto due = args.future_time("due_at", false, call.now_unix);
  if (answered_invalid(call, args))
    return;
  std::optional<std::string> due_param;
  if (due)
    due_param = std::to_string(*due);
  call.db.query(std::string("INSERT INTO tasks (phone_number, title, notes, due_at)"
                            " SELECT $1, $2, $3, to_timestamp($4::bigint)"
                            " WHERE (SELECT count(*) FROM tasks WHERE phone_number = $1 AND status = 'pending') < ") +
                    std::to_string(kMaxOpenTasks) + " RETURNING " + kTaskColumns,
                {call.phone_number, *title, notes, due_param},
                [call](QueryResult result) {
                  if (!result.ok())
                    return call.done(database_error_json(result));
                  if (result.rows() == 0)
                    return call.done(error_json("limit_reached",
                                                "the caller already has " + std::to_string(kMaxOpenTasks) +
                                                    " open tasks; complete or delete some first"));
                  call.done(task_result(result, call.time_zone));
                });
}

void list_tasks(ToolCall call, Arguments& args) {
  args.allow_only({"status", "limit"});
  auto status = args.choice("status", {"pending", "done", "all"}, "pending");
  auto limit = args.integer("limit", 1, 50, 20);
  if (answered_invalid(call, args))
    return;
  call.db.query(std::string("SELECT ") + kTaskColumns +
                    ", count(*) OVER () AS total FROM tasks"
                    " WHERE phone_number = $1 AND ($2 = 'all' OR status = $2)"
                    " ORDER BY status DESC, due_at NULLS LAST, id LIMIT $3::integer",
                {call.phone_number, *status, std::to_string(*limit)},
                [call](QueryResult result) {
                  if (!result.ok())
                    return call.done(database_error_json(result));
                  call.done(list_json(result, "tasks", add_task, call.time_zone));
                });
}

void complete_task(ToolCall call, Arguments& args) {
  args.allow_only({"task_id"});
  auto id = args.id("task_id");
  if (answered_invalid(call, args))
    return;
  call.db.query(std::string("UPDATE tasks SET status = 'done', updated_at = now()"
                            " WHERE id = $1::bigint AND phone_number = $2 RETURNING ") +
                    kTaskColumns,
                {std::to_string(*id), call.phone_number},
                [call, id = *id](QueryResult result) {
                  if (!result.ok())
                    return call.done(database_error_json(result));
                  if (result.rows() == 0)
                    return call.done(no_such_task(id));
                  call.done(task_result(result, call.time_zone));
                });
}

void delete_task(ToolCall call, Arguments& args) {
  args.allow_only({"task_id"});
  auto id = args.id("task_id");
  if (answered_invalid(call, args))
    return;
  call.db.query(std::string("DELETE FROM tasks WHERE id = $1::bigint AND phone_number = $2 RETURNING ") +
                    kTaskColumns,
                {std::to_string(*id), call.phone_number},
                [call, id = *id](QueryResult result) {
                  if (!result.ok())
                    return call.done(database_error_json(result));
                  if (result.rows() == 0)
                    return call.done(no_such_task(id));
                  JsonObjectWriter json;
                  json.add_bool("ok", true).add("deleted_task_id", id).add("title", result.value(0, "title"));
                  call.done(json.finish());
                });
}

}  // namespace vb::tools
