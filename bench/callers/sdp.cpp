#include "sdp.h"

#include <cctype>
#include <cstdio>
#include <openssl/rand.h>

namespace callers {
namespace {

bool starts_with_ci(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "AA:BB:..." with exactly 32 bytes.
bool parse_fingerprint_hex(std::string_view text, Sha256Fingerprint &out) {
  if (text.size() != out.size() * 3 - 1) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    const int high = hex_value(text[i * 3]), low = hex_value(text[i * 3 + 1]);
    if (high < 0 || low < 0 || (i + 1 < out.size() && text[i * 3 + 2] != ':')) return false;
    out[i] = static_cast<uint8_t>(high << 4 | low);
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  return text;
}

}  // namespace

std::string build_offer(const OfferParams &p) {
  const std::string port = std::to_string(p.port);
  std::string sdp;
  sdp.reserve(1200);
  auto line = [&sdp](std::string_view text) {
    sdp += text;
    sdp += "\r\n";
  };
  line("v=0");
  line("o=- " + std::to_string(p.session_id) + " 2 IN IP4 127.0.0.1");
  line("s=-");
  line("t=0 0");
  line("a=group:BUNDLE audio");
  line("a=ice-lite");
  line("a=msid-semantic: WMS *");
  line("m=audio " + port + " UDP/TLS/RTP/SAVPF 111 126");
  line("c=IN IP4 " + p.local_ip);
  line("a=rtcp:" + port + " IN IP4 " + p.local_ip);
  line("a=candidate:1 1 udp 2130706431 " + p.local_ip + " " + port + " typ host generation 0");
  line("a=ice-ufrag:" + p.ice_ufrag);
  line("a=ice-pwd:" + p.ice_pwd);
  line("a=fingerprint:sha-256 " + p.fingerprint);
  line("a=setup:actpass");
  line("a=mid:audio");
  line("a=sendrecv");
  line("a=rtcp-mux");
  line("a=rtpmap:111 opus/48000/2");
  line("a=rtcp-fb:111 transport-cc");
  line("a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;"
       "useinbandfec=1");
  line("a=rtpmap:126 telephone-event/8000");
  line("a=maxptime:20");
  line("a=ptime:20");
  line("a=ssrc:" + std::to_string(p.ssrc) + " cname:" + p.cname);
  return sdp;
}

std::string parse_description(std::string_view sdp, RemoteDescription &description) {
  bool have_fingerprint = false;
  std::string other_fingerprint;
  while (!sdp.empty()) {
    const size_t end = sdp.find('\n');
    const std::string_view line = trim(sdp.substr(0, end));
    sdp = end == std::string_view::npos ? std::string_view{} : sdp.substr(end + 1);
    // First occurrence wins: with one bundled m-line, session and media level agree.
    if (line.starts_with("a=ice-ufrag:") && description.ice_ufrag.empty()) {
      description.ice_ufrag = trim(line.substr(12));
    } else if (line.starts_with("a=ice-pwd:") && description.ice_pwd.empty()) {
      description.ice_pwd = trim(line.substr(10));
    } else if (line.starts_with("a=setup:") && description.setup.empty()) {
      description.setup = trim(line.substr(8));
    } else if (line.starts_with("a=candidate:")) {
      description.candidates.emplace_back(line.substr(2));
    } else if (line.starts_with("a=fingerprint:") && !have_fingerprint) {
      const std::string_view value = trim(line.substr(14));
      if (starts_with_ci(value, "sha-256 ")) {
        if (!parse_fingerprint_hex(trim(value.substr(8)), description.fingerprint))
          return "malformed a=fingerprint:sha-256";
        have_fingerprint = true;
      } else {
        other_fingerprint = value.substr(0, value.find(' '));
      }
    }
  }
  if (description.ice_ufrag.empty() || description.ice_pwd.empty()) return "no a=ice-ufrag/a=ice-pwd";
  if (!have_fingerprint) {
    return other_fingerprint.empty() ? "no a=fingerprint" : "the fingerprint is " + other_fingerprint + ", not sha-256";
  }
  return {};
}

std::string parse_answer(std::string_view sdp, RemoteDescription &answer) {
  if (std::string error = parse_description(sdp, answer); !error.empty()) return "bad answer: " + error;
  if (answer.setup != "active") {
    return "the answer has a=setup:" + (answer.setup.empty() ? std::string("(none)") : answer.setup) +
           "; it must be active (we are the DTLS server)";
  }
  return {};
}

std::string random_ice_string(size_t length) {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string text(length, ' ');
  for (char &c : text) {
    unsigned char random = 0;
    RAND_bytes(&random, 1);
    c = kChars[random % 64];
  }
  return text;
}

std::string format_fingerprint(const uint8_t *digest, size_t size) {
  std::string text;
  text.reserve(size * 3);
  for (size_t i = 0; i < size; ++i) {
    char hex[4];
    snprintf(hex, sizeof hex, i + 1 < size ? "%02X:" : "%02X", digest[i]);
    text += hex;
  }
  return text;
}

}  // namespace callers
