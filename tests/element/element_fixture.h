// Shared fixture of the openairealtime element tests: the element in a
// GstHarness on a test clock (output pacing is cranked deterministically),
// a bus to watch its messages, and helpers to feed caller audio.
#pragma once

#include <gst/check/gstharness.h>
#include <gst/check/gsttestclock.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fake_realtime_server.h"

namespace element_test {

constexpr const char* kCaps = "audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved";
constexpr int kRate = 24000;
constexpr int kFrameSamples = 480;  // 20 ms
constexpr GstClockTime kFrame = 20 * GST_MSECOND;

struct HarnessDeleter {
  void operator()(GstHarness* harness) const { gst_harness_teardown(harness); }
};
struct MessageUnref {
  void operator()(GstMessage* message) const { gst_message_unref(message); }
};
using MessagePtr = std::unique_ptr<GstMessage, MessageUnref>;

inline std::vector<int16_t> tone(int ms, double hz, double amplitude) {
  std::vector<int16_t> samples(static_cast<size_t>(ms) * kRate / 1000);
  for (size_t i = 0; i < samples.size(); ++i)
    samples[i] = static_cast<int16_t>(amplitude * 32767 * std::sin(2 * M_PI * hz * static_cast<double>(i) / kRate));
  return samples;
}

inline std::vector<int16_t> silence(int ms) { return std::vector<int16_t>(static_cast<size_t>(ms) * kRate / 1000); }

struct Frame {
  GstClockTime pts;
  bool gap;
  bool voiced;  // any non-zero sample
  bool eos;     // no frame: the output ended
};

// The harness sets an element with a sink pad to PLAYING as soon as it wraps
// it, so the element is configured (and given its bus and test clock) first.
class ElementHarness {
 public:
  explicit ElementHarness(const std::function<void(GstElement*)>& configure, GstClockTime start_time = 0)
      : bus_(gst_bus_new()) {
    GstElement* element = gst_element_factory_make("openairealtime", nullptr);
    g_assert(element);
    gst_element_set_bus(element, bus_);
    GstClock* clock = gst_test_clock_new_with_start_time(start_time);
    gst_element_set_clock(element, clock);  // the harness adopts a test clock it finds
    gst_object_unref(clock);
    configure(element);
    harness_.reset(gst_harness_new_with_element(element, "sink", "src"));
    gst_object_unref(element);
    gst_harness_set_src_caps_str(harness_.get(), kCaps);
  }
  ~ElementHarness() {
    harness_.reset();
    // Queued messages hold the element, which holds the bus: break the cycle.
    gst_bus_set_flushing(bus_, TRUE);
    seen_.clear();
    gst_object_unref(bus_);
  }

  GstElement* element() const { return harness_->element; }
  GstHarness* harness() const { return harness_.get(); }

  // Waits for an element message named `name` whose structure satisfies `match`.
  MessagePtr wait_element_message(const std::string& name,
                                  const std::function<bool(const GstStructure*)>& match = nullptr,
                                  int timeout_ms = 10000) {
    return wait_message([&](GstMessage* message) {
      if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_ELEMENT) return false;
      const GstStructure* structure = gst_message_get_structure(message);
      return gst_structure_has_name(structure, name.c_str()) && (!match || match(structure));
    }, timeout_ms);
  }

  MessagePtr wait_session_state(const std::string& state, int timeout_ms = 10000) {
    return wait_element_message(
        "openairealtime-session",
        [&](const GstStructure* s) { return state == gst_structure_get_string(s, "state"); }, timeout_ms);
  }

  MessagePtr wait_message_type(GstMessageType type, int timeout_ms = 10000) {
    return wait_message([type](GstMessage* message) { return GST_MESSAGE_TYPE(message) == type; }, timeout_ms);
  }

  // Every message seen so far is kept, so a later wait can find an early one.
  MessagePtr wait_message(const std::function<bool(GstMessage*)>& match, int timeout_ms) {
    const gint64 deadline = g_get_monotonic_time() + gint64{timeout_ms} * 1000;
    size_t checked = 0;
    while (true) {
      for (; checked < seen_.size(); ++checked)
        if (match(seen_[checked].get())) return MessagePtr(gst_message_ref(seen_[checked].get()));
      const gint64 left = deadline - g_get_monotonic_time();
      if (left <= 0) return nullptr;
      GstMessage* message = gst_bus_timed_pop(bus_, static_cast<GstClockTime>(left) * 1000);
      if (!message) return nullptr;
      seen_.emplace_back(message);
    }
  }

  void push(const std::vector<int16_t>& samples, int chunk_samples = kFrameSamples) {
    for (size_t offset = 0; offset < samples.size(); offset += chunk_samples) {
      const size_t count = std::min<size_t>(chunk_samples, samples.size() - offset);
      GstBuffer* buffer = gst_buffer_new_memdup(samples.data() + offset, count * sizeof(int16_t));
      ASSERT_EQ(gst_harness_push(harness_.get(), buffer), GST_FLOW_OK);
    }
  }

  // Lets one output frame through the clock (every frame waits on it) and
  // pulls it.
  Frame crank_frame() {
    EXPECT_TRUE(gst_harness_crank_single_clock_wait(harness_.get()));
    GstBuffer* buffer = gst_harness_pull(harness_.get());
    if (!buffer) return {GST_CLOCK_TIME_NONE, true, false, true};
    Frame frame{GST_BUFFER_PTS(buffer), GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_GAP), false, false};
    EXPECT_EQ(GST_BUFFER_DURATION(buffer), kFrame);
    GstMapInfo map;
    gst_buffer_map(buffer, &map, GST_MAP_READ);
    EXPECT_EQ(map.size, static_cast<gsize>(kFrameSamples * 2));
    const auto* samples = reinterpret_cast<const int16_t*>(map.data);
    for (gsize i = 0; i < map.size / 2; ++i) frame.voiced = frame.voiced || samples[i] != 0;
    gst_buffer_unmap(buffer, &map);
    gst_buffer_unref(buffer);
    return frame;
  }

  guint64 stat(const char* name) {
    guint64 value = 0;
    g_object_get(element(), name, &value, nullptr);
    return value;
  }

  // Polls until `condition` holds (network events arrive on another thread).
  static bool eventually(const std::function<bool()>& condition, int timeout_ms = 10000) {
    const gint64 deadline = g_get_monotonic_time() + gint64{timeout_ms} * 1000;
    while (!condition()) {
      if (g_get_monotonic_time() > deadline) return false;
      g_usleep(5000);
    }
    return true;
  }

 private:
  std::unique_ptr<GstHarness, HarnessDeleter> harness_;
  GstBus* bus_;
  std::vector<MessagePtr> seen_;
};

// One caller turn the fake server's energy VAD recognises: speech, then
// enough silence to end the turn (server-vad default 500 ms).
inline std::vector<int16_t> caller_turn(int speech_ms = 600, int silence_ms = 900) {
  std::vector<int16_t> samples = tone(speech_ms, 300, 0.3);
  const std::vector<int16_t> quiet = silence(silence_ms);
  samples.insert(samples.end(), quiet.begin(), quiet.end());
  return samples;
}

class GstEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { gst_init(nullptr, nullptr); }
  // Lets GST_TRACERS=leaks report anything still alive.
  void TearDown() override { gst_deinit(); }
};

}  // namespace element_test
