// Logging helpers shared by the server: what may appear in a log line, and
// the LOG_FORMAT=json writer.
#pragma once

#include <glib.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace vb {

// "+4915112345678" -> "+49151*****678": enough to tell callers apart in a log,
// not enough to identify one.
std::string mask_phone_number(std::string_view number);

// The WhatsApp call id a log line is about, or "": our lines about a call
// start with "call <id>" or carry "call=<id>" (Graph API requests).
std::string call_id_in(std::string_view message);

// One LOG_FORMAT=json line, without the newline:
// {"ts":"2026-01-31T12:00:00.123Z","level":"warning","domain":"voicebridge","message":"...","call_id":"..."}
// (call_id only when the message is about a call; domain "" when none).
std::string json_log_line(int64_t real_time_us, GLogLevelFlags level, std::string_view domain,
                          std::string_view message);

// Sends every GLib log line of the process (ours and the libraries', not
// GStreamer's GST_DEBUG output) to stderr as json_log_line()s. Lines GLib
// would drop (info/debug outside G_MESSAGES_DEBUG) are dropped too.
void use_json_logs();

// Unless GST_DEBUG is set (then GStreamer's own debug output applies as
// usual): sends the warnings and errors of our elements' debug categories
// (openairealtime, voiceopusenc, voiceopusdec, voicejitter) to the GLib log, domain
// "gstreamer", so that a malformed Realtime event, dropped caller audio or a
// late pacing tick shows in the server's log, in either LOG_FORMAT.
void log_element_warnings();

}  // namespace vb
