// The ICE-lite responder's half of STUN (RFC 5389, RFC 8445): check a Binding
// Request's short-term credentials and build the Binding Success Response.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/socket.h>

namespace callers {

// The first byte of a STUN message is 0..3 (RFC 7983).
inline bool is_stun(const uint8_t *packet, size_t size) { return size >= 20 && packet[0] < 4; }

struct IceCredentials {
  std::string_view local_ufrag;
  std::string_view local_pwd;
  std::string_view remote_ufrag;  // empty until the answer arrived: not checked then
};

enum class StunVerdict {
  valid_request,  // a Binding Request with our credentials: answer it
  not_a_request,  // indications, responses: nothing to do
  invalid,        // malformed or bad credentials: `error` says why
};

struct StunCheck {
  StunVerdict verdict = StunVerdict::invalid;
  const char *error = "";
  bool use_candidate = false;
};

StunCheck check_binding_request(const uint8_t *packet, size_t size, const IceCredentials &credentials);

// Writes the Binding Success Response to `request` (which must have passed
// check_binding_request) into `out` (at least kStunResponseMax bytes): the
// transaction id, XOR-MAPPED-ADDRESS of `source`, MESSAGE-INTEGRITY keyed with
// our pwd and FINGERPRINT. Returns its size.
constexpr size_t kStunResponseMax = 20 + 24 + 24 + 8;
size_t build_binding_success(const uint8_t *request, const sockaddr_storage &source, std::string_view local_pwd,
                             uint8_t *out);

// The controlling agent's side, for the echo test peer: a Binding Request
// with USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY
// (keyed with the remote pwd) and FINGERPRINT. `username` is at most 255 bytes.
constexpr size_t kStunRequestMax = 20 + 4 + 256 + 8 + 12 + 4 + 24 + 8;
size_t build_binding_request(const uint8_t transaction_id[12], std::string_view username,
                             std::string_view remote_pwd, uint64_t tie_breaker, uint32_t priority, uint8_t *out);

// True for a Binding Success Response to `transaction_id` whose
// MESSAGE-INTEGRITY is keyed with `remote_pwd`.
bool is_binding_success(const uint8_t *packet, size_t size, const uint8_t transaction_id[12],
                        std::string_view remote_pwd);

}  // namespace callers
