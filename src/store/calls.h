// The calls table: one row per finished call, with its transcript.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "store/database.h"

namespace vb {

struct CallRecord {
  std::string call_id;
  std::string direction;     // "inbound" or "outbound"
  std::string phone_number;  // the caller's wa_id from the webhook; may be empty (username-only users)
  std::string end_reason;
  int64_t started_us = 0;    // g_get_real_time() values; 0 = did not happen
  int64_t answered_us = 0;
  int64_t ended_us = 0;
  std::vector<std::pair<std::string, std::string>> transcript;  // (role, text) in order
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
};

// Writes (or, for a call id already recorded, replaces) the call's row.
// `done(false)` after a log line when the record is invalid or the database
// refused or is unavailable.
void record_call(Database& db, const CallRecord& call, std::function<void(bool ok)> done);

}  // namespace vb
