#include "whatsapp/signature.h"

#include <glib.h>

#include <array>
#include <cstdint>
#include <cstring>

namespace vb {
namespace {

constexpr std::string_view kPrefix = "sha256=";
constexpr size_t kDigestLength = 32;

// 0-15 for a hex digit (either case), 0xff otherwise; no data-dependent branches.
unsigned hex_value(unsigned char c) {
  unsigned digit = c - '0';
  unsigned lower = (c | 0x20u) - 'a';
  unsigned is_digit = (digit < 10) ? 0xffu : 0;  // compiled to a compare, not a branch
  unsigned is_letter = (lower < 6) ? 0xffu : 0;
  return (is_digit & digit) | (is_letter & (lower + 10)) | (~(is_digit | is_letter) & 0xffu);
}

}  // namespace

bool verify_webhook_signature(std::string_view app_secret, std::string_view raw_body, const char* header_value) {
  // An empty secret would make every forger's job trivial: refuse rather than verify.
  if (app_secret.empty() || !header_value) return false;
  std::string_view header(header_value);
  if (header.size() != kPrefix.size() + 2 * kDigestLength || header.substr(0, kPrefix.size()) != kPrefix)
    return false;  // the length is public (always 64 hex digits), so this leaks nothing about the digest

  std::array<guint8, kDigestLength> expected{};
  gsize expected_length = expected.size();
  g_autoptr(GHmac) hmac = g_hmac_new(G_CHECKSUM_SHA256, reinterpret_cast<const guchar*>(app_secret.data()),
                                     app_secret.size());
  g_hmac_update(hmac, reinterpret_cast<const guchar*>(raw_body.data()), static_cast<gssize>(raw_body.size()));
  g_hmac_get_digest(hmac, expected.data(), &expected_length);

  // Accumulate every difference (and any invalid hex digit) without an early exit.
  std::string_view hex = header.substr(kPrefix.size());
  unsigned difference = 0;
  for (size_t i = 0; i < kDigestLength; ++i) {
    unsigned high = hex_value(static_cast<unsigned char>(hex[2 * i]));
    unsigned low = hex_value(static_cast<unsigned char>(hex[2 * i + 1]));
    difference |= ((high | low) & 0xf0u);
    difference |= ((high << 4) | low) ^ expected[i];
  }
  return difference == 0;
}

bool constant_time_equals(std::string_view secret, std::string_view untrusted) {
  unsigned difference = secret.size() != untrusted.size() ? 1u : 0u;
  for (size_t i = 0; i < untrusted.size(); ++i) {
    // Past the secret's end, compare against a byte of the secret (or 0) so the loop shape never changes.
    unsigned char expected = secret.empty() ? 0 : static_cast<unsigned char>(secret[i % secret.size()]);
    difference |= expected ^ static_cast<unsigned char>(untrusted[i]);
  }
  return difference == 0 && !secret.empty();
}

}  // namespace vb
