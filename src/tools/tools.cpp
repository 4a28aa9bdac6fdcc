#include "tools/tools.h"

#include <glib.h>

#include <cstring>

#include "glib_util.h"
#include "log.h"
#include "store/phone.h"
#include "tools/handlers.h"

namespace vb {
namespace {

using Handler = void (*)(tools::ToolCall, Arguments&);

struct ToolEntry {
  const char* name;
  Handler handler;
};

constexpr ToolEntry kTools[] = {
    {"create_task", tools::create_task},         {"list_tasks", tools::list_tasks},
    {"complete_task", tools::complete_task},     {"delete_task", tools::delete_task},
    {"create_reminder", tools::create_reminder}, {"list_reminders", tools::list_reminders},
    {"cancel_reminder", tools::cancel_reminder},
};

constexpr size_t kSummaryItems = 10;
constexpr size_t kSummaryTextChars = 80;

// Caller-chosen text going into the instructions: one line, bounded.
std::string one_line(const std::string& text, size_t max_chars) {
  std::string line;
  size_t chars = 0;
  for (const char* p = text.c_str(); *p && chars < max_chars; p = g_utf8_next_char(p), ++chars) {
    gunichar c = g_utf8_get_char(p);
    if (g_unichar_iscntrl(c) || c == '"') {
      line += ' ';
      continue;
    }
    char buffer[6];
    line.append(buffer, static_cast<size_t>(g_unichar_to_utf8(c, buffer)));
  }
  return chars == max_chars && text.size() > line.size() ? line + "..." : line;
}

std::string utc_offset(int64_t unix_time, const std::string& time_zone) {
  std::string iso = tools::iso_local_time(unix_time, time_zone);
  return "UTC" + iso.substr(iso.size() - 6);
}

}  // namespace

Tools::Tools(Database* db, const Config& config) : db_(db), configured_time_zone_(config.default_time_zone) {}

std::vector<std::string> Tools::names() {
  std::vector<std::string> names;
  for (const auto& tool : kTools) names.emplace_back(tool.name);
  names.emplace_back(kEndCallTool);
  return names;
}

std::string Tools::time_zone_for(const std::string& phone_number) const {
  return caller_time_zone(phone_number, configured_time_zone_);
}

void Tools::run(const std::string& phone_number, const std::string& name, const std::string& arguments_json,
                std::function<void(std::string result_json)> done) {
  // Answers always arrive on a later main-loop iteration.
  auto reply = [done = std::move(done)](std::string result) {
    run_soon([done, result = std::move(result)] { done(result); });
  };
  if (name == kEndCallTool) {
    reply(tools::error_json("not_a_data_tool", "end_call is handled by the call itself"));
    return;
  }
  const ToolEntry* tool = nullptr;
  for (const auto& entry : kTools)
    if (name == entry.name)
      tool = &entry;
  if (!tool) {
    g_warning("tools: the model called an unknown tool \"%s\"", one_line(name, 64).c_str());
    reply(tools::error_json("unknown_tool", "there is no tool named \"" + one_line(name, 64) + "\""));
    return;
  }
  auto number = normalized_phone_number(phone_number);
  if (!number) {
    reply(tools::error_json("unavailable",
                            "tasks and reminders need the caller's phone number, which WhatsApp did not share "
                            "for this call"));
    return;
  }
  if (!db_) {
    reply(tools::error_json("unavailable", "task and reminder storage is not configured on this server"));
    return;
  }
  auto logged_reply = [reply, tool_name = std::string(tool->name), masked = mask_phone_number(*number)](
                          std::string result) {
    if (result.starts_with("{\"error\""))
      g_message("tools: %s for %s refused: %s", tool_name.c_str(), masked.c_str(), result.c_str());
    reply(std::move(result));
  };
  Arguments args(arguments_json);
  if (args.failed()) {
    logged_reply(tools::error_json(args.error_code(), args.error()));
    return;
  }
  tool->handler(tools::ToolCall{*db_, *number, time_zone_for(phone_number), g_get_real_time() / G_USEC_PER_SEC,
                                std::move(logged_reply)},
                args);
}

void Tools::caller_summary(const std::string& phone_number, std::function<void(std::string summary)> done) {
  auto number = normalized_phone_number(phone_number);
  if (!db_ || !number) {
    run_soon([done = std::move(done)] { done(""); });
    return;
  }
  static const std::string kSummary =
      "SELECT * FROM ("
      " (SELECT 'task' AS kind, id, title AS text, extract(epoch FROM due_at)::bigint AS at_s,"
      "         count(*) OVER () AS total, row_number() OVER (ORDER BY due_at NULLS LAST, id) AS position"
      "  FROM tasks WHERE phone_number = $1 AND status = 'pending' ORDER BY position LIMIT " +
      std::to_string(kSummaryItems) +
      ")"
      " UNION ALL"
      " (SELECT 'reminder', id, text, extract(epoch FROM remind_at)::bigint,"
      "         count(*) OVER (), row_number() OVER (ORDER BY remind_at, id)"
      "  FROM reminders WHERE phone_number = $1 AND status = 'pending' ORDER BY 6 LIMIT " +
      std::to_string(kSummaryItems) + ")) AS items ORDER BY kind DESC, position";
  db_->query(kSummary, {*number}, [done = std::move(done), zone = time_zone_for(phone_number)](QueryResult result) {
    if (!result.ok()) {
      done("");
      return;
    }
    std::string tasks, reminders;
    int64_t task_total = 0, reminder_total = 0;
    for (int row = 0; row < result.rows(); ++row) {
      std::string id = "#" + result.value(row, "id").value_or("?");
      std::string text = "\"" + one_line(result.value(row, "text").value_or(""), kSummaryTextChars) + "\"";
      auto at = result.integer(row, "at_s");
      if (result.value(row, "kind") == "task") {
        task_total = result.integer(row, "total").value_or(0);
        tasks += "- task " + id + " " + text + (at ? ", due " + tools::spoken_local_time(*at, zone) : "") + "\n";
      } else {
        reminder_total = result.integer(row, "total").value_or(0);
        reminders += "- reminder " + id + " at " + (at ? tools::spoken_local_time(*at, zone) : "?") + ": " +
                     text + "\n";
      }
    }
    auto more = [](int64_t total) {
      return total > static_cast<int64_t>(kSummaryItems)
                 ? "- and " + std::to_string(total - static_cast<int64_t>(kSummaryItems)) + " more\n"
                 : std::string();
    };
    std::string summary;
    if (task_total)
      summary += "Open tasks (" + std::to_string(task_total) + "):\n" + tasks + more(task_total);
    if (reminder_total)
      summary += "Pending reminders (" + std::to_string(reminder_total) + "):\n" + reminders + more(reminder_total);
    done(summary);
  });
}

std::string call_instructions(const std::string& base_instructions, const CallerContext& caller,
                              const std::string& time_zone, const std::string& summary, int64_t now_unix) {
  std::string tomorrow = tools::iso_local_time(now_unix + 24 * 3600, time_zone);
  std::string example = tomorrow.substr(0, 10) + "T09:00:00" + tomorrow.substr(19);
  std::string text = session_instructions(base_instructions, caller);
  text += "\n\nIt is now " + tools::spoken_local_time(now_unix, time_zone) + " in the caller's likely time zone, " +
          time_zone + " (" + utc_offset(now_unix, time_zone) +
          "). Use that zone unless the caller says otherwise, and give every time to a tool as ISO 8601 with its "
          "UTC offset, e.g. " + example + " for 9 am tomorrow.";
  text +=
      "\nYou can keep a to-do list for the caller (create_task, list_tasks, complete_task, delete_task) and set "
      "reminders, which call the caller back at the chosen time and read the reminder out (create_reminder, "
      "list_reminders, cancel_reminder). Confirm briefly what you saved. Use the ids from the list tools; never "
      "guess one. If a tool answers with an error, tell the caller in plain words.";
  if (!summary.empty())
    text += "\nThe caller's open items right now:\n" + summary;
  return text;
}

}  // namespace vb
