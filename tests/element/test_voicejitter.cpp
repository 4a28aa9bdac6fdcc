// voicejitter (plugins/voicertp): RTP packets built with GstRTPBuffer pushed
// through the element in a GstHarness; what leaves its src pad (buffers and
// GstRTPPacketLost events, in order) is recorded by a pad probe. Then the
// element in the server's receive chain: its lost event concealed by
// rtpopusdepay ! voiceopusdec, and the element inside rtpbin as the answer to
// request-jitterbuffer. Every test fails on any GLib warning or critical.
// Everything is counted in packets, RTP time and stream time: no wall clock.
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/rtp/gstrtcpbuffer.h>
#include <gst/rtp/gstrtpbuffer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

extern "C" void gst_plugin_voicertp_register(void);
extern "C" void gst_plugin_voiceopus_register(void);

namespace {

constexpr const char* kOpusCaps = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111";
constexpr const char* kOpusCapsWithoutClockRate = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111";
constexpr GstClockTime kPacket = 20 * GST_MSECOND;
constexpr guint32 kRtpPerPacket = 960;  // 20 ms at 48 kHz
constexpr guint8 kOpusPt = 111;
constexpr guint32 kSsrc = 0x12345678;

// --- GLib warnings -----------------------------------------------------------------

// Every WARNING, CRITICAL or ERROR logged through GLib (GLib-GObject, GStreamer,
// ...) since the last take_glib_warnings(); each test fails on any.
std::mutex glib_warnings_mutex;
std::vector<std::string> glib_warnings;

GLogWriterOutput record_glib_warning(GLogLevelFlags level, const GLogField* fields, gsize n_fields, gpointer) {
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) {
    std::string domain = "(no domain)", message;
    for (gsize i = 0; i < n_fields; ++i) {
      const std::string key = fields[i].key;
      const auto* value = static_cast<const char*>(fields[i].value);
      if (!value) continue;
      const std::string text = fields[i].length < 0 ? std::string(value) : std::string(value, fields[i].length);
      if (key == "GLIB_DOMAIN") domain = text;
      if (key == "MESSAGE") message = text;
    }
    std::lock_guard<std::mutex> lock(glib_warnings_mutex);
    glib_warnings.push_back(domain + ": " + message);
  }
  return g_log_writer_default(level, fields, n_fields, nullptr);
}

std::vector<std::string> take_glib_warnings() {
  std::lock_guard<std::mutex> lock(glib_warnings_mutex);
  std::vector<std::string> taken;
  taken.swap(glib_warnings);
  return taken;
}

class VoiceJitterTest : public ::testing::Test {
 protected:
  void SetUp() override { take_glib_warnings(); }
  void TearDown() override {
    for (const std::string& warning : take_glib_warnings()) ADD_FAILURE() << "GLib logged " << warning;
  }
};

// --- RTP packets ----------------------------------------------------------------

struct HarnessDeleter {
  void operator()(GstHarness* harness) const { gst_harness_teardown(harness); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

std::vector<guint8> bytes_of(GstBuffer* buffer) {
  std::vector<guint8> bytes(gst_buffer_get_size(buffer));
  gst_buffer_extract(buffer, 0, bytes.data(), bytes.size());
  return bytes;
}

// An RTP packet; the default payload differs from packet to packet.
GstBuffer* rtp_packet(guint16 seq, guint32 rtptime, GstClockTime pts, std::vector<guint8> payload = {},
                      guint8 pt = kOpusPt) {
  if (payload.empty()) payload = {0xfc, static_cast<guint8>(seq >> 8), static_cast<guint8>(seq), 0x5a};
  GstBuffer* buffer = gst_rtp_buffer_new_allocate(static_cast<guint>(payload.size()), 0, 0);
  GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
  g_assert(gst_rtp_buffer_map(buffer, GST_MAP_WRITE, &rtp));
  gst_rtp_buffer_set_seq(&rtp, seq);
  gst_rtp_buffer_set_timestamp(&rtp, rtptime);
  gst_rtp_buffer_set_payload_type(&rtp, pt);
  gst_rtp_buffer_set_ssrc(&rtp, kSsrc);
  std::copy(payload.begin(), payload.end(), static_cast<guint8*>(gst_rtp_buffer_get_payload(&rtp)));
  gst_rtp_buffer_unmap(&rtp);
  GST_BUFFER_PTS(buffer) = pts;
  return buffer;
}

// Packet `index` of a 20 ms stream: sequence number, RTP time and arrival
// time advance together from the first packet's.
struct Stream {
  guint16 first_seq = 1000;
  guint32 first_rtptime = 123456;
  GstClockTime start = GST_SECOND;

  guint16 seq(guint index) const { return static_cast<guint16>(first_seq + index); }
  guint32 rtptime(guint index) const { return first_rtptime + index * kRtpPerPacket; }
  GstClockTime pts(guint index) const { return start + index * kPacket; }
  GstBuffer* packet(guint index, GstClockTime arrival_delay = 0) const {
    return rtp_packet(seq(index), rtptime(index), pts(index) + arrival_delay);
  }
};

// --- what leaves the element --------------------------------------------------------

// A buffer or a GstRTPPacketLost event seen on a src pad.
struct Output {
  bool lost = false;
  guint seq = 0;  // the buffer's RTP sequence number, or the event's "seqnum"
  bool discont = false;
  std::vector<guint8> bytes;
  GstClockTime timestamp = GST_CLOCK_TIME_NONE;  // lost event fields
  GstClockTime duration = GST_CLOCK_TIME_NONE;
  guint retry = G_MAXUINT;
};

std::string describe(const std::vector<Output>& outputs) {
  std::string text;
  for (const Output& output : outputs)
    text += (output.lost ? " lost#" : " #") + std::to_string(output.seq) + (output.discont ? "(discont)" : "");
  return text.empty() ? " nothing" : text;
}

class OutputRecorder {
 public:
  void attach(GstPad* pad) {
    gst_pad_add_probe(pad, GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                      &OutputRecorder::on_data, this, nullptr);
  }
  std::vector<Output> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Output> taken;
    taken.swap(outputs_);
    return taken;
  }

 private:
  static GstPadProbeReturn on_data(GstPad*, GstPadProbeInfo* info, gpointer data) {
    auto* self = static_cast<OutputRecorder*>(data);
    Output output;
    if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER) {
      GstBuffer* buffer = GST_PAD_PROBE_INFO_BUFFER(info);
      GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
      EXPECT_TRUE(gst_rtp_buffer_map(buffer, GST_MAP_READ, &rtp)) << "only RTP leaves the element";
      if (rtp.buffer) {
        output.seq = gst_rtp_buffer_get_seq(&rtp);
        gst_rtp_buffer_unmap(&rtp);
      }
      output.discont = GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DISCONT);
      output.bytes = bytes_of(buffer);
    } else {
      GstEvent* event = GST_PAD_PROBE_INFO_EVENT(info);
      if (GST_EVENT_TYPE(event) != GST_EVENT_CUSTOM_DOWNSTREAM || !gst_event_has_name(event, "GstRTPPacketLost"))
        return GST_PAD_PROBE_OK;
      const GstStructure* s = gst_event_get_structure(event);
      output.lost = true;
      // The types rtpjitterbuffer uses, which GstRTPBaseDepayload reads.
      EXPECT_TRUE(gst_structure_get_uint(s, "seqnum", &output.seq));
      EXPECT_TRUE(gst_structure_get_clock_time(s, "timestamp", &output.timestamp));
      EXPECT_TRUE(gst_structure_get_clock_time(s, "duration", &output.duration));
      EXPECT_TRUE(gst_structure_get_uint(s, "retry", &output.retry));
    }
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->outputs_.push_back(std::move(output));
    return GST_PAD_PROBE_OK;
  }

  std::mutex mutex_;
  std::vector<Output> outputs_;
};

guint64 counter(GstElement* element, const char* name) {
  guint64 value = 0;
  g_object_get(element, name, &value, nullptr);
  return value;
}

// voicejitter in a harness (PLAYING, stream-start, the given caps and a time
// segment sent), its output recorded.
class JitterHarness {
 public:
  explicit JitterHarness(const char* caps = kOpusCaps) : harness_(gst_harness_new("voicejitter")) {
    g_autoptr(GstPad) src = gst_element_get_static_pad(harness_->element, "src");
    recorder_.attach(src);
    gst_harness_set_src_caps_str(harness_.get(), caps);
  }

  GstHarness* harness() { return harness_.get(); }
  GstElement* element() { return harness_->element; }
  guint64 pushed() { return counter(element(), "pushed-packets"); }
  guint64 lost() { return counter(element(), "lost-packets"); }
  guint64 dropped() { return counter(element(), "dropped-packets"); }

  void push(GstBuffer* buffer) { ASSERT_EQ(gst_harness_push(harness_.get(), buffer), GST_FLOW_OK); }
  void push(const Stream& stream, guint first, guint last) {
    for (guint i = first; i < last; ++i) push(stream.packet(i));
  }
  std::vector<Output> take() { return recorder_.take(); }
  // The sequence numbers of what came out since the last take(), which must
  // be buffers only; `discont`: the indexes of those flagged DISCONT.
  std::vector<guint> take_buffers(std::vector<size_t>* discont = nullptr) {
    std::vector<guint> seqs;
    const std::vector<Output> outputs = take();
    for (size_t i = 0; i < outputs.size(); ++i) {
      EXPECT_FALSE(outputs[i].lost) << "unexpected lost event:" << describe(outputs);
      seqs.push_back(outputs[i].seq);
      if (discont && outputs[i].discont) discont->push_back(i);
    }
    return seqs;
  }

 private:
  OutputRecorder recorder_;  // outlives the harness and so the probe
  HarnessPtr harness_;
};

std::vector<guint> seqs_of(const Stream& stream, std::initializer_list<guint> indexes) {
  std::vector<guint> seqs;
  for (guint index : indexes) seqs.push_back(stream.seq(index));
  return seqs;
}

// --- in order, duplicates, late packets -------------------------------------------

TEST_F(VoiceJitterTest, InOrderPacketsPassUnchangedOnlyTheFirstDiscont) {
  JitterHarness jitter;
  const Stream stream;
  std::vector<std::vector<guint8>> sent;
  for (guint i = 0; i < 10; ++i) {
    GstBuffer* packet = stream.packet(i);
    sent.push_back(bytes_of(packet));
    jitter.push(packet);
  }
  const std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 10u) << describe(outputs);
  for (guint i = 0; i < 10; ++i) {
    EXPECT_FALSE(outputs[i].lost) << i;
    EXPECT_EQ(outputs[i].seq, stream.seq(i)) << i;
    EXPECT_EQ(outputs[i].bytes, sent[i]) << "packet " << i << " changed";
    EXPECT_EQ(outputs[i].discont, i == 0) << i;
  }
  EXPECT_EQ(gst_harness_buffers_received(jitter.harness()), 10u);
  GstBuffer* first = gst_harness_pull(jitter.harness());
  EXPECT_EQ(GST_BUFFER_PTS(first), stream.pts(0)) << "timestamps untouched";
  gst_buffer_unref(first);
  EXPECT_EQ(jitter.pushed(), 10u);
  EXPECT_EQ(jitter.lost(), 0u);
  EXPECT_EQ(jitter.dropped(), 0u);
}

TEST_F(VoiceJitterTest, DuplicateAndLatePacketsAreDroppedAndCounted) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 3);
  jitter.push(stream.packet(2));  // duplicate of the last one
  jitter.push(stream.packet(1));  // arrives after #2
  jitter.push(stream, 3, 4);
  jitter.push(stream.packet(0));
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), seqs_of(stream, {0, 1, 2, 3}));
  EXPECT_EQ(discont, std::vector<size_t>{0});
  EXPECT_EQ(jitter.dropped(), 3u);
  EXPECT_EQ(jitter.pushed(), 4u);
  EXPECT_EQ(jitter.lost(), 0u);

  // A packet reported lost that shows up after all is dropped too: its
  // concealment was already played.
  jitter.push(stream.packet(6));
  jitter.push(stream.packet(5));
  jitter.push(stream.packet(4));
  const std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 2u) << describe(outputs);
  EXPECT_TRUE(outputs[0].lost);
  EXPECT_EQ(outputs[1].seq, stream.seq(6));
  EXPECT_EQ(jitter.dropped(), 5u);
  EXPECT_EQ(jitter.lost(), 2u);
  EXPECT_EQ(jitter.pushed(), 5u);
}

// Packets up to 100 behind are late, not a new stream.
TEST_F(VoiceJitterTest, PacketFarBehindWithinTheMisorderLimitIsDropped) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 101);
  jitter.take();
  jitter.push(stream.packet(1));  // 99 behind #100
  jitter.push(stream.packet(0));  // 100 behind
  EXPECT_TRUE(jitter.take().empty());
  EXPECT_EQ(jitter.dropped(), 2u);
  EXPECT_EQ(jitter.pushed(), 101u);
}

// rtpjitterbuffer's stats structure, as webrtcbin's get-stats reads it.
TEST_F(VoiceJitterTest, StatsCountPushedLostLateAndDuplicates) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 3);
  jitter.push(stream.packet(2));  // duplicate
  jitter.push(stream.packet(1));  // late
  jitter.push(stream, 5, 6);      // #3 and #4 lost
  jitter.take();
  GstStructure* stats = nullptr;
  g_object_get(jitter.element(), "stats", &stats, nullptr);
  ASSERT_TRUE(stats);
  EXPECT_TRUE(gst_structure_has_name(stats, "application/x-rtp-jitterbuffer-stats"));
  guint64 pushed = 0, lost = 0, late = 0, duplicates = 0, rtx = 1;
  EXPECT_TRUE(gst_structure_get(stats, "num-pushed", G_TYPE_UINT64, &pushed, "num-lost", G_TYPE_UINT64, &lost,
                                "num-late", G_TYPE_UINT64, &late, "num-duplicates", G_TYPE_UINT64, &duplicates,
                                "rtx-count", G_TYPE_UINT64, &rtx, nullptr));
  EXPECT_EQ(pushed, 4u);
  EXPECT_EQ(lost, 2u);
  EXPECT_EQ(late, 1u);
  EXPECT_EQ(duplicates, 1u);
  EXPECT_EQ(rtx, 0u);
  gst_structure_free(stats);
}

// --- gaps -------------------------------------------------------------------------

TEST_F(VoiceJitterTest, GapIsOneLostEventTimedByRtpTimestamps) {
  JitterHarness jitter;
  Stream stream;
  stream.first_rtptime = G_MAXUINT32 - 2 * kRtpPerPacket;  // RTP time wraps within the gap
  jitter.push(stream, 0, 5);
  jitter.take();

  // 5, 6 and 7 lost; 8 arrives 7 ms late, so arrival times would give
  // another spacing than the RTP timestamps' 20 ms.
  jitter.push(stream.packet(8, 7 * GST_MSECOND));
  const std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 2u) << describe(outputs);
  const Output& lost = outputs[0];
  ASSERT_TRUE(lost.lost) << "the event comes before the packet after the gap";
  EXPECT_EQ(lost.seq, stream.seq(5));
  EXPECT_EQ(lost.timestamp, stream.pts(5));
  EXPECT_EQ(lost.duration, 3 * kPacket);
  EXPECT_EQ(lost.retry, 0u);
  EXPECT_FALSE(outputs[1].lost);
  EXPECT_EQ(outputs[1].seq, stream.seq(8));
  EXPECT_TRUE(outputs[1].discont);

  jitter.push(stream, 9, 10);
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), seqs_of(stream, {9}));
  EXPECT_TRUE(discont.empty());
  EXPECT_EQ(jitter.lost(), 3u);
  EXPECT_EQ(jitter.pushed(), 7u);
  EXPECT_EQ(jitter.dropped(), 0u);
  EXPECT_EQ(gst_harness_events_received(jitter.harness()), 4u) << "stream-start, caps, segment and the lost event";
}

// A jump of 100 sequence numbers is still a loss (of 99 packets), 101 a new stream.
TEST_F(VoiceJitterTest, LargestGapStillReportedAsLoss) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 1);
  jitter.push(stream.packet(100));
  const std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 3u) << describe(outputs);
  ASSERT_TRUE(outputs[1].lost);
  EXPECT_EQ(outputs[1].seq, stream.seq(1));
  EXPECT_EQ(outputs[1].timestamp, stream.pts(1));
  EXPECT_EQ(outputs[1].duration, 99 * kPacket);
  EXPECT_EQ(jitter.lost(), 99u);
}

TEST_F(VoiceJitterTest, SequenceWrapAroundIsInOrder) {
  JitterHarness jitter;
  Stream stream;
  stream.first_seq = 65534;
  jitter.push(stream, 0, 4);  // 65534, 65535, 0, 1
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), (std::vector<guint>{65534, 65535, 0, 1}));
  EXPECT_EQ(discont, std::vector<size_t>{0});
  EXPECT_EQ(jitter.lost(), 0u);
  EXPECT_EQ(jitter.dropped(), 0u);
  EXPECT_EQ(jitter.pushed(), 4u);
}

TEST_F(VoiceJitterTest, GapAcrossWrapAroundReportsTheFirstMissing) {
  JitterHarness jitter;
  Stream stream;
  stream.first_seq = 65534;
  jitter.push(stream, 0, 2);  // 65534, 65535
  jitter.take();
  jitter.push(stream.packet(4));  // 2: 0 and 1 lost
  const std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 2u) << describe(outputs);
  ASSERT_TRUE(outputs[0].lost);
  EXPECT_EQ(outputs[0].seq, 0u);
  EXPECT_EQ(outputs[0].timestamp, stream.pts(2));
  EXPECT_EQ(outputs[0].duration, 2 * kPacket);
  EXPECT_EQ(outputs[1].seq, 2u);
  EXPECT_EQ(jitter.lost(), 2u);
}

// The sender restarted its sequence: followed, DISCONT, no loss, no drop.
TEST_F(VoiceJitterTest, JumpOfMoreThan100ForwardIsANewStream) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 2);
  jitter.push(stream.packet(102));  // 101 ahead of #1
  jitter.push(stream.packet(103));
  jitter.push(stream.packet(5000));
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), seqs_of(stream, {0, 1, 102, 103, 5000}));
  EXPECT_EQ(discont, (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(jitter.lost(), 0u);
  EXPECT_EQ(jitter.dropped(), 0u);
  EXPECT_EQ(jitter.pushed(), 5u);
}

TEST_F(VoiceJitterTest, JumpOfMoreThan100BackwardIsANewStream) {
  JitterHarness jitter;
  Stream stream;
  stream.first_seq = 20000;
  jitter.push(stream, 500, 502);
  jitter.push(stream.packet(400));  // 101 behind #501
  jitter.push(stream.packet(401));
  jitter.push(stream.packet(0));  // 401 behind
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), seqs_of(stream, {500, 501, 400, 401, 0}));
  EXPECT_EQ(discont, (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(jitter.lost(), 0u);
  EXPECT_EQ(jitter.dropped(), 0u);
}

// --- clock rate from request-pt-map, or arrival times -------------------------------

struct PtMapAnswer {
  const char* caps = nullptr;  // what the handler answers (nullptr: nothing)
  std::vector<guint> asked;    // the payload types asked for
};

GstCaps* answer_pt_map(GstElement*, guint pt, PtMapAnswer* answer) {
  answer->asked.push_back(pt);
  return answer->caps ? gst_caps_from_string(answer->caps) : nullptr;
}

TEST_F(VoiceJitterTest, WithoutClockRateInCapsRequestPtMapTimesTheLoss) {
  JitterHarness jitter(kOpusCapsWithoutClockRate);
  PtMapAnswer answer{kOpusCaps};
  g_signal_connect(jitter.element(), "request-pt-map", G_CALLBACK(answer_pt_map), &answer);
  const Stream stream;
  jitter.push(stream, 0, 3);
  EXPECT_TRUE(answer.asked.empty()) << "asked only when a loss needs timing";
  jitter.push(stream.packet(5, 9 * GST_MSECOND));  // 3, 4 lost; 9 ms late
  std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 5u) << describe(outputs);
  ASSERT_TRUE(outputs[3].lost);
  EXPECT_EQ(outputs[3].seq, stream.seq(3));
  EXPECT_EQ(outputs[3].timestamp, stream.pts(3));
  EXPECT_EQ(outputs[3].duration, 2 * kPacket);
  EXPECT_EQ(answer.asked, std::vector<guint>{kOpusPt});

  // The answer is kept...
  jitter.push(stream.packet(7));
  outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 2u) << describe(outputs);
  // #5 arrived 9 ms late: the RTP timestamps still say 20 ms from it.
  EXPECT_EQ(outputs[0].timestamp, stream.pts(6) + 9 * GST_MSECOND);
  EXPECT_EQ(outputs[0].duration, kPacket);
  EXPECT_EQ(answer.asked.size(), 1u);

  // ...until clear-pt-map.
  g_signal_emit_by_name(jitter.element(), "clear-pt-map");
  jitter.push(stream.packet(9));
  outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 2u) << describe(outputs);
  EXPECT_EQ(outputs[0].timestamp, stream.pts(8));
  EXPECT_EQ(outputs[0].duration, kPacket);
  EXPECT_EQ(answer.asked, (std::vector<guint>{kOpusPt, kOpusPt}));
  EXPECT_EQ(jitter.lost(), 4u);
}

TEST_F(VoiceJitterTest, WithoutAnyClockRateArrivalTimesTimeTheLoss) {
  JitterHarness jitter(kOpusCapsWithoutClockRate);
  PtMapAnswer answer;  // asked, answers nothing
  g_signal_connect(jitter.element(), "request-pt-map", G_CALLBACK(answer_pt_map), &answer);
  const Stream stream;
  jitter.push(stream, 0, 3);
  jitter.take();
  // 3, 4, 5 lost; #6 arrives 100 ms after #2 (RTP time says 80 ms): arrival
  // times space the 4 packets 25 ms apart.
  jitter.push(stream.packet(6, 20 * GST_MSECOND));
  const std::vector<Output> outputs = jitter.take();
  ASSERT_EQ(outputs.size(), 2u) << describe(outputs);
  ASSERT_TRUE(outputs[0].lost);
  EXPECT_EQ(outputs[0].seq, stream.seq(3));
  EXPECT_EQ(outputs[0].timestamp, stream.pts(2) + 25 * GST_MSECOND);
  EXPECT_EQ(outputs[0].duration, 75 * GST_MSECOND);
  EXPECT_TRUE(outputs[1].discont);
  EXPECT_EQ(answer.asked, std::vector<guint>{kOpusPt});
  EXPECT_EQ(jitter.lost(), 3u);
}

// --- bad input, flushing, restarting -------------------------------------------------

TEST_F(VoiceJitterTest, NonRtpBufferIsDroppedAndTheStreamContinues) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 2);
  const guint8 junk[] = {1, 2, 3};
  jitter.push(gst_buffer_new_memdup(junk, sizeof(junk)));
  jitter.push(stream, 2, 4);
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), seqs_of(stream, {0, 1, 2, 3}));
  EXPECT_EQ(discont, std::vector<size_t>{0});
  EXPECT_EQ(jitter.dropped(), 1u);
  EXPECT_EQ(jitter.pushed(), 4u);
  EXPECT_EQ(jitter.lost(), 0u);
}

void flush(JitterHarness& jitter) {
  ASSERT_TRUE(gst_harness_push_event(jitter.harness(), gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(jitter.harness(), gst_event_new_flush_stop(TRUE)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(jitter.harness(), gst_event_new_segment(&segment)));
}

TEST_F(VoiceJitterTest, FlushForgetsTheStream) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 5);
  flush(jitter);
  jitter.push(stream.packet(2));  // would be late without the flush
  jitter.push(stream.packet(3));
  flush(jitter);
  jitter.push(stream.packet(40));  // would be a gap of 36
  std::vector<size_t> discont;
  EXPECT_EQ(jitter.take_buffers(&discont), seqs_of(stream, {0, 1, 2, 3, 4, 2, 3, 40}));
  EXPECT_EQ(discont, (std::vector<size_t>{0, 5, 7}));
  EXPECT_EQ(jitter.lost(), 0u);
  EXPECT_EQ(jitter.dropped(), 0u);
  EXPECT_EQ(jitter.pushed(), 8u);
}

TEST_F(VoiceJitterTest, CountersResetWhenTheElementStartsAgain) {
  GstElement* element = gst_element_factory_make("voicejitter", nullptr);
  ASSERT_NE(element, nullptr);
  gst_object_ref_sink(element);
  const Stream stream;
  {
    HarnessPtr harness(gst_harness_new_with_element(element, "sink", "src"));
    gst_harness_set_src_caps_str(harness.get(), kOpusCaps);
    for (guint i : {0u, 1u, 1u, 4u}) ASSERT_EQ(gst_harness_push(harness.get(), stream.packet(i)), GST_FLOW_OK);
  }
  EXPECT_EQ(counter(element, "pushed-packets"), 3u) << "kept while stopped";
  EXPECT_EQ(counter(element, "lost-packets"), 2u);
  EXPECT_EQ(counter(element, "dropped-packets"), 1u);
  {
    HarnessPtr harness(gst_harness_new_with_element(element, "sink", "src"));
    EXPECT_EQ(counter(element, "pushed-packets"), 0u);
    EXPECT_EQ(counter(element, "lost-packets"), 0u);
    EXPECT_EQ(counter(element, "dropped-packets"), 0u);
    gst_harness_set_src_caps_str(harness.get(), kOpusCaps);
    ASSERT_EQ(gst_harness_push(harness.get(), stream.packet(1)), GST_FLOW_OK);  // a new stream: not late
    GstBuffer* out = gst_harness_pull(harness.get());
    EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(out, GST_BUFFER_FLAG_DISCONT));
    gst_buffer_unref(out);
    EXPECT_EQ(counter(element, "pushed-packets"), 1u);
  }
  gst_object_unref(element);
}

// What rtpbin and webrtcbin set is accepted and read back.
TEST_F(VoiceJitterTest, RtpbinPropertiesAreAccepted) {
  GstElement* element = gst_element_factory_make("voicejitter", nullptr);
  ASSERT_NE(element, nullptr);
  gst_object_ref_sink(element);
  guint latency = 0;
  gboolean retransmission = TRUE;
  g_object_get(element, "latency", &latency, "do-retransmission", &retransmission, nullptr);
  EXPECT_EQ(latency, 200u);
  EXPECT_FALSE(retransmission);
  g_object_set(element, "latency", 50u, "do-retransmission", TRUE, nullptr);
  g_object_get(element, "latency", &latency, "do-retransmission", &retransmission, nullptr);
  EXPECT_EQ(latency, 50u);
  EXPECT_TRUE(retransmission);
  EXPECT_NE(g_signal_lookup("handle-sync", G_OBJECT_TYPE(element)), 0u);
  gst_object_unref(element);
}

// --- sink_rtcp ------------------------------------------------------------------------

GstBuffer* rtcp_sender_report(guint32 ssrc, guint32 rtptime) {
  GstBuffer* buffer = gst_rtcp_buffer_new(1400);
  GstRTCPBuffer rtcp = GST_RTCP_BUFFER_INIT;
  g_assert(gst_rtcp_buffer_map(buffer, GST_MAP_READWRITE, &rtcp));
  GstRTCPPacket packet;
  g_assert(gst_rtcp_buffer_add_packet(&rtcp, GST_RTCP_TYPE_SR, &packet));
  gst_rtcp_packet_sr_set_sender_info(&packet, ssrc, G_GUINT64_CONSTANT(0xe8000000) << 32, rtptime, 10, 1000);
  gst_rtcp_buffer_unmap(&rtcp);
  return buffer;
}

// A source pad to push RTCP with, linked to `sinkpad` and started with
// stream-start, application/x-rtcp caps and a segment.
GstPad* rtcp_feeder(GstPad* sinkpad) {
  GstPad* feeder = gst_pad_new("rtcp_feeder", GST_PAD_SRC);
  gst_pad_set_active(feeder, TRUE);
  EXPECT_EQ(gst_pad_link(feeder, sinkpad), GST_PAD_LINK_OK);
  EXPECT_TRUE(gst_pad_push_event(feeder, gst_event_new_stream_start("rtcp")));
  g_autoptr(GstCaps) caps = gst_caps_new_empty_simple("application/x-rtcp");
  EXPECT_TRUE(gst_pad_push_event(feeder, gst_event_new_caps(caps)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  EXPECT_TRUE(gst_pad_push_event(feeder, gst_event_new_segment(&segment)));
  return feeder;
}

void release_feeder(GstPad* feeder) {
  g_autoptr(GstPad) peer = gst_pad_get_peer(feeder);
  if (peer) gst_pad_unlink(feeder, peer);
  gst_pad_set_active(feeder, FALSE);
  gst_object_unref(feeder);
}

TEST_F(VoiceJitterTest, RtcpPadIsRequestedOnceTakesRtcpAndIsReleased) {
  JitterHarness jitter;
  const Stream stream;
  jitter.push(stream, 0, 2);
  jitter.take();

  GstPad* rtcp_pad = gst_element_request_pad_simple(jitter.element(), "sink_rtcp");
  ASSERT_NE(rtcp_pad, nullptr);
  EXPECT_STREQ(GST_PAD_NAME(rtcp_pad), "sink_rtcp");
  EXPECT_EQ(GST_PAD_DIRECTION(rtcp_pad), GST_PAD_SINK);
  // Asked by template (a second request by name is refused by GStreamer itself).
  GstPadTemplate* templ = gst_element_get_pad_template(jitter.element(), "sink_rtcp");
  ASSERT_NE(templ, nullptr);
  EXPECT_EQ(gst_element_request_pad(jitter.element(), templ, nullptr, nullptr), nullptr) << "only one";

  const guint events_before = gst_harness_events_received(jitter.harness());
  GstPad* feeder = rtcp_feeder(rtcp_pad);
  for (guint i = 0; i < 3; ++i)
    EXPECT_EQ(gst_pad_push(feeder, rtcp_sender_report(kSsrc, stream.rtptime(i))), GST_FLOW_OK);
  EXPECT_TRUE(jitter.take().empty()) << "RTCP does not reach src";
  EXPECT_EQ(gst_harness_events_received(jitter.harness()), events_before) << "nor do its events";
  EXPECT_EQ(gst_harness_buffers_received(jitter.harness()), 2u);
  g_autoptr(GstCaps) src_caps = gst_pad_get_current_caps(jitter.harness()->sinkpad);
  g_autoptr(GstCaps) rtp_caps = gst_caps_from_string(kOpusCaps);
  ASSERT_NE(src_caps, nullptr);
  EXPECT_TRUE(gst_caps_is_equal(src_caps, rtp_caps)) << "the RTCP caps stay on the RTCP pad";
  EXPECT_EQ(jitter.dropped(), 0u) << "RTCP is not counted as dropped RTP";

  jitter.push(stream, 2, 3);
  EXPECT_EQ(jitter.take_buffers(), seqs_of(stream, {2})) << "RTP flows on";

  release_feeder(feeder);
  gst_element_release_request_pad(jitter.element(), rtcp_pad);
  gst_object_unref(rtcp_pad);
  EXPECT_EQ(gst_element_get_static_pad(jitter.element(), "sink_rtcp"), nullptr);
  GstPad* again = gst_element_request_pad_simple(jitter.element(), "sink_rtcp");
  ASSERT_NE(again, nullptr) << "a released pad can be requested again";
  gst_element_release_request_pad(jitter.element(), again);
  gst_object_unref(again);
}

// --- integration: concealment through rtpopusdepay ! voiceopusdec -----------------------

using OpusPacket = std::vector<guint8>;

// Packets of GStreamer's opusenc for `count` 20 ms frames of a mono 440 Hz
// sine at 48 kHz, without the OpusHead/OpusTags headers RTP does not carry.
std::vector<OpusPacket> encode_sine(int count) {
  HarnessPtr harness(gst_harness_new("opusenc"));
  g_object_set(harness->element, "bitrate", 20000, nullptr);
  gst_util_set_object_arg(G_OBJECT(harness->element), "frame-size", "20");
  gst_harness_set_src_caps_str(harness.get(), "audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1");
  constexpr int kFrame = 960;
  for (int i = 0; i < count; ++i) {
    std::vector<gint16> pcm(kFrame);
    for (int n = 0; n < kFrame; ++n)
      pcm[static_cast<size_t>(n)] =
          static_cast<gint16>(0.5 * 32767 * std::sin(2 * M_PI * 440.0 * (i * kFrame + n) / 48000.0));
    GstBuffer* buffer = gst_buffer_new_memdup(pcm.data(), pcm.size() * sizeof(gint16));
    GST_BUFFER_PTS(buffer) = static_cast<GstClockTime>(i) * kPacket;
    GST_BUFFER_DURATION(buffer) = kPacket;
    EXPECT_EQ(gst_harness_push(harness.get(), buffer), GST_FLOW_OK);
  }
  EXPECT_TRUE(gst_harness_push_event(harness.get(), gst_event_new_eos()));
  std::vector<OpusPacket> packets;
  while (GstBuffer* buffer = gst_harness_try_pull(harness.get())) {
    if (!GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_HEADER)) packets.push_back(bytes_of(buffer));
    gst_buffer_unref(buffer);
  }
  EXPECT_GE(packets.size(), static_cast<size_t>(count));
  packets.resize(static_cast<size_t>(count));
  return packets;
}

TEST_F(VoiceJitterTest, LostPacketsAreConcealedByVoiceopusdec) {
  const std::vector<OpusPacket> opus = encode_sine(20);
  HarnessPtr harness(gst_harness_new_parse("voicejitter name=jitter ! rtpopusdepay ! voiceopusdec name=dec"));
  gst_harness_set_src_caps_str(harness.get(), kOpusCaps);
  Stream stream;
  stream.start = 0;
  for (guint i = 0; i < opus.size(); ++i) {
    if (i == 10 || i == 11) continue;  // lost
    ASSERT_EQ(gst_harness_push(harness.get(), rtp_packet(stream.seq(i), stream.rtptime(i), stream.pts(i), opus[i])),
              GST_FLOW_OK);
  }

  std::vector<GstClockTime> pts;
  std::vector<gsize> samples;
  while (GstBuffer* buffer = gst_harness_try_pull(harness.get())) {
    pts.push_back(GST_BUFFER_PTS(buffer));
    samples.push_back(gst_buffer_get_size(buffer) / sizeof(gint16));
    gst_buffer_unref(buffer);
  }
  g_autoptr(GstCaps) caps = gst_pad_get_current_caps(harness->sinkpad);
  ASSERT_NE(caps, nullptr);
  gint rate = 0;
  gst_structure_get_int(gst_caps_get_structure(caps, 0), "rate", &rate);
  ASSERT_EQ(rate, 24000);
  ASSERT_EQ(samples.size(), 19u) << "18 decoded packets and one concealment";
  EXPECT_EQ(pts[10], stream.pts(10));
  EXPECT_EQ(samples[10], 2u * 480u) << "40 ms concealed at 24 kHz";
  gsize total = 0;
  for (gsize n : samples) total += n;
  EXPECT_EQ(total, opus.size() * 480) << "as long as the 400 ms sent";

  g_autoptr(GstElement) jitter = gst_bin_get_by_name(GST_BIN(harness->element), "jitter");
  g_autoptr(GstElement) dec = gst_bin_get_by_name(GST_BIN(harness->element), "dec");
  EXPECT_EQ(counter(jitter, "lost-packets"), 2u);
  EXPECT_EQ(counter(dec, "concealed-ms"), 40u);
  EXPECT_EQ(counter(dec, "decoded-packets"), 18u);
}

// --- integration: inside rtpbin ----------------------------------------------------------

struct RtpbinContext {
  GstHarness* harness = nullptr;
  std::vector<GstElement*> jitterbuffers;  // what request-jitterbuffer returned (owned by rtpbin)
  std::vector<std::pair<guint, guint>> pt_maps_asked;  // (session, pt)
  std::vector<std::string> src_pads;
};

GstElement* provide_jitterbuffer(GstElement*, guint, RtpbinContext* context) {
  GstElement* jitterbuffer = gst_element_factory_make("voicejitter", nullptr);
  context->jitterbuffers.push_back(jitterbuffer);
  return jitterbuffer;
}

GstCaps* answer_rtpbin_pt_map(GstElement*, guint session, guint pt, RtpbinContext* context) {
  context->pt_maps_asked.emplace_back(session, pt);
  return pt == kOpusPt ? gst_caps_from_string(kOpusCaps) : nullptr;
}

void link_rtpbin_output(GstElement*, GstPad* pad, RtpbinContext* context) {
  if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC) return;
  context->src_pads.emplace_back(GST_PAD_NAME(pad));
  gst_harness_add_element_src_pad(context->harness, pad);
}

std::vector<GstElement*> voicejitters_in(GstBin* bin) {
  std::vector<GstElement*> found;
  GstIterator* it = gst_bin_iterate_elements(bin);
  GValue item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto* element = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory* factory = gst_element_get_factory(element);  // transfer none
    if (factory && g_str_equal(GST_OBJECT_NAME(factory), "voicejitter")) found.push_back(element);
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  return found;
}

GstPadProbeReturn count_rtcp(GstPad*, GstPadProbeInfo*, gpointer count) {
  ++*static_cast<guint*>(count);
  return GST_PAD_PROBE_OK;
}

TEST_F(VoiceJitterTest, RtpbinUsesItAsItsJitterbuffer) {
  GstElement* rtpbin = gst_element_factory_make("rtpbin", nullptr);
  ASSERT_NE(rtpbin, nullptr);
  gst_object_ref_sink(rtpbin);
  RtpbinContext context;
  g_signal_connect(rtpbin, "request-jitterbuffer", G_CALLBACK(provide_jitterbuffer), &context);
  g_signal_connect(rtpbin, "request-pt-map", G_CALLBACK(answer_rtpbin_pt_map), &context);
  g_signal_connect(rtpbin, "pad-added", G_CALLBACK(link_rtpbin_output), &context);
  HarnessPtr harness(gst_harness_new_with_element(rtpbin, "recv_rtp_sink_0", nullptr));
  context.harness = harness.get();
  gst_harness_set_src_caps_str(harness.get(), "application/x-rtp");  // the clock rate comes from request-pt-map
  GstPad* rtcp_sink = gst_element_request_pad_simple(rtpbin, "recv_rtcp_sink_0");
  ASSERT_NE(rtcp_sink, nullptr);
  GstPad* rtcp = rtcp_feeder(rtcp_sink);

  const Stream stream;
  for (guint i = 0; i < 10; ++i) ASSERT_EQ(gst_harness_push(harness.get(), stream.packet(i)), GST_FLOW_OK);
  // 10 and 11 lost; #12 arrives 13 ms late.
  ASSERT_EQ(gst_harness_push(harness.get(), stream.packet(12, 13 * GST_MSECOND)), GST_FLOW_OK);
  for (guint i = 13; i < 15; ++i) ASSERT_EQ(gst_harness_push(harness.get(), stream.packet(i)), GST_FLOW_OK);

  ASSERT_EQ(context.jitterbuffers.size(), 1u);
  const std::vector<GstElement*> inside = voicejitters_in(GST_BIN(rtpbin));
  ASSERT_EQ(inside.size(), 1u);
  GstElement* jitter = inside[0];
  EXPECT_EQ(jitter, context.jitterbuffers[0]);
  ASSERT_EQ(context.src_pads.size(), 1u);
  EXPECT_EQ(context.src_pads[0], "recv_rtp_src_0_" + std::to_string(kSsrc) + "_111");
  ASSERT_FALSE(context.pt_maps_asked.empty());
  for (const auto& [session, pt] : context.pt_maps_asked) {
    EXPECT_EQ(session, 0u);
    EXPECT_EQ(pt, kOpusPt);
  }

  std::vector<guint> seqs;
  std::vector<bool> discont;
  while (GstBuffer* buffer = gst_harness_try_pull(harness.get())) {
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    EXPECT_TRUE(gst_rtp_buffer_map(buffer, GST_MAP_READ, &rtp));
    seqs.push_back(gst_rtp_buffer_get_seq(&rtp));
    gst_rtp_buffer_unmap(&rtp);
    discont.push_back(GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DISCONT));
    gst_buffer_unref(buffer);
  }
  EXPECT_EQ(seqs, seqs_of(stream, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14}));
  ASSERT_EQ(discont.size(), 13u);
  EXPECT_TRUE(discont[10]) << "the packet after the gap";
  EXPECT_EQ(counter(jitter, "pushed-packets"), 13u);
  EXPECT_EQ(counter(jitter, "lost-packets"), 2u);
  EXPECT_EQ(counter(jitter, "dropped-packets"), 0u);

  // The lost event reaches rtpbin's src pad, timed by the clock rate rtpbin
  // got from request-pt-map (arrival times would say 24.3 ms per packet).
  guint lost_events = 0;
  while (GstEvent* event = gst_harness_try_pull_event(harness.get())) {
    if (gst_event_has_name(event, "GstRTPPacketLost")) {
      ++lost_events;
      const GstStructure* s = gst_event_get_structure(event);
      guint seqnum = 0;
      GstClockTime timestamp = 0, duration = 0;
      EXPECT_TRUE(gst_structure_get_uint(s, "seqnum", &seqnum));
      EXPECT_TRUE(gst_structure_get_clock_time(s, "timestamp", &timestamp));
      EXPECT_TRUE(gst_structure_get_clock_time(s, "duration", &duration));
      EXPECT_EQ(seqnum, stream.seq(10));
      EXPECT_EQ(timestamp, stream.pts(10));
      EXPECT_EQ(duration, 2 * kPacket);
    }
    gst_event_unref(event);
  }
  EXPECT_EQ(lost_events, 1u);

  // rtpbin linked its RTCP to the element's sink_rtcp; a sender report goes
  // there and no further.
  g_autoptr(GstPad) jitter_rtcp = gst_element_get_static_pad(jitter, "sink_rtcp");
  ASSERT_NE(jitter_rtcp, nullptr) << "rtpbin requested sink_rtcp";
  EXPECT_TRUE(gst_pad_is_linked(jitter_rtcp));
  guint rtcp_buffers = 0;
  gst_pad_add_probe(jitter_rtcp, GST_PAD_PROBE_TYPE_BUFFER, count_rtcp,
                    &rtcp_buffers, nullptr);
  EXPECT_EQ(gst_pad_push(rtcp, rtcp_sender_report(kSsrc, stream.rtptime(14))), GST_FLOW_OK);
  EXPECT_EQ(rtcp_buffers, 1u);
  EXPECT_EQ(gst_harness_try_pull(harness.get()), nullptr);
  EXPECT_EQ(counter(jitter, "pushed-packets"), 13u);

  release_feeder(rtcp);
  gst_element_release_request_pad(rtpbin, rtcp_sink);
  gst_object_unref(rtcp_sink);
  harness.reset();
  gst_object_unref(rtpbin);
}

class GstEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    gst_init(nullptr, nullptr);
    gst_plugin_voicertp_register();
    gst_plugin_voiceopus_register();
    for (const char* name : {"voicejitter", "voiceopusdec"}) {
      g_autoptr(GstElementFactory) factory = gst_element_factory_find(name);
      ASSERT_NE(factory, nullptr) << name;
    }
  }
  // Lets GST_TRACERS=leaks report anything still alive.
  void TearDown() override { gst_deinit(); }
};

}  // namespace

int main(int argc, char** argv) {
  g_log_set_writer_func(record_glib_warning, nullptr, nullptr);
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new GstEnvironment);
  return RUN_ALL_TESTS();
}
