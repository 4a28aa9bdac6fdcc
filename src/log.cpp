#include "log.h"

#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <cstdio>

namespace vb {
namespace {

const char* level_name(GLogLevelFlags level) {
  if (level & G_LOG_LEVEL_ERROR) return "error";
  if (level & G_LOG_LEVEL_CRITICAL) return "critical";
  if (level & G_LOG_LEVEL_WARNING) return "warning";
  if (level & G_LOG_LEVEL_MESSAGE) return "message";
  if (level & G_LOG_LEVEL_INFO) return "info";
  return "debug";
}

std::string iso8601_utc(int64_t real_time_us) {
  g_autoptr(GDateTime) time = g_date_time_new_from_unix_utc(real_time_us / G_USEC_PER_SEC);
  if (!time) return "";
  g_autofree char* seconds = g_date_time_format(time, "%Y-%m-%dT%H:%M:%S");
  char millis[8];
  g_snprintf(millis, sizeof(millis), ".%03dZ", static_cast<int>((real_time_us % G_USEC_PER_SEC) / 1000));
  return std::string(seconds) + millis;
}

std::string_view field_text(const GLogField& field) {
  if (!field.value) return {};
  const char* text = static_cast<const char*>(field.value);
  return field.length < 0 ? std::string_view(text) : std::string_view(text, static_cast<size_t>(field.length));
}

GLogWriterOutput write_json(GLogLevelFlags level, const GLogField* fields, gsize n_fields, gpointer) {
  std::string_view domain, message;
  for (gsize i = 0; i < n_fields; ++i) {
    if (g_str_equal(fields[i].key, "GLIB_DOMAIN"))
      domain = field_text(fields[i]);
    else if (g_str_equal(fields[i].key, "MESSAGE"))
      message = field_text(fields[i]);
  }
  const std::string domain_name(domain);
  if (g_log_writer_default_would_drop(level, domain_name.empty() ? nullptr : domain_name.c_str()))
    return G_LOG_WRITER_HANDLED;
  const std::string line = json_log_line(g_get_real_time(), level, domain, message) + "\n";
  // One write per line, so lines of different threads never interleave.
  fwrite(line.data(), 1, line.size(), stderr);
  fflush(stderr);
  return G_LOG_WRITER_HANDLED;
}

}  // namespace

std::string mask_phone_number(std::string_view number) {
  constexpr size_t kShownHead = 5;
  constexpr size_t kShownTail = 3;
  if (number.size() <= kShownHead + kShownTail)
    return std::string(number.size(), '*');
  std::string masked(number);
  for (size_t i = kShownHead; i < masked.size() - kShownTail; ++i)
    masked[i] = '*';
  return masked;
}

std::string call_id_in(std::string_view message) {
  auto id_from = [&](size_t start) {
    size_t end = message.find_first_of(" :,;)", start);
    return std::string(message.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
  };
  constexpr std::string_view kPrefix = "call ";
  if (message.substr(0, kPrefix.size()) == kPrefix)
    return id_from(kPrefix.size());
  constexpr std::string_view kParameter = " call=";
  size_t at = message.find(kParameter);
  if (at != std::string_view::npos)
    return id_from(at + kParameter.size());
  return "";
}

std::string json_log_line(int64_t real_time_us, GLogLevelFlags level, std::string_view domain,
                          std::string_view message) {
  // json-glib needs valid UTF-8; a library may log anything.
  const std::string message_copy(message), domain_copy(domain);
  g_autofree char* text = g_utf8_make_valid(message_copy.c_str(), static_cast<gssize>(message_copy.size()));
  g_autofree char* domain_text = g_utf8_make_valid(domain_copy.c_str(), static_cast<gssize>(domain_copy.size()));
  const std::string call_id = call_id_in(text);
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "ts");
  json_builder_add_string_value(builder, iso8601_utc(real_time_us).c_str());
  json_builder_set_member_name(builder, "level");
  json_builder_add_string_value(builder, level_name(level));
  json_builder_set_member_name(builder, "domain");
  json_builder_add_string_value(builder, domain_text);
  json_builder_set_member_name(builder, "message");
  json_builder_add_string_value(builder, text);
  if (!call_id.empty()) {
    json_builder_set_member_name(builder, "call_id");
    json_builder_add_string_value(builder, call_id.c_str());
  }
  json_builder_end_object(builder);
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autofree char* line = json_to_string(root, FALSE);
  return line;
}

void use_json_logs() { g_log_set_writer_func(write_json, nullptr, nullptr); }

namespace {

void forward_element_warning(GstDebugCategory* category, GstDebugLevel level, const gchar*, const gchar*, gint,
                             GObject* object, GstDebugMessage* message, gpointer) {
  if (level > GST_LEVEL_WARNING)
    return;
  g_autofree gchar* path =
      object && GST_IS_OBJECT(object) ? gst_object_get_path_string(GST_OBJECT(object)) : nullptr;
  g_log("gstreamer", G_LOG_LEVEL_WARNING, "%s%s%s: %s", gst_debug_category_get_name(category), path ? " " : "",
        path ? path : "", gst_debug_message_get(message));
}

}  // namespace

void log_element_warnings() {
  if (g_getenv("GST_DEBUG"))
    return;
  gst_debug_remove_log_function(gst_debug_log_default);
  for (const char* category : {"openairealtime", "voiceopusenc", "voiceopusdec", "voicejitter"})
    gst_debug_set_threshold_for_name(category, GST_LEVEL_WARNING);
  // Parenthesised: the macro of that name compares the function with a void*.
  (gst_debug_add_log_function)(forward_element_warning, nullptr, nullptr);
}

}  // namespace vb
