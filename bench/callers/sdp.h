// The Meta-shaped offer we send and the parts of the server's answer we need.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace callers {

struct OfferParams {
  std::string local_ip;
  uint16_t port = 0;
  std::string ice_ufrag;
  std::string ice_pwd;
  std::string fingerprint;  // "AA:BB:..." sha-256 of our certificate
  uint32_t ssrc = 0;
  std::string cname;
  uint64_t session_id = 0;
};

// Meta's offer shape (tests/doubles/fake_meta/caller.py's whatsapp_offer), CRLF line endings.
std::string build_offer(const OfferParams &params);

using Sha256Fingerprint = std::array<uint8_t, 32>;

// The parts of a peer's description we use.
struct RemoteDescription {
  std::string ice_ufrag;
  std::string ice_pwd;
  Sha256Fingerprint fingerprint{};
  std::string setup;                    // a=setup value
  std::vector<std::string> candidates;  // "candidate:..." lines
};

// Parses ICE credentials, the sha-256 fingerprint, a=setup and candidates.
// Returns an empty string on success, otherwise why the description is
// unusable (no ufrag/pwd, no sha-256 fingerprint).
std::string parse_description(std::string_view sdp, RemoteDescription &description);

// The server's answer: parse_description, and a=setup must be active (we are
// the DTLS server).
std::string parse_answer(std::string_view sdp, RemoteDescription &answer);

// Random ice-chars (ALPHA / DIGIT / "+" / "/", RFC 8839) for ufrags and pwds.
std::string random_ice_string(size_t length);

// "AA:BB:..." (upper-case hex) of a digest.
std::string format_fingerprint(const uint8_t *digest, size_t size);

}  // namespace callers
