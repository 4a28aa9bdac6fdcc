// What the model reads about each tool: when to call it and how to fill in
// its arguments. The schemas match the validation in the handlers.
#include "tools/tools.h"

namespace vb {

std::string Tools::definitions_json() {
  return R"JSON([
  {"type": "function", "name": "create_task",
   "description": "Add a task to the caller's to-do list. Use it when the caller asks you to note, remember or track something to do. Tasks are only for this caller. Confirm the title back in a few words.",
   "parameters": {"type": "object", "additionalProperties": false, "required": ["title"], "properties": {
     "title": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Short title in the caller's words, e.g. 'Buy milk'."},
     "notes": {"type": "string", "maxLength": 2000, "description": "Optional details the caller gave."},
     "due_at": {"type": "string", "format": "date-time", "description": "Optional deadline in the future: ISO 8601 date and time with the caller's UTC offset, e.g. '2026-03-01T18:00:00+01:00'. Leave it out when the caller gives no deadline."}}}},
  {"type": "function", "name": "list_tasks",
   "description": "List the caller's tasks with their ids, open ones first. Call it before completing or deleting a task to find its id, or when the caller asks what is on their list.",
   "parameters": {"type": "object", "additionalProperties": false, "properties": {
     "status": {"type": "string", "enum": ["pending", "done", "all"], "description": "Which tasks: 'pending' (open, the default), 'done' or 'all'."},
     "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "At most this many tasks (default 20)."}}}},
  {"type": "function", "name": "complete_task",
   "description": "Mark one of the caller's tasks as done. Use the id from list_tasks or from the open items in your instructions.",
   "parameters": {"type": "object", "additionalProperties": false, "required": ["task_id"], "properties": {
     "task_id": {"type": "integer", "minimum": 1, "description": "The task's id."}}}},
  {"type": "function", "name": "delete_task",
   "description": "Delete one of the caller's tasks for good. Only when the caller asks to remove it (not when it is done: use complete_task).",
   "parameters": {"type": "object", "additionalProperties": false, "required": ["task_id"], "properties": {
     "task_id": {"type": "integer", "minimum": 1, "description": "The task's id."}}}},
  {"type": "function", "name": "create_reminder",
   "description": "Set a reminder: at remind_at we phone the caller on WhatsApp and read the text to them. Use it when the caller says 'remind me'. The time must be in the future; repeat the day and time back to the caller.",
   "parameters": {"type": "object", "additionalProperties": false, "required": ["text", "remind_at"], "properties": {
     "text": {"type": "string", "minLength": 1, "maxLength": 500, "description": "What to remind the caller of, phrased to be read out, e.g. 'Take your medication'."},
     "remind_at": {"type": "string", "format": "date-time", "description": "When to call: ISO 8601 date and time with the caller's UTC offset, e.g. '2026-03-01T09:30:00+01:00'. Work out relative times ('in two hours', 'tomorrow morning') from the current time in your instructions."}}}},
  {"type": "function", "name": "list_reminders",
   "description": "List the caller's reminders with their ids and times. Call it before cancelling one, or when the caller asks what reminders they have.",
   "parameters": {"type": "object", "additionalProperties": false, "properties": {
     "status": {"type": "string", "enum": ["pending", "all"], "description": "'pending' (upcoming, the default) or 'all' (including delivered, missed and cancelled ones, most recent first)."},
     "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "At most this many reminders (default 20)."}}}},
  {"type": "function", "name": "cancel_reminder",
   "description": "Cancel one of the caller's upcoming reminders so that we do not call. Use the id from list_reminders or from the open items in your instructions.",
   "parameters": {"type": "object", "additionalProperties": false, "required": ["reminder_id"], "properties": {
     "reminder_id": {"type": "integer", "minimum": 1, "description": "The reminder's id."}}}},
  {"type": "function", "name": "end_call",
   "description": "Hang up the WhatsApp call. Call it only after saying goodbye, when the caller wants to end the call or the conversation is clearly over.",
   "parameters": {"type": "object", "additionalProperties": false, "properties": {
     "reason": {"type": "string", "description": "Short reason, e.g. 'caller said goodbye'."}}}}
])JSON";
}

}  // namespace vb
