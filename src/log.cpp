#include "log.h"

namespace vb {

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

}  // namespace vb
