// Pure functions over SDP text: what WhatsApp's offer asks for, how our Opus
// encoder must be set up for it, whether our answer is one Meta accepts, and
// the 1:1 NAT rewrite of candidate addresses.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vb {

// What the offer's audio m-line says about Opus (RFC 7587 fmtp parameters).
struct OpusParams {
  int payload_type = -1;        // from a=rtpmap:<pt> opus/48000/2 (any case)
  int max_average_bitrate = 0;  // fmtp maxaveragebitrate, 0 = absent
  int max_playback_rate = 0;    // fmtp maxplaybackrate, 0 = absent
  bool use_inband_fec = false;  // fmtp useinbandfec=1
  int ptime_ms = 20;            // a=ptime (20 when absent)
  std::string mid;              // a=mid of the audio m-line ("audio" for Meta)
  bool remote_ice_lite = false; // a=ice-lite (Meta is ICE-lite, so we control)
};

struct OfferParseResult {
  std::optional<OpusParams> opus;
  std::string error;  // set when opus is empty
};

// Reads a WhatsApp-style offer: exactly one audio m-line carrying Opus/48000.
OfferParseResult parse_offer(std::string_view sdp);

// opusenc settings honouring the offer's fmtp.
struct EncoderSettings {
  int bitrate;        // bits per second
  int bandwidth;      // OPUS_BANDWIDTH_* value (1101 narrowband ... 1105 fullband)
  bool inband_fec;
  int frame_size_ms;  // 10, 20, 40 or 60
};

inline constexpr int kOpusBandwidthNarrowband = 1101;
inline constexpr int kOpusBandwidthMediumband = 1102;
inline constexpr int kOpusBandwidthWideband = 1103;
inline constexpr int kOpusBandwidthSuperwideband = 1104;
inline constexpr int kOpusBandwidthFullband = 1105;
inline constexpr int kDefaultOpusBitrate = 20000;

EncoderSettings encoder_settings_for(const OpusParams& offer);

// Everything wrong with an answer we are about to send to Meta, each problem
// as one readable sentence; empty means the answer is good.
std::vector<std::string> check_answer(std::string_view answer_sdp, const OpusParams& offer);

// 1:1 NAT: host candidates of the public IP's address family (and a c= line
// that is not the 0.0.0.0 placeholder) get public_ip as their address.
// Everything else, line endings included, is kept byte for byte.
std::string rewrite_candidates_for_public_ip(std::string_view sdp, std::string_view public_ip);

}  // namespace vb
