// WhatsApp-shaped SDP offers for the media tests (whatsapp-calling.md §6.1),
// with realistic values and CRLF line endings.
#pragma once

#include <string>
#include <string_view>

namespace media_test {

struct OfferShape {
  int opus_pt = 111;
  std::string opus_name = "opus";
  std::string candidate_ip = "198.18.0.2";  // where the (absent) Meta relay would be
  int candidate_port = 3480;
  bool with_fmtp = true;
};

inline std::string meta_offer(const OfferShape& shape = {}) {
  const std::string pt = std::to_string(shape.opus_pt);
  std::string sdp =
      "v=0\r\n"
      "o=- 1732871234567 2 IN IP4 127.0.0.1\r\n"
      "s=-\r\n"
      "t=0 0\r\n"
      "a=group:BUNDLE audio\r\n"
      "a=msid-semantic: WMS 5f3c1d2e-8a7b-4c6d-9e0f-1a2b3c4d5e6f\r\n"
      "a=ice-lite\r\n"
      "m=audio " + std::to_string(shape.candidate_port) + " UDP/TLS/RTP/SAVPF " + pt + " 126\r\n"
      "c=IN IP4 " + shape.candidate_ip + "\r\n"
      "a=rtcp:9 IN IP4 0.0.0.0\r\n"
      "a=candidate:2738415463 1 udp 2122260223 " + shape.candidate_ip + " " +
      std::to_string(shape.candidate_port) + " typ host generation 0 network-cost 50\r\n"
      "a=candidate:1427391876 1 udp 2122262783 2a03:2880:f20d:c3:face:b00c:0:167 " +
      std::to_string(shape.candidate_port) + " typ host generation 0 network-cost 50\r\n"
      "a=ice-ufrag:Q2xpZW50VWZyYWcx\r\n"
      "a=ice-pwd:c2VjcmV0UGFzc3dvcmRGb3JJY2VMaXRl\r\n"
      "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
      "a=setup:actpass\r\n"
      "a=mid:audio\r\n"
      "a=sendrecv\r\n"
      "a=msid:5f3c1d2e-8a7b-4c6d-9e0f-1a2b3c4d5e6f WhatsAppTrack1\r\n"
      "a=rtcp-mux\r\n"
      "a=rtpmap:" + pt + " " + shape.opus_name + "/48000/2\r\n"
      "a=rtcp-fb:" + pt + " transport-cc\r\n";
  if (shape.with_fmtp)
    sdp += "a=fmtp:" + pt +
           " maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1\r\n";
  sdp +=
      "a=rtpmap:126 telephone-event/8000\r\n"
      "a=maxptime:20\r\n"
      "a=ptime:20\r\n"
      "a=ssrc:3094213847 cname:WhatsAppAudioStream1\r\n";
  return sdp;
}

}  // namespace media_test
