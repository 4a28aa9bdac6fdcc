// Meta webhook payload signatures (X-Hub-Signature-256).
#pragma once

#include <string_view>

namespace vb {

// True when `header_value` is "sha256=" followed by the hex HMAC-SHA256 of the raw body keyed with the app secret
// (either hex case). Compares in constant time. A missing, empty or malformed header, or an empty secret, is false.
bool verify_webhook_signature(std::string_view app_secret, std::string_view raw_body, const char* header_value);

// Equality whose duration depends only on the length of `untrusted`, never on where the contents differ.
bool constant_time_equals(std::string_view secret, std::string_view untrusted);

}  // namespace vb
