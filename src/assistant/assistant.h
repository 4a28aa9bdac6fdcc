// What the AI is told about a call and who is calling. The tools it may use
// are in src/tools/.
#pragma once

#include <string>

namespace vb {

struct CallerContext {
  std::string number;        // from the webhook, never from the model
  std::string profile_name;  // contacts[].profile.name, may be empty
};

// The session instructions for one call: the operator's base instructions
// plus who is calling.
std::string session_instructions(const std::string& base_instructions, const CallerContext& caller);

// The tool with which the AI hangs up; the call itself handles it.
inline constexpr const char* kEndCallTool = "end_call";

}  // namespace vb
