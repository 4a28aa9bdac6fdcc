// voiceopusdec: Opus packets from GStreamer's own opusenc (440 Hz sine, mono
// and stereo, wideband 20 kbit/s, 20 ms) through the element in a GstHarness,
// checked against libopus's single-stream decoder sample by sample, plus
// loss concealment, corrupt packets and output rate negotiation. Everything
// is counted in samples and stream time: no wall clock.
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gtest/gtest.h>
#include <opus.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

extern "C" void gst_plugin_voiceopus_register(void);

namespace {

constexpr GstClockTime kPacket = 20 * GST_MSECOND;
constexpr int kInputRate = 48000;
constexpr double kToneHz = 440.0;

using Packet = std::vector<guint8>;

struct HarnessDeleter {
  void operator()(GstHarness* harness) const { gst_harness_teardown(harness); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

int samples_per_packet(int rate) { return rate / 50; }

// Packets of GStreamer's opusenc for `count` 20 ms frames of a 440 Hz sine at
// 48 kHz (both channels alike in stereo); the OpusHead/OpusTags header buffers
// are left out, as RTP carries none, and so is the packet the encoder's
// lookahead adds at EOS.
std::vector<Packet> encode_sine(int channels, int count) {
  HarnessPtr harness(gst_harness_new("opusenc"));
  g_object_set(harness->element, "bitrate", 20000, nullptr);
  gst_util_set_object_arg(G_OBJECT(harness->element), "bandwidth", "wideband");
  gst_util_set_object_arg(G_OBJECT(harness->element), "frame-size", "20");
  gst_harness_set_src_caps_str(
      harness.get(),
      ("audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=" + std::to_string(channels)).c_str());
  const int frame = samples_per_packet(kInputRate);
  for (int i = 0; i < count; ++i) {
    std::vector<gint16> pcm(static_cast<size_t>(frame * channels));
    for (int n = 0; n < frame; ++n) {
      const double t = static_cast<double>(i * frame + n) / kInputRate;
      const auto value = static_cast<gint16>(0.5 * 32767 * std::sin(2 * M_PI * kToneHz * t));
      for (int c = 0; c < channels; ++c) pcm[static_cast<size_t>(n * channels + c)] = value;
    }
    GstBuffer* buffer = gst_buffer_new_memdup(pcm.data(), pcm.size() * sizeof(gint16));
    GST_BUFFER_PTS(buffer) = static_cast<GstClockTime>(i) * kPacket;
    GST_BUFFER_DURATION(buffer) = kPacket;
    EXPECT_EQ(gst_harness_push(harness.get(), buffer), GST_FLOW_OK);
  }
  EXPECT_TRUE(gst_harness_push_event(harness.get(), gst_event_new_eos()));
  std::vector<Packet> packets;
  while (GstBuffer* buffer = gst_harness_try_pull(harness.get())) {
    if (!GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_HEADER)) {
      Packet packet(gst_buffer_get_size(buffer));
      gst_buffer_extract(buffer, 0, packet.data(), packet.size());
      packets.push_back(std::move(packet));
    }
    gst_buffer_unref(buffer);
  }
  EXPECT_GE(packets.size(), static_cast<size_t>(count));
  packets.resize(static_cast<size_t>(count));
  return packets;
}

// What the element must output: libopus's single-stream decoder, mono at
// `rate`. An empty packet stands for a lost one: 20 ms of PLC.
std::vector<gint16> reference_decode(const std::vector<Packet>& packets, int rate) {
  int error = OPUS_OK;
  OpusDecoder* decoder = opus_decoder_create(rate, 1, &error);
  EXPECT_EQ(error, OPUS_OK);
  std::vector<gint16> out;
  std::vector<opus_int16> pcm(static_cast<size_t>(rate * 120 / 1000));
  for (const Packet& packet : packets) {
    const int n = packet.empty() ? opus_decode(decoder, nullptr, 0, pcm.data(), samples_per_packet(rate), 0)
                                 : opus_decode(decoder, packet.data(), static_cast<opus_int32>(packet.size()),
                                               pcm.data(), static_cast<int>(pcm.size()), 0);
    EXPECT_GT(n, 0);
    if (n > 0) out.insert(out.end(), pcm.begin(), pcm.begin() + n);
  }
  opus_decoder_destroy(decoder);
  return out;
}

double goertzel_power(const std::vector<gint16>& samples, int rate, double hz) {
  const double coefficient = 2 * std::cos(2 * M_PI * hz / rate);
  double previous = 0, before = 0;
  for (gint16 sample : samples) {
    const double current = sample + coefficient * previous - before;
    before = previous;
    previous = current;
  }
  return previous * previous + before * before - coefficient * previous * before;
}

// The strongest frequency between 100 Hz and 2 kHz, in 2 Hz steps.
double dominant_frequency(const std::vector<gint16>& samples, int rate) {
  double best_hz = 0, best_power = -1;
  for (double hz = 100; hz <= 2000; hz += 2) {
    const double power = goertzel_power(samples, rate, hz);
    if (power > best_power) {
      best_power = power;
      best_hz = hz;
    }
  }
  return best_hz;
}

struct Chunk {
  GstClockTime pts;
  GstClockTime duration;
  std::vector<gint16> samples;
};

// voiceopusdec (optionally inside a larger launch line, the decoder named
// "dec") in a harness fed with Opus caps as rtpopusdepay sets them.
class DecoderHarness {
 public:
  // `sink_caps`: what the harness' sink accepts (default: anything), set
  // before the input caps reach the decoder.
  explicit DecoderHarness(const std::string& launch = "voiceopusdec name=dec", int channels = 2,
                          const char* sink_caps = nullptr)
      : harness_(gst_harness_new_parse(launch.c_str())), bus_(gst_bus_new()) {
    decoder_ = gst_bin_get_by_name(GST_BIN(harness_->element), "dec");
    g_assert(decoder_);
    gst_element_set_bus(harness_->element, bus_);
    if (sink_caps) gst_harness_set_sink_caps_str(harness_.get(), sink_caps);
    gst_harness_set_src_caps_str(
        harness_.get(),
        ("audio/x-opus,channel-mapping-family=(int)0,rate=(int)48000,channels=(int)" + std::to_string(channels))
            .c_str());
  }
  ~DecoderHarness() {
    gst_object_unref(decoder_);
    harness_.reset();
    // Queued messages hold the bin, which holds the bus: break the cycle.
    gst_bus_set_flushing(bus_, TRUE);
    gst_object_unref(bus_);
  }

  GstHarness* harness() { return harness_.get(); }
  GstElement* decoder() { return decoder_; }

  GstFlowReturn push(const Packet& packet, guint index) {
    GstBuffer* buffer = gst_buffer_new_memdup(packet.data(), packet.size());
    GST_BUFFER_PTS(buffer) = index * kPacket;
    GST_BUFFER_DURATION(buffer) = kPacket;
    return gst_harness_push(harness_.get(), buffer);
  }
  // Pushes packets[first, last) with their stream positions.
  void push_range(const std::vector<Packet>& packets, guint first, guint last) {
    for (guint i = first; i < last; ++i) ASSERT_EQ(push(packets[i], i), GST_FLOW_OK) << "packet " << i;
  }
  void gap(GstClockTime timestamp, GstClockTime duration) {
    ASSERT_TRUE(gst_harness_push_event(harness_.get(), gst_event_new_gap(timestamp, duration)));
  }

  std::vector<Chunk> pull_all() {
    std::vector<Chunk> chunks;
    while (GstBuffer* buffer = gst_harness_try_pull(harness_.get())) {
      Chunk chunk{GST_BUFFER_PTS(buffer), GST_BUFFER_DURATION(buffer),
                  std::vector<gint16>(gst_buffer_get_size(buffer) / sizeof(gint16))};
      gst_buffer_extract(buffer, 0, chunk.samples.data(), gst_buffer_get_size(buffer));
      chunks.push_back(std::move(chunk));
      gst_buffer_unref(buffer);
    }
    return chunks;
  }

  int output_rate() {
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(harness_->sinkpad);
    int rate = 0, channels = 0;
    if (!caps) return 0;
    const GstStructure* structure = gst_caps_get_structure(caps, 0);
    EXPECT_STREQ(gst_structure_get_string(structure, "format"), "S16LE");
    EXPECT_TRUE(gst_structure_get_int(structure, "channels", &channels));
    EXPECT_EQ(channels, 1);
    gst_structure_get_int(structure, "rate", &rate);
    return rate;
  }

  guint64 stat(const char* name) {
    guint64 value = 0;
    g_object_get(decoder_, name, &value, nullptr);
    return value;
  }

  // The first ERROR message posted so far, or null.
  GstMessage* pop_error() { return gst_bus_pop_filtered(bus_, GST_MESSAGE_ERROR); }

 private:
  HarnessPtr harness_;
  GstBus* bus_;
  GstElement* decoder_;
};

::testing::AssertionResult same_samples(const std::vector<gint16>& actual, const std::vector<gint16>& expected) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << actual.size() << " samples, expected " << expected.size();
  for (size_t i = 0; i < actual.size(); ++i)
    if (actual[i] != expected[i])
      return ::testing::AssertionFailure() << "sample " << i << " is " << actual[i] << ", expected " << expected[i];
  return ::testing::AssertionSuccess();
}

std::vector<gint16> concatenate(const std::vector<Chunk>& chunks) {
  std::vector<gint16> all;
  for (const Chunk& chunk : chunks) all.insert(all.end(), chunk.samples.begin(), chunk.samples.end());
  return all;
}

// Each buffer starts where the previous one ended, the first at `start`, and
// its duration matches its sample count.
void expect_continuous(const std::vector<Chunk>& chunks, int rate, GstClockTime start = 0) {
  GstClockTime expected = start;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].pts, expected) << "buffer " << i;
    EXPECT_EQ(chunks[i].duration,
              gst_util_uint64_scale_int(chunks[i].samples.size(), GST_SECOND, rate)) << "buffer " << i;
    expected = chunks[i].pts + chunks[i].duration;
  }
}

double rms(const std::vector<gint16>& samples) {
  double sum = 0;
  for (gint16 sample : samples) sum += static_cast<double>(sample) * sample;
  return samples.empty() ? 0 : std::sqrt(sum / static_cast<double>(samples.size()));
}

// --- decoding ------------------------------------------------------------------

class DecodeTest : public ::testing::TestWithParam<int> {};  // input channels

TEST_P(DecodeTest, SineDecodesTo24kHzMonoAt440Hz) {
  const int channels = GetParam();
  const std::vector<Packet> packets = encode_sine(channels, 100);
  DecoderHarness decoder("voiceopusdec name=dec", channels);
  decoder.push_range(packets, 0, static_cast<guint>(packets.size()));
  const std::vector<Chunk> chunks = decoder.pull_all();

  EXPECT_EQ(decoder.output_rate(), 24000);
  ASSERT_EQ(chunks.size(), packets.size());
  const std::vector<gint16> pcm = concatenate(chunks);
  EXPECT_EQ(pcm.size(), packets.size() * 480);
  expect_continuous(chunks, 24000);
  EXPECT_EQ(chunks.back().pts + chunks.back().duration, packets.size() * kPacket);

  const std::vector<gint16> settled(pcm.begin() + 24000 / 5, pcm.begin() + 24000 / 5 + 24000);  // 0.2 s .. 1.2 s
  EXPECT_NEAR(dominant_frequency(settled, 24000), kToneHz, 0.05 * kToneHz);
  EXPECT_GT(rms(settled), 0.5 * 32767 / std::sqrt(2.0) * 0.5) << "the tone is there at a sensible level";
  EXPECT_EQ(decoder.stat("decoded-packets"), packets.size());
  EXPECT_EQ(decoder.stat("concealed-ms"), 0u);
  EXPECT_EQ(decoder.stat("corrupt-packets"), 0u);
}

TEST_P(DecodeTest, OutputEqualsLibopusSingleStreamDecode) {
  const int channels = GetParam();
  const std::vector<Packet> packets = encode_sine(channels, 50);
  DecoderHarness decoder("voiceopusdec name=dec", channels);
  decoder.push_range(packets, 0, static_cast<guint>(packets.size()));
  const std::vector<gint16> expected = reference_decode(packets, 24000);
  ASSERT_EQ(expected.size(), packets.size() * 480);
  EXPECT_EQ(concatenate(decoder.pull_all()), expected);
}

INSTANTIATE_TEST_SUITE_P(VoiceOpusDec, DecodeTest, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 1 ? std::string("Mono") : std::string("Stereo");
                         });

TEST(VoiceOpusDecTest, HeaderBuffersAreSkipped) {
  const std::vector<Packet> packets = encode_sine(1, 5);
  DecoderHarness decoder("voiceopusdec name=dec", 1);
  const char head[] = "OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00";
  GstBuffer* header = gst_buffer_new_memdup(head, sizeof(head) - 1);
  GST_BUFFER_FLAG_SET(header, GST_BUFFER_FLAG_HEADER);
  ASSERT_EQ(gst_harness_push(decoder.harness(), header), GST_FLOW_OK);
  decoder.push_range(packets, 0, 5);
  EXPECT_EQ(concatenate(decoder.pull_all()), reference_decode({packets.begin(), packets.begin() + 5}, 24000));
  EXPECT_EQ(decoder.stat("corrupt-packets"), 0u);
}

// --- loss -----------------------------------------------------------------------

TEST(VoiceOpusDecTest, GapEventIsConcealedForItsDuration) {
  const std::vector<Packet> packets = encode_sine(2, 20);
  DecoderHarness decoder;
  decoder.push_range(packets, 0, 10);
  decoder.gap(10 * kPacket, 2 * kPacket);  // packets 10 and 11 lost
  decoder.push_range(packets, 12, 20);
  const std::vector<Chunk> chunks = decoder.pull_all();

  ASSERT_EQ(chunks.size(), 19u);
  expect_continuous(chunks, 24000);
  const Chunk& concealed = chunks[10];
  EXPECT_EQ(concealed.pts, 10 * kPacket);
  EXPECT_EQ(concealed.samples.size(), 960u);
  EXPECT_GT(rms(concealed.samples), 1000.0) << "PLC continues the tone rather than outputting silence";
  EXPECT_EQ(decoder.stat("concealed-ms"), 40u);
  EXPECT_EQ(decoder.stat("decoded-packets"), 18u);

  std::vector<Packet> with_loss(packets);
  with_loss[10].clear();
  with_loss[11].clear();
  EXPECT_TRUE(same_samples(concatenate(chunks), reference_decode(with_loss, 24000))) << "PLC in 20 ms steps, like libopus's own";
}

TEST(VoiceOpusDecTest, ConcealmentIsRoundedTo2_5msAndTheRestCarried) {
  const std::vector<Packet> packets = encode_sine(1, 4);
  DecoderHarness decoder("voiceopusdec name=dec", 1);
  decoder.push_range(packets, 0, 2);
  const GstClockTime odd = 21250 * GST_USECOND;
  decoder.gap(2 * kPacket, odd);  // rounds up to 22.5 ms, 1.25 ms ahead
  decoder.gap(2 * kPacket + odd, odd);  // 21.25 - 1.25 = 20 ms
  const std::vector<Chunk> chunks = decoder.pull_all();
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[2].samples.size(), 540u);
  EXPECT_EQ(chunks[3].samples.size(), 480u);
  EXPECT_EQ(decoder.stat("concealed-ms"), 42u);  // 42.5 ms = both gaps
}

TEST(VoiceOpusDecTest, WithoutPlcTheGapIsForwarded) {
  const std::vector<Packet> packets = encode_sine(1, 4);
  DecoderHarness decoder("voiceopusdec name=dec plc=false", 1);
  decoder.push_range(packets, 0, 2);
  decoder.gap(2 * kPacket, kPacket);
  decoder.push_range(packets, 3, 4);
  EXPECT_EQ(decoder.pull_all().size(), 3u);
  bool gap_forwarded = false;
  while (GstEvent* event = gst_harness_try_pull_event(decoder.harness())) {
    gap_forwarded |= GST_EVENT_TYPE(event) == GST_EVENT_GAP;
    gst_event_unref(event);
  }
  EXPECT_TRUE(gap_forwarded);
  EXPECT_EQ(decoder.stat("concealed-ms"), 0u);
}

// The jitterbuffer's lost-packet event becomes a GAP in rtpopusdepay: the
// element conceals it as in the server's receive chain.
TEST(VoiceOpusDecTest, LostRtpPacketIsConcealedThroughRtpopusdepay) {
  const std::vector<Packet> packets = encode_sine(2, 10);
  DecoderHarness decoder("rtpopuspay ! rtpopusdepay ! voiceopusdec name=dec", 2);
  decoder.push_range(packets, 0, 5);
  GstStructure* lost = gst_structure_new("GstRTPPacketLost", "seqnum", G_TYPE_UINT, 5u, "timestamp", G_TYPE_UINT64,
                                         5 * kPacket, "duration", G_TYPE_UINT64, kPacket, nullptr);
  ASSERT_TRUE(gst_harness_push_event(decoder.harness(), gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, lost)));
  decoder.push_range(packets, 6, 10);
  const std::vector<Chunk> chunks = decoder.pull_all();
  ASSERT_EQ(chunks.size(), 10u);
  EXPECT_EQ(chunks[5].pts, 5 * kPacket);
  EXPECT_EQ(chunks[5].samples.size(), 480u);
  EXPECT_EQ(decoder.stat("concealed-ms"), 20u);
  EXPECT_EQ(decoder.stat("decoded-packets"), 9u);
}

// --- corrupt packets --------------------------------------------------------------

// TOC 0xff: code 3 packet whose frame-count byte (0xff) claims 63 frames of
// 20 ms, beyond Opus's 120 ms: invalid for any decoder.
const Packet kGarbage(40, 0xff);

TEST(VoiceOpusDecTest, CorruptPacketIsCountedAndConcealed) {
  const std::vector<Packet> packets = encode_sine(1, 11);
  DecoderHarness decoder("voiceopusdec name=dec", 1);
  decoder.push_range(packets, 0, 5);
  ASSERT_EQ(decoder.push(kGarbage, 5), GST_FLOW_OK) << "an isolated error does not stop the stream";
  decoder.push_range(packets, 6, 11);
  const std::vector<Chunk> chunks = decoder.pull_all();

  ASSERT_EQ(chunks.size(), 11u);
  expect_continuous(chunks, 24000);
  EXPECT_EQ(chunks[5].samples.size(), 480u);
  EXPECT_EQ(decoder.stat("corrupt-packets"), 1u);
  EXPECT_EQ(decoder.stat("decoded-packets"), 10u);
  EXPECT_EQ(decoder.stat("concealed-ms"), 20u);
  GstMessage* error = decoder.pop_error();
  EXPECT_EQ(error, nullptr) << "max-errors=-1 (default): no error posted";
  if (error) gst_message_unref(error);

  std::vector<Packet> with_loss(packets);
  with_loss[5].clear();
  EXPECT_TRUE(same_samples(concatenate(chunks), reference_decode(with_loss, 24000)));
}

TEST(VoiceOpusDecTest, CorruptPacketBeyondMaxErrorsFailsWithTheOpusReason) {
  const std::vector<Packet> packets = encode_sine(1, 2);
  DecoderHarness decoder("voiceopusdec name=dec max-errors=0", 1);
  decoder.push_range(packets, 0, 2);
  EXPECT_EQ(decoder.push(kGarbage, 2), GST_FLOW_ERROR);
  GstMessage* error = decoder.pop_error();
  ASSERT_NE(error, nullptr);
  g_autoptr(GError) gerror = nullptr;
  g_autofree gchar* debug = nullptr;
  gst_message_parse_error(error, &gerror, &debug);
  EXPECT_TRUE(g_error_matches(gerror, GST_STREAM_ERROR, GST_STREAM_ERROR_DECODE));
  EXPECT_NE(std::string(gerror->message).find(opus_strerror(OPUS_INVALID_PACKET)), std::string::npos)
      << gerror->message;
  gst_message_unref(error);
  EXPECT_EQ(decoder.stat("corrupt-packets"), 1u);
}

// --- output rate ------------------------------------------------------------------

TEST(VoiceOpusDecTest, DecodesAtTheRateDownstreamAsksFor) {
  const std::vector<Packet> packets = encode_sine(2, 50);
  DecoderHarness decoder("voiceopusdec name=dec ! capsfilter caps=audio/x-raw,rate=16000", 2);
  decoder.push_range(packets, 0, static_cast<guint>(packets.size()));
  const std::vector<Chunk> chunks = decoder.pull_all();
  EXPECT_EQ(decoder.output_rate(), 16000);
  expect_continuous(chunks, 16000);
  const std::vector<gint16> pcm = concatenate(chunks);
  EXPECT_EQ(pcm.size(), packets.size() * 320);
  EXPECT_EQ(pcm, reference_decode(packets, 16000));
}

TEST(VoiceOpusDecTest, RateNoOpusDecoderHasIsRefused) {
  const std::vector<Packet> packets = encode_sine(1, 1);
  DecoderHarness decoder("voiceopusdec name=dec", 1, "audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=44100");
  EXPECT_EQ(decoder.push(packets[0], 0), GST_FLOW_NOT_NEGOTIATED);
  GstMessage* error = decoder.pop_error();
  ASSERT_NE(error, nullptr);
  gst_message_unref(error);
  EXPECT_EQ(decoder.stat("decoded-packets"), 0u);
}

class GstEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    gst_init(nullptr, nullptr);
    gst_plugin_voiceopus_register();
    g_autoptr(GstElementFactory) factory = gst_element_factory_find("voiceopusdec");
    ASSERT_NE(factory, nullptr);
  }
  // Lets GST_TRACERS=leaks report anything still alive.
  void TearDown() override { gst_deinit(); }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new GstEnvironment);
  return RUN_ALL_TESTS();
}
