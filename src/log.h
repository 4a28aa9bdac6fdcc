// Logging helpers shared by the server: what may appear in a log line.
#pragma once

#include <string>
#include <string_view>

namespace vb {

// "+4915112345678" -> "+49151*****678": enough to tell callers apart in a log,
// not enough to identify one.
std::string mask_phone_number(std::string_view number);

}  // namespace vb
