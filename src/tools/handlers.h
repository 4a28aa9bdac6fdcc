// Internal to src/tools: what every tool handler gets, and the JSON helpers
// the handlers share.
#pragma once

#include <json-glib/json-glib.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "store/database.h"
#include "tools/arguments.h"

namespace vb::tools {

struct ToolCall {
  Database& db;
  std::string phone_number;  // normalised digits, from the webhook
  std::string time_zone;     // IANA id for times shown to the model
  int64_t now_unix;
  std::function<void(std::string result_json)> done;
};

// Each handler validates `args`; on a problem it answers the error and writes nothing.
void create_task(ToolCall call, Arguments& args);
void list_tasks(ToolCall call, Arguments& args);
void complete_task(ToolCall call, Arguments& args);
void delete_task(ToolCall call, Arguments& args);
void create_reminder(ToolCall call, Arguments& args);
void list_reminders(ToolCall call, Arguments& args);
void cancel_reminder(ToolCall call, Arguments& args);

std::string error_json(const char* code, const std::string& message);
// Answers the arguments' error and returns true when validation failed.
bool answered_invalid(const ToolCall& call, const Arguments& args);
// The answer for a database failure: "unavailable" or "failed".
std::string database_error_json(const QueryResult& result);

// "2026-03-01T09:30:00+01:00" in `time_zone`.
std::string iso_local_time(int64_t unix_time, const std::string& time_zone);
// "Sun 2026-03-01 09:30" in `time_zone`, for the instructions.
std::string spoken_local_time(int64_t unix_time, const std::string& time_zone);

// Builds one JSON object; members are added in order.
class JsonObjectWriter {
 public:
  JsonObjectWriter();
  ~JsonObjectWriter();
  JsonObjectWriter(const JsonObjectWriter&) = delete;
  JsonObjectWriter& operator=(const JsonObjectWriter&) = delete;

  JsonObjectWriter& add(const char* name, const std::optional<std::string>& value);  // nullopt: null
  JsonObjectWriter& add(const char* name, const char* value);
  JsonObjectWriter& add(const char* name, int64_t value);
  JsonObjectWriter& add_bool(const char* name, bool value);
  // An optional Unix time, shown in `time_zone` (null when absent).
  JsonObjectWriter& add_time(const char* name, std::optional<int64_t> unix_time, const std::string& time_zone);
  JsonObjectWriter& begin_object(const char* name);
  JsonObjectWriter& begin_array(const char* name);
  JsonObjectWriter& begin_array_object();  // an object element of the open array
  JsonObjectWriter& end_object();
  JsonObjectWriter& end_array();
  std::string finish();

 private:
  JsonBuilder* builder_;
};

// Writes one row of a query result as the members of a JSON object.
using RowWriter = void (*)(JsonObjectWriter& json, const QueryResult& rows, int row, const std::string& time_zone);

// {"total": <the rows' "total" column>, "<array_name>": [<each row>]}.
std::string list_json(const QueryResult& rows, const char* array_name, RowWriter write_row,
                      const std::string& time_zone);

}  // namespace vb::tools
