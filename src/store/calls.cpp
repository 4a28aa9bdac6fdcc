#include "store/calls.h"

#include <glib.h>
#include <json-glib/json-glib.h>

#include "log.h"
#include "store/phone.h"

namespace vb {
namespace {

std::string transcript_json(const CallRecord& call) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_array(builder);
  for (const auto& [role, text] : call.transcript) {
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "role");
    json_builder_add_string_value(builder, role.c_str());
    json_builder_set_member_name(builder, "text");
    json_builder_add_string_value(builder, text.c_str());
    json_builder_end_object(builder);
  }
  json_builder_end_array(builder);
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autofree char* text = json_to_string(root, FALSE);
  return text;
}

std::optional<std::string> timestamp_param(int64_t us) {
  if (us <= 0)
    return std::nullopt;
  return std::to_string(us);
}

// Why the record cannot be stored, or "" when it can.
std::string invalid_reason(const CallRecord& call, const std::optional<std::string>& number) {
  if (call.call_id.empty() || call.call_id.size() > 256)
    return "call id must be 1-256 bytes";
  if (call.direction != "inbound" && call.direction != "outbound")
    return "direction must be inbound or outbound, got \"" + call.direction + "\"";
  if (!number && !call.phone_number.empty())
    return "malformed phone number";
  if (call.started_us <= 0)
    return "no start time";
  if (call.input_tokens < 0 || call.output_tokens < 0)
    return "negative token counts";
  for (const auto& [role, text] : call.transcript)
    if (!g_utf8_validate(role.data(), static_cast<gssize>(role.size()), nullptr) ||
        !g_utf8_validate(text.data(), static_cast<gssize>(text.size()), nullptr))
      return "transcript is not UTF-8";
  return {};
}

}  // namespace

void record_call(Database& db, const CallRecord& call, std::function<void(bool ok)> done) {
  auto number = normalized_phone_number(call.phone_number);
  std::string invalid = invalid_reason(call, number);
  if (!invalid.empty()) {
    g_warning("call %s: not recorded: %s", call.call_id.c_str(), invalid.c_str());
    run_soon([done = std::move(done)] { done(false); });
    return;
  }
  // Times travel as microseconds since the epoch: exact, and independent of
  // the session's TimeZone and DateStyle.
  static constexpr const char* kUpsert = R"SQL(
    INSERT INTO calls (call_id, direction, phone_number, started_at, answered_at, ended_at, end_reason,
                       transcript, input_tokens, output_tokens)
    VALUES ($1, $2, $3,
            timestamptz 'epoch' + $4::bigint * interval '1 microsecond',
            timestamptz 'epoch' + $5::bigint * interval '1 microsecond',
            timestamptz 'epoch' + $6::bigint * interval '1 microsecond',
            left($7, 200), $8::jsonb, $9::bigint, $10::bigint)
    ON CONFLICT (call_id) DO UPDATE SET
      direction = EXCLUDED.direction, phone_number = EXCLUDED.phone_number, started_at = EXCLUDED.started_at,
      answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at, end_reason = EXCLUDED.end_reason,
      transcript = EXCLUDED.transcript, input_tokens = EXCLUDED.input_tokens,
      output_tokens = EXCLUDED.output_tokens)SQL";
  std::optional<std::string> end_reason;
  if (!call.end_reason.empty())
    end_reason = call.end_reason;
  db.query(kUpsert,
           {call.call_id, call.direction, number.value_or(""), timestamp_param(call.started_us),
            timestamp_param(call.answered_us), timestamp_param(call.ended_us), end_reason, transcript_json(call),
            std::to_string(call.input_tokens), std::to_string(call.output_tokens)},
           [call_id = call.call_id, done = std::move(done)](QueryResult result) {
             if (!result.ok())
               g_warning("call %s: not recorded: %s", call_id.c_str(), result.error().c_str());
             done(result.ok());
           });
}

}  // namespace vb
