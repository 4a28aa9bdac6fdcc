// SDP helpers against WhatsApp-shaped offers and webrtcbin-shaped answers.
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "call/sdp.h"
#include "meta_offer.h"

namespace {

using media_test::meta_offer;
using media_test::OfferShape;

// What webrtcbin 1.22 answers to Meta's offer (reference §1.3), real values.
std::string good_answer(int pt = 111) {
  const std::string p = std::to_string(pt);
  return "v=0\r\n"
         "o=- 5480170283155433871 0 IN IP4 0.0.0.0\r\n"
         "s=-\r\n"
         "t=0 0\r\n"
         "a=ice-options:trickle\r\n"
         "a=group:BUNDLE audio\r\n"
         "m=audio 9 UDP/TLS/RTP/SAVPF " + p + "\r\n"
         "c=IN IP4 0.0.0.0\r\n"
         "a=ice-ufrag:dWxKmG0zGQ3vpTRX4gPtxtD1ymN3bRCK\r\n"
         "a=ice-pwd:8JNnGh3vkzj0BZ5SsRMvrhzApKqJHAVW\r\n"
         "a=rtcp-mux\r\n"
         "a=mid:audio\r\n"
         "a=setup:active\r\n"
         "a=rtpmap:" + p + " OPUS/48000/2\r\n"
         "a=rtcp-fb:" + p + " transport-cc\r\n"
         "a=ssrc:2254133617 msid:user2830463950@host-9dc5a8e4 webrtctransceiver0\r\n"
         "a=ssrc:2254133617 cname:user2830463950@host-9dc5a8e4\r\n"
         "a=sendrecv\r\n"
         "a=fingerprint:sha-256 A1:9B:34:0C:D5:70:6E:1F:22:8A:B3:C4:D5:E6:F7:08:19:2A:3B:4C:5D:6E:7F:80:91:A2:B3:C4:D5:E6:F7:08\r\n"
         "a=candidate:1 1 UDP 2015363327 198.18.0.1 40007 typ host\r\n"
         "a=candidate:2 1 UDP 2015363071 10.0.0.5 40008 typ host\r\n"
         "a=candidate:3 1 UDP 2015363583 fd00::5 40009 typ host\r\n";
}

vb::OpusParams meta_params(int pt = 111) {
  auto parsed = vb::parse_offer(meta_offer({.opus_pt = pt}));
  EXPECT_TRUE(parsed.opus) << parsed.error;
  return parsed.opus.value_or(vb::OpusParams{});
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos)
    text.replace(at, from.size(), to);
  return text;
}

bool mentions(const std::vector<std::string>& problems, const std::string& word) {
  return std::any_of(problems.begin(), problems.end(),
                     [&](const std::string& problem) { return problem.find(word) != std::string::npos; });
}

TEST(ParseOffer, ReadsMetaOffer) {
  const auto parsed = vb::parse_offer(meta_offer());
  ASSERT_TRUE(parsed.opus) << parsed.error;
  EXPECT_EQ(parsed.opus->payload_type, 111);
  EXPECT_EQ(parsed.opus->max_average_bitrate, 20000);
  EXPECT_EQ(parsed.opus->max_playback_rate, 16000);
  EXPECT_TRUE(parsed.opus->use_inband_fec);
  EXPECT_EQ(parsed.opus->ptime_ms, 20);
  EXPECT_EQ(parsed.opus->mid, "audio");
  EXPECT_TRUE(parsed.opus->remote_ice_lite);
}

TEST(ParseOffer, TakesThePayloadTypeFromTheOffer) {
  const auto parsed = vb::parse_offer(meta_offer({.opus_pt = 109}));
  ASSERT_TRUE(parsed.opus) << parsed.error;
  EXPECT_EQ(parsed.opus->payload_type, 109);
  EXPECT_EQ(parsed.opus->max_average_bitrate, 20000);  // the fmtp of PT 109, not of 111
}

TEST(ParseOffer, OpusNameInAnyCase) {
  for (const char* name : {"opus", "OPUS", "Opus"}) {
    const auto parsed = vb::parse_offer(meta_offer({.opus_name = name}));
    ASSERT_TRUE(parsed.opus) << name << ": " << parsed.error;
    EXPECT_EQ(parsed.opus->payload_type, 111);
  }
}

TEST(ParseOffer, MissingFmtpGivesDefaults) {
  const auto parsed = vb::parse_offer(meta_offer({.with_fmtp = false}));
  ASSERT_TRUE(parsed.opus) << parsed.error;
  EXPECT_EQ(parsed.opus->max_average_bitrate, 0);
  EXPECT_EQ(parsed.opus->max_playback_rate, 0);
  EXPECT_FALSE(parsed.opus->use_inband_fec);
}

TEST(ParseOffer, WithoutIceLite) {
  const auto parsed = vb::parse_offer(replace(meta_offer(), "a=ice-lite\r\n", ""));
  ASSERT_TRUE(parsed.opus) << parsed.error;
  EXPECT_FALSE(parsed.opus->remote_ice_lite);
}

TEST(ParseOffer, RejectsGarbage) {
  for (const char* text : {"", "hello", "{\"sdp\": 1}", "m=audio 9 RTP/AVP 0\r\n"}) {
    const auto parsed = vb::parse_offer(text);
    EXPECT_FALSE(parsed.opus) << text;
    EXPECT_NE(parsed.error.find("not an SDP"), std::string::npos) << parsed.error;
  }
}

TEST(ParseOffer, RejectsNoMedia) {
  const auto parsed = vb::parse_offer("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("no m-line"), std::string::npos) << parsed.error;
}

TEST(ParseOffer, RejectsTwoMLines) {
  const auto parsed = vb::parse_offer(meta_offer() +
                                      "m=audio 3482 UDP/TLS/RTP/SAVPF 111\r\n"
                                      "a=mid:audio2\r\n"
                                      "a=rtpmap:111 opus/48000/2\r\n");
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("2 m-lines"), std::string::npos) << parsed.error;
}

TEST(ParseOffer, RejectsVideoOnly) {
  const auto parsed = vb::parse_offer(replace(meta_offer(), "m=audio", "m=video"));
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("no audio m-line"), std::string::npos) << parsed.error;
}

TEST(ParseOffer, RejectsAudioWithoutOpus) {
  std::string offer = replace(meta_offer(), "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
  const auto parsed = vb::parse_offer(offer);
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("opus"), std::string::npos) << parsed.error;
}

TEST(ParseOffer, RejectsOpusAtAnotherClockRate) {
  const auto parsed = vb::parse_offer(replace(meta_offer(), "opus/48000/2", "opus/16000/1"));
  EXPECT_FALSE(parsed.opus);
}

TEST(ParseOffer, RejectsMissingMid) {
  const auto parsed = vb::parse_offer(replace(meta_offer(), "a=mid:audio\r\n", ""));
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("a=mid"), std::string::npos) << parsed.error;
}

TEST(ParseOffer, RejectsMalformedNumbers) {
  auto parsed = vb::parse_offer(replace(meta_offer(), "maxaveragebitrate=20000", "maxaveragebitrate=20k"));
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("maxaveragebitrate"), std::string::npos) << parsed.error;
  parsed = vb::parse_offer(replace(meta_offer(), "a=ptime:20", "a=ptime:soon"));
  EXPECT_FALSE(parsed.opus);
  EXPECT_NE(parsed.error.find("ptime"), std::string::npos) << parsed.error;
}

TEST(EncoderSettings, FollowMetaFmtp) {
  const vb::EncoderSettings settings = vb::encoder_settings_for(meta_params());
  EXPECT_EQ(settings.bitrate, 20000);
  EXPECT_EQ(settings.bandwidth, vb::kOpusBandwidthWideband);
  EXPECT_TRUE(settings.inband_fec);
  EXPECT_EQ(settings.frame_size_ms, 20);
}

TEST(EncoderSettings, DefaultsWithoutFmtp) {
  const vb::EncoderSettings settings = vb::encoder_settings_for(vb::OpusParams{.payload_type = 111});
  EXPECT_EQ(settings.bitrate, vb::kDefaultOpusBitrate);
  EXPECT_EQ(settings.bandwidth, vb::kOpusBandwidthFullband);
  EXPECT_FALSE(settings.inband_fec);
  EXPECT_EQ(settings.frame_size_ms, 20);
}

TEST(EncoderSettings, BandwidthFromMaxPlaybackRate) {
  const std::pair<int, int> cases[] = {{8000, vb::kOpusBandwidthNarrowband},  {12000, vb::kOpusBandwidthMediumband},
                                       {16000, vb::kOpusBandwidthWideband},    {24000, vb::kOpusBandwidthSuperwideband},
                                       {48000, vb::kOpusBandwidthFullband}};
  for (const auto& [rate, bandwidth] : cases)
    EXPECT_EQ(vb::encoder_settings_for({.max_playback_rate = rate}).bandwidth, bandwidth) << rate;
}

TEST(EncoderSettings, BitrateIsCapped) {
  EXPECT_EQ(vb::encoder_settings_for({.max_average_bitrate = 1000}).bitrate, 6000);
  EXPECT_EQ(vb::encoder_settings_for({.max_average_bitrate = 9000000}).bitrate, 510000);
  EXPECT_EQ(vb::encoder_settings_for({.max_average_bitrate = 32000}).bitrate, 32000);
}

TEST(EncoderSettings, FrameSizeFromPtime) {
  EXPECT_EQ(vb::encoder_settings_for({.ptime_ms = 40}).frame_size_ms, 40);
  EXPECT_EQ(vb::encoder_settings_for({.ptime_ms = 30}).frame_size_ms, 20);  // not an Opus frame size
}

TEST(CheckAnswer, AcceptsWebrtcbinAnswer) {
  const auto problems = vb::check_answer(good_answer(), meta_params());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST(CheckAnswer, AcceptsAnswerOnOfferPayloadType) {
  EXPECT_TRUE(vb::check_answer(good_answer(109), meta_params(109)).empty());
  EXPECT_TRUE(mentions(vb::check_answer(good_answer(111), meta_params(109)), "payload type 109"));
}

TEST(CheckAnswer, FindsEachProblem) {
  const vb::OpusParams offer = meta_params();
  const std::pair<std::string, std::string> cases[][2] = {
      {{"a=sendrecv", "a=recvonly"}, {"", "sendrecv"}},
      {{"a=setup:active", "a=setup:passive"}, {"", "a=setup"}},
      {{"a=mid:audio", "a=mid:0"}, {"", "a=mid"}},
      {{"a=fingerprint:sha-256", "a=fingerprint:sha-1"}, {"", "sha-256"}},
      {{"a=rtpmap:111 OPUS/48000/2", "a=rtpmap:111 PCMU/8000"}, {"", "payload type"}},
      {{"t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n"}, {"", "ice-lite"}},
  };
  for (const auto& test_case : cases) {
    const std::string answer = replace(good_answer(), test_case[0].first, test_case[0].second);
    EXPECT_TRUE(mentions(vb::check_answer(answer, offer), test_case[1].second)) << test_case[0].second;
  }
}

TEST(CheckAnswer, NeedsExactlyOneFingerprint) {
  const std::string fingerprint =
      "a=fingerprint:sha-256 A1:9B:34:0C:D5:70:6E:1F:22:8A:B3:C4:D5:E6:F7:08:19:2A:3B:4C:5D:6E:7F:80:91:A2:B3:C4:D5:E6:F7:08\r\n";
  const std::string two = replace(good_answer(), fingerprint, fingerprint + "a=fingerprint:sha-512 AB:CD\r\n");
  EXPECT_TRUE(mentions(vb::check_answer(two, meta_params()), "exactly one a=fingerprint, found 2"));
  const std::string none = replace(good_answer(), fingerprint, "");
  EXPECT_TRUE(mentions(vb::check_answer(none, meta_params()), "found 0"));
}

TEST(CheckAnswer, NeedsCandidates) {
  std::string answer = good_answer();
  answer = answer.substr(0, answer.find("a=candidate:"));
  EXPECT_TRUE(mentions(vb::check_answer(answer, meta_params()), "candidate"));
}

TEST(CheckAnswer, NeedsCrlf) {
  std::string answer = good_answer();
  answer.erase(std::remove(answer.begin(), answer.end(), '\r'), answer.end());
  EXPECT_TRUE(mentions(vb::check_answer(answer, meta_params()), "CRLF"));
}

TEST(CheckAnswer, NeedsOneMLine) {
  const std::string answer = good_answer() + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio\r\n";
  EXPECT_TRUE(mentions(vb::check_answer(answer, meta_params()), "exactly one m-line, found 2"));
}

TEST(CheckAnswer, RejectsGarbage) {
  EXPECT_FALSE(vb::check_answer("", meta_params()).empty());
  EXPECT_FALSE(vb::check_answer("not sdp at all\r\n", meta_params()).empty());
}

TEST(RewriteCandidates, ReplacesHostAddressesOfTheSameFamily) {
  const std::string rewritten = vb::rewrite_candidates_for_public_ip(good_answer(), "203.0.113.7");
  EXPECT_NE(rewritten.find("a=candidate:1 1 UDP 2015363327 203.0.113.7 40007 typ host\r\n"), std::string::npos);
  EXPECT_NE(rewritten.find("a=candidate:2 1 UDP 2015363071 203.0.113.7 40008 typ host\r\n"), std::string::npos);
  EXPECT_NE(rewritten.find("a=candidate:3 1 UDP 2015363583 fd00::5 40009 typ host\r\n"), std::string::npos);
  EXPECT_EQ(rewritten.find("198.18.0.1"), std::string::npos);
  EXPECT_NE(rewritten.find("c=IN IP4 0.0.0.0\r\n"), std::string::npos);  // the placeholder stays
  EXPECT_TRUE(vb::check_answer(rewritten, meta_params()).empty());
}

TEST(RewriteCandidates, ReplacesIpv6AndConnectionLine) {
  std::string answer = replace(good_answer(), "c=IN IP4 0.0.0.0", "c=IN IP4 198.18.0.1");
  const std::string rewritten = vb::rewrite_candidates_for_public_ip(answer, "2001:db8::7");
  EXPECT_NE(rewritten.find("a=candidate:3 1 UDP 2015363583 2001:db8::7 40009 typ host\r\n"), std::string::npos);
  EXPECT_NE(rewritten.find("198.18.0.1 40007"), std::string::npos);
  EXPECT_NE(rewritten.find("c=IN IP6 2001:db8::7\r\n"), std::string::npos);
}

TEST(RewriteCandidates, LeavesOtherCandidateTypesAlone) {
  const std::string srflx = "a=candidate:4 1 UDP 1677729535 198.51.100.9 40010 typ srflx raddr 198.18.0.1 rport 40007\r\n";
  const std::string rewritten = vb::rewrite_candidates_for_public_ip(good_answer() + srflx, "203.0.113.7");
  EXPECT_NE(rewritten.find(srflx), std::string::npos);
}

TEST(RewriteCandidates, KeepsEverythingElseByteForByte) {
  const std::string answer = good_answer();
  const std::string rewritten = vb::rewrite_candidates_for_public_ip(answer, "198.18.0.1");
  EXPECT_EQ(rewritten.substr(0, rewritten.find("a=candidate:2")), answer.substr(0, answer.find("a=candidate:2")));
  EXPECT_EQ(rewritten.size(), answer.size() - std::string("10.0.0.5").size() + std::string("198.18.0.1").size());
}

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
