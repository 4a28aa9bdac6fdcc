// SRTP with the SRTP_AES128_CM_SHA1_80 profile (RFC 3711: AES-128 counter
// mode, HMAC-SHA1 tag of 80 bits) on OpenSSL. RTP only: RTCP is never sent and
// received RTCP is dropped unread.
//
// Not libsrtp2: Debian builds it on NSS, which creates and frees a PKCS#11
// context per packet (7 us a packet here, with malloc/free); this costs 0.4 us
// and allocates nothing per packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace callers {

// SRTP master keys and salts from the DTLS exporter, split by direction.
struct SrtpKeys {
  static constexpr size_t kKeySize = 16, kSaltSize = 14, kSize = kKeySize + kSaltSize;
  uint8_t outbound[kSize];  // our DTLS role's key + salt
  uint8_t inbound[kSize];   // the peer's
};

class SrtpSession {
 public:
  static constexpr size_t kTagSize = 10;

  SrtpSession() = default;
  SrtpSession(const SrtpSession &) = delete;
  SrtpSession &operator=(const SrtpSession &) = delete;
  ~SrtpSession();

  // Derives the session keys (RFC 3711 §4.3, key derivation rate 0).
  bool start(const SrtpKeys &keys, std::string &error);

  // Encrypts an RTP packet in place and appends the tag: `packet` needs
  // kTagSize bytes of room after `size`.
  bool protect(uint8_t *packet, size_t &size);
  // Authenticates, checks replay and decrypts in place; `size` loses the tag.
  // False for a bad tag, a replayed or too old packet, or a malformed header.
  bool unprotect(uint8_t *packet, size_t &size);

 private:
  // One direction's session keys.
  struct Keys {
    EVP_CIPHER_CTX *cipher = nullptr;  // AES-128-CTR with the session key
    SHA_CTX hmac_inner{};              // SHA-1 states after the HMAC pads
    SHA_CTX hmac_outer{};
    uint8_t salt[SrtpKeys::kSaltSize]{};
  };

  static bool derive(const uint8_t *master, Keys &keys, std::string &error);
  static void tag(const Keys &keys, const uint8_t *packet, size_t size, uint32_t roc, uint8_t out[kTagSize]);
  static bool crypt(Keys &keys, uint32_t ssrc, uint64_t index, uint8_t *data, size_t size);

  Keys outbound_;
  Keys inbound_;
  bool started_ = false;

  // Sender: the rollover counter follows our sequence numbers.
  bool sent_any_ = false;
  uint16_t last_sent_sequence_ = 0;
  uint32_t send_roc_ = 0;

  // Receiver: one SSRC at a time (a new SSRC restarts the state).
  bool receiving_ = false;
  uint32_t receive_ssrc_ = 0;
  uint64_t highest_index_ = 0;  // ROC << 16 | SEQ of the newest authenticated packet
  uint64_t replay_window_ = 0;  // bit i: highest_index_ - i was received
};

}  // namespace callers
