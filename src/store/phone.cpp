#include "store/phone.h"

namespace vb {

std::optional<std::string> normalized_phone_number(const std::string& number) {
  std::string digits;
  for (size_t i = 0; i < number.size(); ++i) {
    char c = number[i];
    if (c >= '0' && c <= '9')
      digits += c;
    else if (c == '+' && digits.empty() && i == number.find_first_not_of(' '))
      continue;
    else if (c != ' ' && c != '-' && c != '(' && c != ')')
      return std::nullopt;
  }
  if (digits.size() < 4 || digits.size() > 20)
    return std::nullopt;
  return digits;
}

}  // namespace vb
