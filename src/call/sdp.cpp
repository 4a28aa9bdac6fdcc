#include "call/sdp.h"

#include <gst/sdp/sdp.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <strings.h>

namespace vb {
namespace {

struct SdpMessageFree {
  void operator()(GstSDPMessage* message) const { gst_sdp_message_free(message); }
};
using SdpMessagePtr = std::unique_ptr<GstSDPMessage, SdpMessageFree>;

// RFC 7587 §6.1: maxaveragebitrate is meaningful between 6 and 510 kbit/s.
constexpr int kMinOpusBitrate = 6000;
constexpr int kMaxOpusBitrate = 510000;

std::optional<int> parse_int(std::string_view text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Parses "v=0..." text; gst_sdp_message_parse_buffer accepts nearly anything,
// so the version line is what tells SDP from garbage.
SdpMessagePtr parse_sdp(std::string_view sdp, std::string* error) {
  if (sdp.substr(0, 3) != "v=0") {
    *error = "not an SDP document (it must start with \"v=0\")";
    return nullptr;
  }
  GstSDPMessage* raw = nullptr;
  gst_sdp_message_new(&raw);
  SdpMessagePtr message(raw);
  if (gst_sdp_message_parse_buffer(reinterpret_cast<const guint8*>(sdp.data()), sdp.size(), raw) !=
      GST_SDP_OK) {
    *error = "SDP could not be parsed";
    return nullptr;
  }
  return message;
}

unsigned count_media_attribute(const GstSDPMedia* media, const char* key) {
  unsigned count = 0;
  for (guint i = 0; i < gst_sdp_media_attributes_len(media); ++i)
    if (g_strcmp0(gst_sdp_media_get_attribute(media, i)->key, key) == 0)
      ++count;
  return count;
}

unsigned count_session_attribute(const GstSDPMessage* message, const char* key) {
  unsigned count = 0;
  for (guint i = 0; i < gst_sdp_message_attributes_len(message); ++i)
    if (g_strcmp0(gst_sdp_message_get_attribute(message, i)->key, key) == 0)
      ++count;
  return count;
}

// "111 opus/48000/2" -> 111 when the codec is Opus at 48 kHz.
std::optional<int> opus_payload_type(std::string_view rtpmap) {
  const size_t space = rtpmap.find(' ');
  if (space == std::string_view::npos)
    return std::nullopt;
  const std::string_view encoding = trim(rtpmap.substr(space + 1));
  const size_t slash = encoding.find('/');
  if (slash == std::string_view::npos || !iequals(encoding.substr(0, slash), "opus"))
    return std::nullopt;
  const std::string_view rate = encoding.substr(slash + 1, encoding.find('/', slash + 1) - slash - 1);
  if (rate != "48000")
    return std::nullopt;
  const auto pt = parse_int(rtpmap.substr(0, space));
  if (!pt || *pt < 0 || *pt > 127)
    return std::nullopt;
  return pt;
}

const char* rtpmap_for(const GstSDPMedia* media, int payload_type) {
  const std::string prefix = std::to_string(payload_type) + " ";
  for (guint i = 0; i < gst_sdp_media_attributes_len(media); ++i) {
    const GstSDPAttribute* attribute = gst_sdp_media_get_attribute(media, i);
    if (g_strcmp0(attribute->key, "rtpmap") == 0 && attribute->value &&
        g_str_has_prefix(attribute->value, prefix.c_str()))
      return attribute->value;
  }
  return nullptr;
}

// Applies "a=fmtp:<pt> k=v;k=v" to params; returns an error text or "".
std::string apply_fmtp(const GstSDPMedia* media, OpusParams& params) {
  const std::string prefix = std::to_string(params.payload_type) + " ";
  for (guint i = 0; i < gst_sdp_media_attributes_len(media); ++i) {
    const GstSDPAttribute* attribute = gst_sdp_media_get_attribute(media, i);
    if (g_strcmp0(attribute->key, "fmtp") != 0 || !attribute->value ||
        !g_str_has_prefix(attribute->value, prefix.c_str()))
      continue;
    std::string_view rest(attribute->value + prefix.size());
    while (!rest.empty()) {
      const size_t end = std::min(rest.find(';'), rest.size());
      const std::string_view pair = trim(rest.substr(0, end));
      rest.remove_prefix(std::min(end + 1, rest.size()));
      const size_t equals = pair.find('=');
      if (equals == std::string_view::npos)
        continue;
      const std::string_view key = trim(pair.substr(0, equals));
      const std::string_view value = trim(pair.substr(equals + 1));
      int* target = nullptr;
      if (key == "maxaveragebitrate")
        target = &params.max_average_bitrate;
      else if (key == "maxplaybackrate")
        target = &params.max_playback_rate;
      if (key == "useinbandfec") {
        params.use_inband_fec = value == "1";
      } else if (target) {
        const auto number = parse_int(value);
        if (!number || *number < 0)
          return "fmtp " + std::string(key) + ": expected a non-negative integer, got \"" +
                 std::string(value) + "\"";
        *target = *number;
      }
    }
  }
  return {};
}

}  // namespace

OfferParseResult parse_offer(std::string_view sdp) {
  OfferParseResult result;
  SdpMessagePtr message = parse_sdp(sdp, &result.error);
  if (!message)
    return result;
  const guint media_count = gst_sdp_message_medias_len(message.get());
  if (media_count == 0) {
    result.error = "offer has no m-line";
    return result;
  }
  if (media_count > 1) {
    result.error = "offer has " + std::to_string(media_count) +
                   " m-lines; only one audio m-line is supported";
    return result;
  }
  const GstSDPMedia* media = gst_sdp_message_get_media(message.get(), 0);
  if (g_strcmp0(gst_sdp_media_get_media(media), "audio") != 0) {
    result.error = std::string("offer has no audio m-line (m=") +
                   (gst_sdp_media_get_media(media) ? gst_sdp_media_get_media(media) : "") + ")";
    return result;
  }

  OpusParams params;
  for (guint i = 0; i < gst_sdp_media_attributes_len(media) && params.payload_type < 0; ++i) {
    const GstSDPAttribute* attribute = gst_sdp_media_get_attribute(media, i);
    if (g_strcmp0(attribute->key, "rtpmap") == 0 && attribute->value)
      params.payload_type = opus_payload_type(attribute->value).value_or(-1);
  }
  if (params.payload_type < 0) {
    result.error = "offer's audio m-line has no a=rtpmap for opus/48000";
    return result;
  }
  if (std::string error = apply_fmtp(media, params); !error.empty()) {
    result.error = std::move(error);
    return result;
  }
  if (const char* ptime = gst_sdp_media_get_attribute_val(media, "ptime")) {
    const auto value = parse_int(trim(ptime));
    if (!value || *value <= 0) {
      result.error = std::string("a=ptime: expected a positive integer, got \"") + ptime + "\"";
      return result;
    }
    params.ptime_ms = *value;
  }
  const char* mid = gst_sdp_media_get_attribute_val(media, "mid");
  if (!mid || !*mid) {
    result.error = "offer's audio m-line has no a=mid";
    return result;
  }
  params.mid = mid;
  params.remote_ice_lite = count_session_attribute(message.get(), "ice-lite") > 0 ||
                           count_media_attribute(media, "ice-lite") > 0;
  result.opus = std::move(params);
  return result;
}

EncoderSettings encoder_settings_for(const OpusParams& offer) {
  EncoderSettings settings{};
  settings.bitrate = offer.max_average_bitrate > 0
                         ? std::clamp(offer.max_average_bitrate, kMinOpusBitrate, kMaxOpusBitrate)
                         : kDefaultOpusBitrate;
  // The receiver cannot play back more than maxplaybackrate, so encoding a
  // wider band would only waste bits.
  const int rate = offer.max_playback_rate;
  if (rate <= 0)
    settings.bandwidth = kOpusBandwidthFullband;
  else if (rate <= 8000)
    settings.bandwidth = kOpusBandwidthNarrowband;
  else if (rate <= 12000)
    settings.bandwidth = kOpusBandwidthMediumband;
  else if (rate <= 16000)
    settings.bandwidth = kOpusBandwidthWideband;
  else if (rate <= 24000)
    settings.bandwidth = kOpusBandwidthSuperwideband;
  else
    settings.bandwidth = kOpusBandwidthFullband;
  settings.inband_fec = offer.use_inband_fec;
  const int ptime = offer.ptime_ms;
  settings.frame_size_ms = (ptime == 10 || ptime == 20 || ptime == 40 || ptime == 60) ? ptime : 20;
  return settings;
}

std::vector<std::string> check_answer(std::string_view answer_sdp, const OpusParams& offer) {
  std::vector<std::string> problems;
  for (size_t i = 0; i < answer_sdp.size(); ++i) {
    const bool bare_lf = answer_sdp[i] == '\n' && (i == 0 || answer_sdp[i - 1] != '\r');
    const bool bare_cr = answer_sdp[i] == '\r' && (i + 1 == answer_sdp.size() || answer_sdp[i + 1] != '\n');
    if (bare_lf || bare_cr) {
      problems.push_back("line endings are not all CRLF");
      break;
    }
  }
  if (answer_sdp.size() < 2 || answer_sdp.substr(answer_sdp.size() - 2) != "\r\n")
    problems.push_back("the last line does not end with CRLF");

  std::string error;
  SdpMessagePtr message = parse_sdp(answer_sdp, &error);
  if (!message) {
    problems.push_back(error);
    return problems;
  }
  if (count_session_attribute(message.get(), "ice-lite") > 0)
    problems.push_back("a=ice-lite present: we must be a full ICE agent");
  const guint media_count = gst_sdp_message_medias_len(message.get());
  if (media_count != 1) {
    problems.push_back("expected exactly one m-line, found " + std::to_string(media_count));
    if (media_count == 0)
      return problems;
  }
  const GstSDPMedia* media = gst_sdp_message_get_media(message.get(), 0);
  if (g_strcmp0(gst_sdp_media_get_media(media), "audio") != 0)
    problems.push_back("the m-line is not audio");

  const bool media_sendrecv = count_media_attribute(media, "sendrecv") > 0;
  const bool media_other_direction = count_media_attribute(media, "recvonly") > 0 ||
                                     count_media_attribute(media, "sendonly") > 0 ||
                                     count_media_attribute(media, "inactive") > 0;
  const bool session_sendrecv = count_session_attribute(message.get(), "sendrecv") > 0;
  if (media_other_direction || !(media_sendrecv || session_sendrecv))
    problems.push_back("direction is not a=sendrecv");

  const char* setup = gst_sdp_media_get_attribute_val(media, "setup");
  if (!setup)
    setup = gst_sdp_message_get_attribute_val(message.get(), "setup");
  if (g_strcmp0(setup, "active") != 0)
    problems.push_back(std::string("a=setup is \"") + (setup ? setup : "") + "\", expected \"active\"");

  std::vector<std::string> fingerprints;
  for (guint i = 0; i < gst_sdp_message_attributes_len(message.get()); ++i) {
    const GstSDPAttribute* attribute = gst_sdp_message_get_attribute(message.get(), i);
    if (g_strcmp0(attribute->key, "fingerprint") == 0)
      fingerprints.emplace_back(attribute->value ? attribute->value : "");
  }
  for (guint i = 0; i < gst_sdp_media_attributes_len(media); ++i) {
    const GstSDPAttribute* attribute = gst_sdp_media_get_attribute(media, i);
    if (g_strcmp0(attribute->key, "fingerprint") == 0)
      fingerprints.emplace_back(attribute->value ? attribute->value : "");
  }
  if (fingerprints.size() != 1)
    problems.push_back("expected exactly one a=fingerprint, found " + std::to_string(fingerprints.size()));
  else if (!g_str_has_prefix(fingerprints.front().c_str(), "sha-256 "))
    problems.push_back("a=fingerprint is not sha-256");

  if (count_media_attribute(media, "candidate") == 0)
    problems.push_back("no a=candidate line: candidates must be inline");

  const char* mid = gst_sdp_media_get_attribute_val(media, "mid");
  if (g_strcmp0(mid, offer.mid.c_str()) != 0)
    problems.push_back(std::string("a=mid is \"") + (mid ? mid : "") + "\", the offer's is \"" + offer.mid + "\"");

  bool pt_in_formats = false;
  for (guint i = 0; i < gst_sdp_media_formats_len(media); ++i)
    pt_in_formats |= parse_int(gst_sdp_media_get_format(media, i)) == offer.payload_type;
  const char* rtpmap = rtpmap_for(media, offer.payload_type);
  if (!pt_in_formats || !rtpmap || opus_payload_type(rtpmap) != offer.payload_type)
    problems.push_back("Opus is not answered on the offer's payload type " + std::to_string(offer.payload_type));
  return problems;
}

std::string rewrite_candidates_for_public_ip(std::string_view sdp, std::string_view public_ip) {
  const bool public_is_v6 = public_ip.find(':') != std::string_view::npos;
  std::string out;
  out.reserve(sdp.size() + 64);
  while (!sdp.empty()) {
    const size_t newline = sdp.find('\n');
    const size_t line_end = newline == std::string_view::npos ? sdp.size() : newline + 1;
    std::string_view line = sdp.substr(0, line_end);
    sdp.remove_prefix(line_end);
    std::string_view ending;
    const size_t body_len = line.find_first_of("\r\n");
    if (body_len != std::string_view::npos) {
      ending = line.substr(body_len);
      line = line.substr(0, body_len);
    }

    if (line.starts_with("a=candidate:") && line.find(" typ host") != std::string_view::npos) {
      // a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ host ...
      size_t start = 0;
      for (int field = 0; field < 4 && start != std::string_view::npos; ++field)
        start = line.find(' ', start + 1);
      const size_t end = start == std::string_view::npos ? start : line.find(' ', start + 1);
      if (end != std::string_view::npos) {
        const std::string_view address = line.substr(start + 1, end - start - 1);
        if ((address.find(':') != std::string_view::npos) == public_is_v6) {
          out.append(line.substr(0, start + 1)).append(public_ip).append(line.substr(end)).append(ending);
          continue;
        }
      }
    } else if (line.starts_with("c=IN IP") && line != "c=IN IP4 0.0.0.0" && line != "c=IN IP6 ::") {
      out.append(public_is_v6 ? "c=IN IP6 " : "c=IN IP4 ").append(public_ip).append(ending);
      continue;
    }
    out.append(line).append(ending);
  }
  return out;
}

}  // namespace vb
