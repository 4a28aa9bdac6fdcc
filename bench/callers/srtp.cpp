// The low-level SHA-1 functions (deprecated in OpenSSL 3, still supported)
// let us copy precomputed HMAC states by value: EVP_MD_CTX_copy allocates.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "srtp.h"

#include <cstring>
#include <openssl/crypto.h>

#include "rtp.h"

namespace callers {
namespace {

constexpr size_t kAuthKeySize = 20;
constexpr size_t kReplayWindow = 64;
// RFC 3711 §4.3.1 labels for SRTP (RTCP's 3..5 are not needed).
constexpr uint8_t kLabelEncryption = 0, kLabelAuthentication = 1, kLabelSalt = 2;

// AES-128 in counter mode from `iv` over `data` (in place).
bool aes_ctr(EVP_CIPHER_CTX *cipher, const uint8_t iv[16], uint8_t *data, size_t size) {
  int written = 0;
  return EVP_EncryptInit_ex(cipher, nullptr, nullptr, nullptr, iv) == 1 &&
         EVP_EncryptUpdate(cipher, data, &written, data, static_cast<int>(size)) == 1;
}

// RFC 3711 §4.3.3 AES-CM PRF with index 0: x = label at octet 7 XOR master salt.
bool prf(const uint8_t *master, uint8_t label, uint8_t *out, size_t size) {
  EVP_CIPHER_CTX *cipher = EVP_CIPHER_CTX_new();
  uint8_t iv[16] = {};
  memcpy(iv, master + SrtpKeys::kKeySize, SrtpKeys::kSaltSize);
  iv[7] ^= label;
  memset(out, 0, size);
  const bool ok = cipher && EVP_EncryptInit_ex(cipher, EVP_aes_128_ctr(), nullptr, master, nullptr) == 1 &&
                  aes_ctr(cipher, iv, out, size);
  EVP_CIPHER_CTX_free(cipher);
  return ok;
}

}  // namespace

SrtpSession::~SrtpSession() {
  EVP_CIPHER_CTX_free(outbound_.cipher);
  EVP_CIPHER_CTX_free(inbound_.cipher);
  OPENSSL_cleanse(&outbound_, sizeof outbound_);
  OPENSSL_cleanse(&inbound_, sizeof inbound_);
}

bool SrtpSession::start(const SrtpKeys &keys, std::string &error) {
  started_ = derive(keys.outbound, outbound_, error) && derive(keys.inbound, inbound_, error);
  return started_;
}

bool SrtpSession::derive(const uint8_t *master, Keys &keys, std::string &error) {
  uint8_t session_key[SrtpKeys::kKeySize], auth_key[kAuthKeySize];
  bool ok = prf(master, kLabelEncryption, session_key, sizeof session_key) &&
            prf(master, kLabelAuthentication, auth_key, sizeof auth_key) &&
            prf(master, kLabelSalt, keys.salt, sizeof keys.salt);
  keys.cipher = EVP_CIPHER_CTX_new();
  ok = ok && keys.cipher && EVP_EncryptInit_ex(keys.cipher, EVP_aes_128_ctr(), nullptr, session_key, nullptr) == 1;
  // HMAC (RFC 2104) with the pads absorbed once.
  uint8_t pad[64];
  memset(pad, 0x36, sizeof pad);
  for (size_t i = 0; i < kAuthKeySize; ++i) pad[i] ^= auth_key[i];
  ok = ok && SHA1_Init(&keys.hmac_inner) == 1 && SHA1_Update(&keys.hmac_inner, pad, sizeof pad) == 1;
  memset(pad, 0x5c, sizeof pad);
  for (size_t i = 0; i < kAuthKeySize; ++i) pad[i] ^= auth_key[i];
  ok = ok && SHA1_Init(&keys.hmac_outer) == 1 && SHA1_Update(&keys.hmac_outer, pad, sizeof pad) == 1;
  OPENSSL_cleanse(session_key, sizeof session_key);
  OPENSSL_cleanse(auth_key, sizeof auth_key);
  OPENSSL_cleanse(pad, sizeof pad);
  if (!ok) error = "deriving the SRTP session keys failed (OpenSSL)";
  return ok;
}

// RFC 3711 §4.2: HMAC-SHA1(auth key, authenticated portion || ROC), first 80 bits.
void SrtpSession::tag(const Keys &keys, const uint8_t *packet, size_t size, uint32_t roc, uint8_t out[kTagSize]) {
  const uint8_t roc_bytes[4] = {static_cast<uint8_t>(roc >> 24), static_cast<uint8_t>(roc >> 16),
                                static_cast<uint8_t>(roc >> 8), static_cast<uint8_t>(roc)};
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA_CTX hash = keys.hmac_inner;
  SHA1_Update(&hash, packet, size);
  SHA1_Update(&hash, roc_bytes, sizeof roc_bytes);
  SHA1_Final(digest, &hash);
  hash = keys.hmac_outer;
  SHA1_Update(&hash, digest, sizeof digest);
  SHA1_Final(digest, &hash);
  memcpy(out, digest, kTagSize);
}

// RFC 3711 §4.1.1: IV = (salt << 16) XOR (SSRC << 64) XOR (index << 16).
bool SrtpSession::crypt(Keys &keys, uint32_t ssrc, uint64_t index, uint8_t *data, size_t size) {
  uint8_t iv[16] = {};
  memcpy(iv, keys.salt, sizeof keys.salt);
  for (int i = 0; i < 4; ++i) iv[4 + i] ^= static_cast<uint8_t>(ssrc >> (24 - 8 * i));
  for (int i = 0; i < 6; ++i) iv[8 + i] ^= static_cast<uint8_t>(index >> (40 - 8 * i));
  return aes_ctr(keys.cipher, iv, data, size);
}

bool SrtpSession::protect(uint8_t *packet, size_t &size) {
  const size_t header = started_ ? rtp_header_size(packet, size) : 0;
  if (header == 0) return false;
  const uint16_t sequence = read16(packet + 2);
  if (sent_any_ && sequence < last_sent_sequence_ && last_sent_sequence_ - sequence > 0x8000) ++send_roc_;
  sent_any_ = true;
  last_sent_sequence_ = sequence;
  const uint64_t index = uint64_t{send_roc_} << 16 | sequence;
  if (!crypt(outbound_, read32(packet + 8), index, packet + header, size - header)) return false;
  tag(outbound_, packet, size, send_roc_, packet + size);
  size += kTagSize;
  return true;
}

bool SrtpSession::unprotect(uint8_t *packet, size_t &size) {
  if (!started_ || size < kRtpHeaderSize + kTagSize) return false;
  const size_t body = size - kTagSize;
  const size_t header = rtp_header_size(packet, body);
  if (header == 0) return false;
  const uint32_t ssrc = read32(packet + 8);
  const uint16_t sequence = read16(packet + 2);
  const bool same_stream = receiving_ && ssrc == receive_ssrc_;

  // RFC 3711 Appendix A: the ROC guess from the highest sequence number seen.
  uint32_t roc = 0;
  if (same_stream) {
    const uint32_t roc_now = static_cast<uint32_t>(highest_index_ >> 16);
    const uint16_t highest_sequence = static_cast<uint16_t>(highest_index_);
    roc = roc_now;
    if (highest_sequence < 0x8000) {
      if (sequence > highest_sequence && sequence - highest_sequence > 0x8000 && roc_now > 0) roc = roc_now - 1;
    } else if (sequence < highest_sequence - 0x8000) {
      roc = roc_now + 1;
    }
  }
  const uint64_t index = uint64_t{roc} << 16 | sequence;
  if (same_stream && index <= highest_index_) {
    const uint64_t age = highest_index_ - index;
    if (age >= kReplayWindow || (replay_window_ >> age & 1)) return false;
  }
  uint8_t expected[kTagSize];
  tag(inbound_, packet, body, roc, expected);
  if (CRYPTO_memcmp(expected, packet + body, kTagSize) != 0) return false;
  if (!crypt(inbound_, ssrc, index, packet + header, body - header)) return false;

  if (!same_stream) {
    receiving_ = true;
    receive_ssrc_ = ssrc;
    highest_index_ = index;
    replay_window_ = 1;
  } else if (index > highest_index_) {
    const uint64_t shift = index - highest_index_;
    replay_window_ = (shift >= kReplayWindow ? 0 : replay_window_ << shift) | 1;
    highest_index_ = index;
  } else {
    replay_window_ |= uint64_t{1} << (highest_index_ - index);
  }
  size = body;
  return true;
}

}  // namespace callers
