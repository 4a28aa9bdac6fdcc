// voiceopusenc in a GstHarness: a 440 Hz tone survives encoding (decoded with
// libopus's own single-stream decoder), one packet per 20 ms with the input's
// timestamps, and silence (GAP-flagged or all-zero frames) is sent as one
// cached packet without running the encoder once it has settled. Counted in
// packets, samples and stream time: no wall clock.
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gtest/gtest.h>
#include <opus.h>

#include <cmath>
#include <complex>
#include <memory>
#include <string>
#include <vector>

extern "C" void gst_plugin_voiceopus_register(void);

namespace {

constexpr GstClockTime kFrame = 20 * GST_MSECOND;
constexpr int kRate = 24000;
constexpr int kFrameSamples = kRate / 50;
constexpr double kToneHz = 440.0;
constexpr guint64 kSettlingFrames = 10;  // silent frames encoded before the packet is cached

using Packet = std::vector<guint8>;

struct HarnessDeleter {
  void operator()(GstHarness* harness) const { gst_harness_teardown(harness); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

struct Output {
  Packet bytes;
  GstClockTime pts;
  GstClockTime duration;
};

class VoiceOpusEncTest : public ::testing::Test {
 protected:
  void SetUp() override { start("voiceopusenc name=enc", kRate); }

  void start(const char* description, int rate) {
    harness_.reset(gst_harness_new_parse(description));
    rate_ = rate;
    gst_harness_set_src_caps_str(
        harness_.get(), ("audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=" + std::to_string(rate)).c_str());
  }

  // gst_harness_new_parse wraps the description in a bin.
  GstElement* encoder() { return gst_bin_get_by_name(GST_BIN(harness_->element), "enc"); }

  guint64 counter(const char* name) {
    GstElement* element = encoder();
    guint64 value = 0;
    g_object_get(element, name, &value, nullptr);
    gst_object_unref(element);
    return value;
  }

  // Pushes `count` 20 ms frames: a tone, digital silence, or GAP buffers
  // (zeros flagged GAP, as openairealtime outputs while the AI is quiet).
  enum class Kind { Tone, Zeros, Gap };
  void push(Kind kind, int count) {
    const int samples = rate_ / 50;
    for (int i = 0; i < count; ++i, ++frames_pushed_) {
      std::vector<gint16> pcm(static_cast<size_t>(samples));
      if (kind == Kind::Tone) {
        for (int n = 0; n < samples; ++n) {
          const double t = static_cast<double>(frames_pushed_ * samples + n) / rate_;
          pcm[static_cast<size_t>(n)] = static_cast<gint16>(0.5 * 32767 * std::sin(2 * M_PI * kToneHz * t));
        }
      }
      GstBuffer* buffer = gst_buffer_new_memdup(pcm.data(), pcm.size() * sizeof(gint16));
      GST_BUFFER_PTS(buffer) = static_cast<GstClockTime>(frames_pushed_) * kFrame;
      GST_BUFFER_DURATION(buffer) = kFrame;
      if (kind == Kind::Gap)
        GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_GAP);
      ASSERT_EQ(gst_harness_push(harness_.get(), buffer), GST_FLOW_OK);
    }
  }

  std::vector<Output> pull_all() {
    std::vector<Output> out;
    while (GstBuffer* buffer = gst_harness_try_pull(harness_.get())) {
      Output o{Packet(gst_buffer_get_size(buffer)), GST_BUFFER_PTS(buffer), GST_BUFFER_DURATION(buffer)};
      gst_buffer_extract(buffer, 0, o.bytes.data(), o.bytes.size());
      gst_buffer_unref(buffer);
      out.push_back(std::move(o));
    }
    return out;
  }

  HarnessPtr harness_;
  int rate_ = kRate;
  int frames_pushed_ = 0;
};

std::vector<gint16> decode(const std::vector<Output>& packets, int rate) {
  int error = OPUS_OK;
  OpusDecoder* decoder = opus_decoder_create(rate, 1, &error);
  EXPECT_EQ(error, OPUS_OK);
  std::vector<gint16> pcm;
  std::vector<opus_int16> frame(static_cast<size_t>(rate * 120 / 1000));
  for (const Output& packet : packets) {
    const int samples = opus_decode(decoder, packet.bytes.data(), static_cast<opus_int32>(packet.bytes.size()),
                                    frame.data(), static_cast<int>(frame.size()), 0);
    EXPECT_GT(samples, 0);
    pcm.insert(pcm.end(), frame.begin(), frame.begin() + std::max(samples, 0));
  }
  opus_decoder_destroy(decoder);
  return pcm;
}

// The strongest frequency of `pcm` (DFT over 10 Hz steps between 100 and 2000 Hz).
double dominant_hz(const std::vector<gint16>& pcm, int rate) {
  double best_hz = 0, best_power = -1;
  for (double hz = 100; hz <= 2000; hz += 10) {
    std::complex<double> sum = 0;
    for (size_t n = 0; n < pcm.size(); ++n)
      sum += static_cast<double>(pcm[n]) * std::polar(1.0, -2 * M_PI * hz * static_cast<double>(n) / rate);
    if (std::norm(sum) > best_power) {
      best_power = std::norm(sum);
      best_hz = hz;
    }
  }
  return best_hz;
}

int peak(const std::vector<gint16>& pcm, size_t from, size_t to) {
  int max = 0;
  for (size_t i = from; i < to && i < pcm.size(); ++i) max = std::max(max, std::abs(static_cast<int>(pcm[i])));
  return max;
}

TEST_F(VoiceOpusEncTest, ToneSurvivesOnePacketPerFrameWithInputTimestamps) {
  push(Kind::Tone, 50);
  const std::vector<Output> packets = pull_all();
  ASSERT_EQ(packets.size(), 50u);
  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_EQ(packets[i].pts, i * kFrame) << i;
    EXPECT_EQ(packets[i].duration, kFrame) << i;
  }
  const std::vector<gint16> pcm = decode(packets, kRate);
  ASSERT_EQ(pcm.size(), 50u * kFrameSamples);
  EXPECT_NEAR(dominant_hz(pcm, kRate), kToneHz, kToneHz * 0.05);
  EXPECT_GT(peak(pcm, pcm.size() / 2, pcm.size()), 8000);
  EXPECT_EQ(counter("encoded-frames"), 50u);
  EXPECT_EQ(counter("silent-frames"), 0u);

  g_autoptr(GstCaps) caps = gst_pad_get_current_caps(harness_->sinkpad);
  ASSERT_TRUE(caps);
  const GstStructure* structure = gst_caps_get_structure(caps, 0);
  EXPECT_TRUE(gst_structure_has_name(structure, "audio/x-opus"));
  int family = -1;
  EXPECT_TRUE(gst_structure_get_int(structure, "channel-mapping-family", &family));
  EXPECT_EQ(family, 0);
}

TEST_F(VoiceOpusEncTest, GapFramesAreSentAsOneCachedPacketOnceSettled) {
  push(Kind::Tone, 10);
  push(Kind::Gap, 50);
  push(Kind::Tone, 10);
  const std::vector<Output> packets = pull_all();
  ASSERT_EQ(packets.size(), 70u);  // the cadence never changes
  for (size_t i = 0; i < packets.size(); ++i) EXPECT_EQ(packets[i].pts, i * kFrame) << i;

  EXPECT_EQ(counter("silent-frames"), 50u - kSettlingFrames);
  EXPECT_EQ(counter("encoded-frames"), 20u + kSettlingFrames);
  const Packet& cached = packets[10 + kSettlingFrames].bytes;
  for (size_t i = 10 + kSettlingFrames - 1; i < 60; ++i) EXPECT_EQ(packets[i].bytes, cached) << i;
  EXPECT_LT(cached.size(), 20u);  // what bench/ and the far end see as "quiet"

  // Decoded, the silence is silent and the tone comes back after it.
  const std::vector<gint16> pcm = decode(packets, kRate);
  ASSERT_EQ(pcm.size(), 70u * kFrameSamples);
  EXPECT_LT(peak(pcm, 15 * kFrameSamples, 60 * kFrameSamples), 64);
  const std::vector<gint16> resumed(pcm.begin() + 62 * kFrameSamples, pcm.end());
  EXPECT_NEAR(dominant_hz(resumed, kRate), kToneHz, kToneHz * 0.05);
}

// With in-band FEC on (WhatsApp offers useinbandfec=1) libopus's first
// silence packets after speech carry that speech again (35-54 bytes): the
// cached packet must be a settled, small one.
TEST_F(VoiceOpusEncTest, InbandFecIsPausedForSilence) {
  start("voiceopusenc name=enc inband-fec=true packet-loss-percentage=10", kRate);
  push(Kind::Tone, 10);
  push(Kind::Gap, 30);
  push(Kind::Tone, 10);
  const std::vector<Output> packets = pull_all();
  ASSERT_EQ(packets.size(), 50u);
  for (size_t i = 10 + kSettlingFrames - 1; i < 40; ++i) EXPECT_LT(packets[i].bytes.size(), 20u) << i;
  const std::vector<gint16> pcm = decode(packets, kRate);
  const std::vector<gint16> resumed(pcm.begin() + 42 * kFrameSamples, pcm.end());
  EXPECT_NEAR(dominant_hz(resumed, kRate), kToneHz, kToneHz * 0.05);
}

TEST_F(VoiceOpusEncTest, AllZeroFramesCountAsSilenceToo) {
  push(Kind::Zeros, 30);
  ASSERT_EQ(pull_all().size(), 30u);
  EXPECT_EQ(counter("encoded-frames"), kSettlingFrames);
  EXPECT_EQ(counter("silent-frames"), 30u - kSettlingFrames);
}

TEST_F(VoiceOpusEncTest, SkipSilenceOffEncodesEveryFrame) {
  start("voiceopusenc name=enc skip-silence=false", kRate);
  push(Kind::Gap, 20);
  ASSERT_EQ(pull_all().size(), 20u);
  EXPECT_EQ(counter("encoded-frames"), 20u);
  EXPECT_EQ(counter("silent-frames"), 0u);
}

TEST_F(VoiceOpusEncTest, ChangedSettingsReplaceTheCachedPacket) {
  push(Kind::Gap, 15);
  EXPECT_EQ(counter("encoded-frames"), kSettlingFrames);
  GstElement* element = encoder();
  g_object_set(element, "bitrate", 32000, nullptr);
  gst_object_unref(element);
  push(Kind::Gap, 15);
  ASSERT_EQ(pull_all().size(), 30u);
  EXPECT_EQ(counter("encoded-frames"), 2 * kSettlingFrames);
  EXPECT_EQ(counter("silent-frames"), 30u - 2 * kSettlingFrames);
}

TEST_F(VoiceOpusEncTest, EncodesAt16kHzAndFeedsRtpOpusPay) {
  start("voiceopusenc name=enc ! rtpopuspay pt=111", 16000);
  push(Kind::Tone, 10);
  const std::vector<Output> rtp = pull_all();
  ASSERT_EQ(rtp.size(), 10u);
  g_autoptr(GstCaps) caps = gst_pad_get_current_caps(harness_->sinkpad);
  ASSERT_TRUE(caps);
  const GstStructure* structure = gst_caps_get_structure(caps, 0);
  int clock_rate = 0, pt = 0;
  EXPECT_TRUE(gst_structure_get_int(structure, "clock-rate", &clock_rate));
  EXPECT_TRUE(gst_structure_get_int(structure, "payload", &pt));
  EXPECT_EQ(clock_rate, 48000);
  EXPECT_EQ(pt, 111);
  EXPECT_EQ(counter("encoded-frames"), 10u);
}

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  gst_plugin_voiceopus_register();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
