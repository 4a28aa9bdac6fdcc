// use_openssl_srtp_crypto(): after it, libsrtp2 (as GStreamer's srtpenc and
// srtpdec use it) produces byte for byte what its own crypto produced before,
// and still rejects what it must. The "before" half has to run first in the
// process, so the whole comparison is one test.
#include <gst/gst.h>
#include <gtest/gtest.h>
#include <srtp2/cipher.h>
#include <srtp2/srtp.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "call/srtp_crypto.h"

// Exported by libsrtp2 but declared only in its private crypto_kernel.h: it
// tells which implementation the kernel now hands out.
extern "C" const srtp_cipher_type_t* srtp_crypto_kernel_get_cipher_type(srtp_cipher_type_id_t id);

namespace {

using Packet = std::vector<uint8_t>;

constexpr uint32_t kSsrc = 0x1234abcd;

// SRTP_AES128_CM_SHA1_80 master key and salt (what DTLS exports).
std::array<uint8_t, SRTP_AES_ICM_128_KEY_LEN_WSALT> master_key(uint8_t seed) {
  std::array<uint8_t, SRTP_AES_ICM_128_KEY_LEN_WSALT> key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(seed + 7 * i);
  return key;
}

// An SRTP session for kSsrc (a specific SSRC's policy serves either direction).
class Session {
 public:
  explicit Session(uint8_t key_seed = 0x51) {
    auto key = master_key(key_seed);
    srtp_policy_t policy{};
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
    policy.ssrc.type = ssrc_specific;
    policy.ssrc.value = kSsrc;
    policy.key = key.data();
    policy.window_size = 128;
    status_ = srtp_create(&session_, &policy);
  }
  ~Session() {
    if (session_) srtp_dealloc(session_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  srtp_err_status_t status() const { return status_; }

  Packet protect(Packet packet, bool rtcp) {
    int size = static_cast<int>(packet.size());
    packet.resize(packet.size() + SRTP_MAX_TRAILER_LEN);
    const srtp_err_status_t result =
        rtcp ? srtp_protect_rtcp(session_, packet.data(), &size) : srtp_protect(session_, packet.data(), &size);
    EXPECT_EQ(result, srtp_err_status_ok);
    packet.resize(static_cast<size_t>(size));
    return packet;
  }

  srtp_err_status_t unprotect(Packet& packet, bool rtcp) {
    int size = static_cast<int>(packet.size());
    const srtp_err_status_t result =
        rtcp ? srtp_unprotect_rtcp(session_, packet.data(), &size) : srtp_unprotect(session_, packet.data(), &size);
    if (result == srtp_err_status_ok) packet.resize(static_cast<size_t>(size));
    return result;
  }

 private:
  srtp_t session_ = nullptr;
  srtp_err_status_t status_ = srtp_err_status_fail;
};

Packet rtp_packet(uint16_t sequence, size_t payload_size) {
  const uint32_t timestamp = sequence * 960u;
  Packet packet = {0x80, 111, static_cast<uint8_t>(sequence >> 8), static_cast<uint8_t>(sequence),
                   static_cast<uint8_t>(timestamp >> 24), static_cast<uint8_t>(timestamp >> 16),
                   static_cast<uint8_t>(timestamp >> 8), static_cast<uint8_t>(timestamp),
                   static_cast<uint8_t>(kSsrc >> 24), static_cast<uint8_t>(kSsrc >> 16),
                   static_cast<uint8_t>(kSsrc >> 8), static_cast<uint8_t>(kSsrc)};
  for (size_t i = 0; i < payload_size; ++i) packet.push_back(static_cast<uint8_t>(sequence + 3 * i));
  return packet;
}

// An RTCP receiver report with no report block.
Packet rtcp_packet() {
  return {0x80, 201, 0x00, 0x01, static_cast<uint8_t>(kSsrc >> 24), static_cast<uint8_t>(kSsrc >> 16),
          static_cast<uint8_t>(kSsrc >> 8), static_cast<uint8_t>(kSsrc)};
}

struct Sent {
  Packet plain;
  Packet protected_;
  bool rtcp;
};

// A stream that crosses a sequence-number wrap (so the rollover counter
// enters the tag and the IV), with payloads from empty to over one AES block
// boundary, and RTCP in between.
std::vector<Sent> send_stream() {
  Session sender;
  EXPECT_EQ(sender.status(), srtp_err_status_ok);
  std::vector<Sent> sent;
  const size_t sizes[] = {40, 0, 1, 15, 16, 17, 160, 1000};
  for (int i = 0; i < 40; ++i) {
    const auto sequence = static_cast<uint16_t>(65520 + i);
    Packet plain = rtp_packet(sequence, sizes[i % std::size(sizes)]);
    sent.push_back({plain, sender.protect(plain, false), false});
    if (i % 10 == 0) sent.push_back({rtcp_packet(), sender.protect(rtcp_packet(), true), true});
  }
  return sent;
}

class SrtpCryptoTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    // As in the server: GStreamer's srtp plugin initialises libsrtp2.
    g_autoptr(GstPlugin) plugin = gst_plugin_load_by_name("srtp");
    ASSERT_TRUE(plugin) << "GStreamer's srtp plugin is missing";
  }
};

TEST_F(SrtpCryptoTest, ReplacesLibsrtpsCryptoWithoutChangingABit) {
  const std::vector<Sent> before = send_stream();
  ASSERT_STRNE(srtp_crypto_kernel_get_cipher_type(SRTP_AES_ICM_128)->description,
               "AES-128 counter mode (OpenSSL, voicebridge)");

  std::string error;
  ASSERT_TRUE(vb::use_openssl_srtp_crypto(&error)) << error;
  EXPECT_STREQ(srtp_crypto_kernel_get_cipher_type(SRTP_AES_ICM_128)->description,
               "AES-128 counter mode (OpenSSL, voicebridge)");
  ASSERT_TRUE(vb::use_openssl_srtp_crypto(&error)) << "a second call must report the first one's success";

  const std::vector<Sent> after = send_stream();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(before[i].protected_, after[i].protected_);
  }

  // What libsrtp2's own crypto protected, ours unprotects.
  Session receiver;
  ASSERT_EQ(receiver.status(), srtp_err_status_ok);
  for (const Sent& sent : before) {
    Packet packet = sent.protected_;
    ASSERT_EQ(receiver.unprotect(packet, sent.rtcp), srtp_err_status_ok);
    EXPECT_EQ(packet, sent.plain);
  }
}

TEST_F(SrtpCryptoTest, RejectsForgedReplayedAndWronglyKeyedPackets) {
  std::string error;
  ASSERT_TRUE(vb::use_openssl_srtp_crypto(&error)) << error;
  const std::vector<Sent> sent = send_stream();
  Session receiver;
  ASSERT_EQ(receiver.status(), srtp_err_status_ok);

  ASSERT_FALSE(sent[0].rtcp);
  ASSERT_TRUE(sent[1].rtcp);
  const Packet& rtp = sent[0].protected_;
  const Packet& rtcp = sent[1].protected_;

  Packet forged_payload = rtp;
  ASSERT_GT(sent[0].plain.size(), 12u) << "the first packet needs a payload";
  forged_payload[12] ^= 0x01;
  EXPECT_EQ(receiver.unprotect(forged_payload, false), srtp_err_status_auth_fail);
  Packet forged_tag = rtp;
  forged_tag.back() ^= 0x80;
  EXPECT_EQ(receiver.unprotect(forged_tag, false), srtp_err_status_auth_fail);

  Session stranger(0x52);
  Packet wrongly_keyed = rtp;
  EXPECT_EQ(stranger.unprotect(wrongly_keyed, false), srtp_err_status_auth_fail);

  Packet genuine = rtp;
  ASSERT_EQ(receiver.unprotect(genuine, false), srtp_err_status_ok);
  Packet replayed = rtp;
  EXPECT_EQ(receiver.unprotect(replayed, false), srtp_err_status_replay_fail);

  Packet forged_rtcp = rtcp;
  forged_rtcp[11] ^= 0x01;  // the SRTCP index, after the clear 8-byte header
  EXPECT_EQ(receiver.unprotect(forged_rtcp, true), srtp_err_status_auth_fail);
  Packet genuine_rtcp = rtcp;
  EXPECT_EQ(receiver.unprotect(genuine_rtcp, true), srtp_err_status_ok);
}

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
