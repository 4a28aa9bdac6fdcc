#include <glib.h>

#include "tools/handlers.h"

namespace vb::tools {

JsonObjectWriter::JsonObjectWriter() : builder_(json_builder_new()) { json_builder_begin_object(builder_); }

JsonObjectWriter::~JsonObjectWriter() { g_object_unref(builder_); }

JsonObjectWriter& JsonObjectWriter::add(const char* name, const std::optional<std::string>& value) {
  json_builder_set_member_name(builder_, name);
  if (value)
    json_builder_add_string_value(builder_, value->c_str());
  else
    json_builder_add_null_value(builder_);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::add(const char* name, const char* value) {
  json_builder_set_member_name(builder_, name);
  json_builder_add_string_value(builder_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::add(const char* name, int64_t value) {
  json_builder_set_member_name(builder_, name);
  json_builder_add_int_value(builder_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::add_bool(const char* name, bool value) {
  json_builder_set_member_name(builder_, name);
  json_builder_add_boolean_value(builder_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::add_time(const char* name, std::optional<int64_t> unix_time,
                                             const std::string& time_zone) {
  return add(name, unix_time ? std::optional<std::string>(iso_local_time(*unix_time, time_zone)) : std::nullopt);
}

JsonObjectWriter& JsonObjectWriter::begin_object(const char* name) {
  json_builder_set_member_name(builder_, name);
  json_builder_begin_object(builder_);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::begin_array(const char* name) {
  json_builder_set_member_name(builder_, name);
  json_builder_begin_array(builder_);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::begin_array_object() {
  json_builder_begin_object(builder_);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::end_object() {
  json_builder_end_object(builder_);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::end_array() {
  json_builder_end_array(builder_);
  return *this;
}

std::string JsonObjectWriter::finish() {
  json_builder_end_object(builder_);
  g_autoptr(JsonNode) root = json_builder_get_root(builder_);
  g_autofree char* text = json_to_string(root, FALSE);
  return text;
}

std::string error_json(const char* code, const std::string& message) {
  JsonObjectWriter json;
  json.add("error", code).add("message", message);
  return json.finish();
}

bool answered_invalid(const ToolCall& call, const Arguments& args) {
  if (!args.failed())
    return false;
  call.done(error_json(args.error_code(), args.error()));
  return true;
}

std::string list_json(const QueryResult& rows, const char* array_name, RowWriter write_row,
                      const std::string& time_zone) {
  JsonObjectWriter json;
  json.add("total", rows.rows() ? rows.integer(0, "total").value_or(0) : int64_t{0}).begin_array(array_name);
  for (int row = 0; row < rows.rows(); ++row) {
    json.begin_array_object();
    write_row(json, rows, row, time_zone);
    json.end_object();
  }
  json.end_array();
  return json.finish();
}

std::string database_error_json(const QueryResult& result) {
  if (result.status() == QueryResult::Status::Unavailable)
    return error_json("unavailable",
                      "the task and reminder storage is unavailable right now; nothing was saved or changed. "
                      "Tell the caller and suggest trying again later.");
  g_warning("tools: database refused a statement: %s", result.error().c_str());
  return error_json("failed", "the storage refused the request; nothing was saved or changed");
}

}  // namespace vb::tools
