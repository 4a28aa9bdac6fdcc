// The assistant's tools: tasks and reminders of the caller, kept in
// PostgreSQL, and what the model is told about them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "assistant/assistant.h"
#include "config.h"
#include "store/database.h"

namespace vb {

class Tools {
 public:
  // `db` may be null (no DATABASE_URL): every tool then answers "unavailable".
  // `db` must outlive this object.
  Tools(Database* db, const Config& config);

  // The JSON array for session.update's `tools`: create_task, list_tasks,
  // complete_task, delete_task, create_reminder, list_reminders,
  // cancel_reminder and end_call.
  static std::string definitions_json();

  // Whether a result of run() is an error object (the call changed nothing).
  static bool is_error(const std::string& result_json) { return result_json.rfind("{\"error\"", 0) == 0; }
  // The names of those tools, end_call included.
  static std::vector<std::string> names();

  // Runs tool `name` for the caller `phone_number` (from the webhook, never
  // from the model); `done` gets the function_call_output: a JSON object, with
  // an "error" code and a "message" when the call changed nothing. end_call is
  // the call's own business and is refused here. `done` always runs later on
  // the main loop, never inside run().
  void run(const std::string& phone_number, const std::string& name, const std::string& arguments_json,
           std::function<void(std::string result_json)> done);

  // The caller's open tasks and pending reminders as a few lines for the
  // instructions; "" when there are none or the database is unavailable.
  void caller_summary(const std::string& phone_number, std::function<void(std::string summary)> done);

  // The IANA time zone the tools use for this caller.
  std::string time_zone_for(const std::string& phone_number) const;

 private:
  Database* db_;
  std::string configured_time_zone_;
};

// The caller's likely IANA time zone: `configured` (DEFAULT_TIME_ZONE) when
// set, else the zone of the number's country calling code, else "UTC".
std::string caller_time_zone(const std::string& phone_number, const std::string& configured);

// The session instructions for one call: session_instructions() plus the
// current date and time in `time_zone`, how to pass times to the tools, and
// the caller's open tasks and reminders (`summary`, may be empty).
std::string call_instructions(const std::string& base_instructions, const CallerContext& caller,
                              const std::string& time_zone, const std::string& summary, int64_t now_unix);

}  // namespace vb
