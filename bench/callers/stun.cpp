#include "stun.h"

#include <array>
#include <cstring>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "big_endian.h"

namespace callers {
namespace {

constexpr uint32_t kMagicCookie = 0x2112A442;
constexpr uint32_t kFingerprintXor = 0x5354554e;
constexpr uint16_t kBindingRequest = 0x0001;
constexpr uint16_t kBindingSuccess = 0x0101;
constexpr uint16_t kAttrUsername = 0x0006;
constexpr uint16_t kAttrMessageIntegrity = 0x0008;
constexpr uint16_t kAttrXorMappedAddress = 0x0020;
constexpr uint16_t kAttrPriority = 0x0024;
constexpr uint16_t kAttrUseCandidate = 0x0025;
constexpr uint16_t kAttrIceControlling = 0x802A;
constexpr uint16_t kAttrFingerprint = 0x8028;
constexpr size_t kHeaderSize = 20;
constexpr size_t kHmacSize = 20;

const std::array<uint32_t, 256> &crc32_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

uint32_t crc32(const uint8_t *data, size_t size) {
  const auto &table = crc32_table();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

// HMAC-SHA1 of message[0, end) as if the header's length field said
// `length_field` (RFC 5389 §15.4: the length covers MESSAGE-INTEGRITY).
void integrity(const uint8_t *message, size_t end, uint16_t length_field, std::string_view key,
               uint8_t out[kHmacSize]) {
  uint8_t header[kHeaderSize];
  memcpy(header, message, kHeaderSize);
  write16(header + 2, length_field);
  // Two updates avoid copying the message; HMAC_CTX is deprecated in OpenSSL 3.
  EVP_MAC *mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX *context = EVP_MAC_CTX_new(mac);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", const_cast<char *>("SHA1"), 0),
                         OSSL_PARAM_construct_end()};
  size_t size = 0;
  EVP_MAC_init(context, reinterpret_cast<const unsigned char *>(key.data()), key.size(), params);
  EVP_MAC_update(context, header, kHeaderSize);
  EVP_MAC_update(context, message + kHeaderSize, end - kHeaderSize);
  EVP_MAC_final(context, out, &size, kHmacSize);
  EVP_MAC_CTX_free(context);
  EVP_MAC_free(mac);
}

// Appends MESSAGE-INTEGRITY and FINGERPRINT at `at`, fixing the header's
// length; returns the message size.
size_t finish_message(uint8_t *out, size_t at, std::string_view key) {
  write16(out + at, kAttrMessageIntegrity);
  write16(out + at + 2, kHmacSize);
  integrity(out, at, static_cast<uint16_t>(at + 4 + kHmacSize - kHeaderSize), key, out + at + 4);
  at += 4 + kHmacSize;
  write16(out + 2, static_cast<uint16_t>(at + 8 - kHeaderSize));  // final length, FINGERPRINT included
  write16(out + at, kAttrFingerprint);
  write16(out + at + 2, 4);
  write32(out + at + 4, crc32(out, at) ^ kFingerprintXor);
  return at + 8;
}

}  // namespace

StunCheck check_binding_request(const uint8_t *packet, size_t size, const IceCredentials &credentials) {
  StunCheck check;
  if (!is_stun(packet, size) || read32(packet + 4) != kMagicCookie) {
    check.error = "not a STUN message";
    return check;
  }
  const size_t length = read16(packet + 2);
  if (length + kHeaderSize != size || length % 4 != 0) {
    check.error = "STUN length does not match the datagram";
    return check;
  }
  if (read16(packet) != kBindingRequest) {
    check.verdict = StunVerdict::not_a_request;
    return check;
  }
  std::string_view username;
  size_t integrity_at = 0;  // offset of the MESSAGE-INTEGRITY attribute
  for (size_t at = kHeaderSize; at + 4 <= size;) {
    const uint16_t type = read16(packet + at);
    const size_t value_size = read16(packet + at + 2);
    const size_t next = at + 4 + ((value_size + 3) & ~size_t{3});
    if (next > size) {
      check.error = "STUN attribute runs past the message";
      return check;
    }
    if (integrity_at != 0 && type != kAttrFingerprint) {
      check.error = "STUN attribute after MESSAGE-INTEGRITY";
      return check;
    }
    if (type == kAttrUsername) {
      username = {reinterpret_cast<const char *>(packet + at + 4), value_size};
    } else if (type == kAttrUseCandidate) {
      check.use_candidate = true;
    } else if (type == kAttrMessageIntegrity) {
      if (value_size != kHmacSize) {
        check.error = "bad MESSAGE-INTEGRITY size";
        return check;
      }
      integrity_at = at;
    } else if (type == kAttrFingerprint) {
      if (value_size != 4 || next != size) {
        check.error = "bad FINGERPRINT";
        return check;
      }
      const uint32_t expected = crc32(packet, at) ^ kFingerprintXor;
      if (read32(packet + at + 4) != expected) {
        check.error = "FINGERPRINT mismatch";
        return check;
      }
    }
    at = next;
  }
  const size_t colon = username.find(':');
  if (colon == std::string_view::npos || username.substr(0, colon) != credentials.local_ufrag) {
    check.error = "USERNAME does not start with our ufrag";
    return check;
  }
  if (!credentials.remote_ufrag.empty() && username.substr(colon + 1) != credentials.remote_ufrag) {
    check.error = "USERNAME does not end with the answer's ufrag";
    return check;
  }
  if (integrity_at == 0) {
    check.error = "no MESSAGE-INTEGRITY";
    return check;
  }
  uint8_t expected[kHmacSize];
  integrity(packet, integrity_at, static_cast<uint16_t>(integrity_at + 4 + kHmacSize - kHeaderSize),
            credentials.local_pwd, expected);
  if (CRYPTO_memcmp(expected, packet + integrity_at + 4, kHmacSize) != 0) {
    check.error = "MESSAGE-INTEGRITY mismatch (not our ice-pwd)";
    return check;
  }
  check.verdict = StunVerdict::valid_request;
  return check;
}

size_t build_binding_success(const uint8_t *request, const sockaddr_storage &source, std::string_view local_pwd,
                             uint8_t *out) {
  write16(out, kBindingSuccess);
  memcpy(out + 4, request + 4, 16);  // magic cookie and transaction id
  size_t at = kHeaderSize;

  write16(out + at, kAttrXorMappedAddress);
  if (source.ss_family == AF_INET6) {
    const auto &v6 = reinterpret_cast<const sockaddr_in6 &>(source);
    write16(out + at + 2, 20);
    write16(out + at + 4, 0x0002);
    write16(out + at + 6, ntohs(v6.sin6_port) ^ (kMagicCookie >> 16));
    for (size_t i = 0; i < 16; ++i) out[at + 8 + i] = v6.sin6_addr.s6_addr[i] ^ out[4 + i];
    at += 4 + 20;
  } else {
    const auto &v4 = reinterpret_cast<const sockaddr_in &>(source);
    write16(out + at + 2, 8);
    write16(out + at + 4, 0x0001);
    write16(out + at + 6, ntohs(v4.sin_port) ^ (kMagicCookie >> 16));
    write32(out + at + 8, ntohl(v4.sin_addr.s_addr) ^ kMagicCookie);
    at += 4 + 8;
  }

  return finish_message(out, at, local_pwd);
}

size_t build_binding_request(const uint8_t transaction_id[12], std::string_view username,
                             std::string_view remote_pwd, uint64_t tie_breaker, uint32_t priority, uint8_t *out) {
  username = username.substr(0, 255);
  write16(out, kBindingRequest);
  write32(out + 4, kMagicCookie);
  memcpy(out + 8, transaction_id, 12);
  size_t at = kHeaderSize;
  write16(out + at, kAttrUsername);
  write16(out + at + 2, static_cast<uint16_t>(username.size()));
  memcpy(out + at + 4, username.data(), username.size());
  const size_t padded = (username.size() + 3) & ~size_t{3};
  memset(out + at + 4 + username.size(), 0, padded - username.size());
  at += 4 + padded;
  write16(out + at, kAttrPriority);
  write16(out + at + 2, 4);
  write32(out + at + 4, priority);
  at += 8;
  write16(out + at, kAttrIceControlling);
  write16(out + at + 2, 8);
  write32(out + at + 4, static_cast<uint32_t>(tie_breaker >> 32));
  write32(out + at + 8, static_cast<uint32_t>(tie_breaker));
  at += 12;
  write16(out + at, kAttrUseCandidate);
  write16(out + at + 2, 0);
  at += 4;
  return finish_message(out, at, remote_pwd);
}

bool is_binding_success(const uint8_t *packet, size_t size, const uint8_t transaction_id[12],
                        std::string_view remote_pwd) {
  if (!is_stun(packet, size) || read16(packet) != kBindingSuccess || read32(packet + 4) != kMagicCookie ||
      memcmp(packet + 8, transaction_id, 12) != 0 || read16(packet + 2) + kHeaderSize != size)
    return false;
  for (size_t at = kHeaderSize; at + 4 <= size;) {
    const uint16_t type = read16(packet + at);
    const size_t value_size = read16(packet + at + 2);
    if (type == kAttrMessageIntegrity && value_size == kHmacSize && at + 4 + kHmacSize <= size) {
      uint8_t expected[kHmacSize];
      integrity(packet, at, static_cast<uint16_t>(at + 4 + kHmacSize - kHeaderSize), remote_pwd, expected);
      return CRYPTO_memcmp(expected, packet + at + 4, kHmacSize) == 0;
    }
    at += 4 + ((value_size + 3) & ~size_t{3});
  }
  return false;
}

}  // namespace callers
