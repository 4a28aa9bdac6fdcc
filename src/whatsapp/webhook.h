// Parsing of Meta's webhook payloads for the `calls` field. Pure functions: no I/O, no logging.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vb {

struct CallError {
  int code = 0;
  std::string message;
  std::string details;  // error_data.details, when given
};

struct CallEvent {
  enum class Kind { Connect, Terminate, Other } kind = Kind::Other;
  std::string event;                          // raw event name ("connect", "terminate", or unknown)
  std::string call_id, from, to, direction;   // direction "USER_INITIATED" | "BUSINESS_INITIATED" | ""
  int64_t timestamp = 0;                      // unix seconds (a string in the payload); 0 when missing
  std::string sdp_type, sdp;                  // from session{} (connect)
  std::string status;                         // terminate: COMPLETED/FAILED...
  int64_t duration_s = -1;                    // terminate of a picked-up call; -1 when missing
  std::vector<CallError> errors;              // from the call object, then value.errors
  std::string caller_name;                    // contacts[].profile.name matched by wa_id == from (or the only contact)
  std::string phone_number_id;                // value.metadata.phone_number_id
  std::string biz_opaque_callback_data;
};

// value.statuses[] item of type "call": progress of a business-initiated call.
struct CallStatus {
  std::string call_id, status, recipient_id, biz_opaque_callback_data;
  int64_t timestamp = 0;
  std::vector<CallError> errors;
};

struct WebhookBatch {
  std::vector<CallEvent> events;        // in payload order
  std::vector<CallStatus> statuses;     // in payload order
  std::vector<std::string> warnings;    // skipped items and ignored fields, each with its JSON path
};

// Either a batch (possibly empty) or, for a body that is not a webhook envelope at all, an error.
struct WebhookParseResult {
  std::optional<WebhookBatch> batch;
  std::string error;
};

// Reads every entry[].changes[] with field "calls"; other fields are ignored (noted in warnings).
WebhookParseResult parse_webhook(std::string_view body);

}  // namespace vb
