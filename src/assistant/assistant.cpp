#include "assistant/assistant.h"

namespace vb {
namespace {

// The profile name is chosen by the caller: keep it one short line so it
// cannot smuggle instructions into the prompt.
std::string printable_name(const std::string& name) {
  constexpr size_t kMaxNameBytes = 64;
  std::string clean;
  for (char c : name) {
    if (clean.size() >= kMaxNameBytes)
      break;
    clean += (static_cast<unsigned char>(c) < 0x20 || c == '"') ? ' ' : c;
  }
  return clean;
}

}  // namespace

std::string session_instructions(const std::string& base_instructions, const CallerContext& caller) {
  std::string text = base_instructions;
  text += "\n\nYou are on a WhatsApp voice call.";
  if (!caller.profile_name.empty())
    text += " The caller's WhatsApp profile name is \"" + printable_name(caller.profile_name) + "\".";
  text +=
      " Keep answers short and spoken-friendly. When the caller says goodbye or asks to hang up, "
      "say a brief goodbye and then call end_call.";
  return text;
}

}  // namespace vb
