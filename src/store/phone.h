// Phone numbers as the store keys them.
#pragma once

#include <optional>
#include <string>

namespace vb {

// The digits of a WhatsApp number ("+49 151 ..." or the webhook's wa_id
// "49151...") as stored: 4-20 digits, no '+'; nullopt for anything else.
// Spaces, dashes and parentheses are dropped.
std::optional<std::string> normalized_phone_number(const std::string& number);

}  // namespace vb
