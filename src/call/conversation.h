// What an AI call said and cost, whichever side placed it: the transcript and
// token usage the openairealtime element reports, saved with the call's row
// when it ends.
#pragma once

#include <glib.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "store/calls.h"

namespace vb {

class Conversation {
 public:
  void add_line(std::string role, std::string text) { transcript_.emplace_back(std::move(role), std::move(text)); }
  void add_usage(int64_t input_tokens, int64_t output_tokens) {
    input_tokens_ += input_tokens;
    output_tokens_ += output_tokens;
  }
  // Saves `row` (who, when, why it ended) with what was said and spent.
  void save(Database& db, CallRecord row) const {
    row.transcript = transcript_;
    row.input_tokens = input_tokens_;
    row.output_tokens = output_tokens_;
    record_call(db, row, [call_id = row.call_id](bool ok) {
      if (!ok)
        g_warning("call %s: its record was not saved", call_id.c_str());
    });
  }

 private:
  std::vector<std::pair<std::string, std::string>> transcript_;  // (role, text) in order
  int64_t input_tokens_ = 0;  // summed over the AI's responses
  int64_t output_tokens_ = 0;
};

}  // namespace vb
