// openairealtime output: live pacing on the pipeline clock, barge-in flush and
// truncate accounting, EOS after play-out. The harness' test clock makes every
// frame's release deterministic: nothing here depends on wall-clock timing.
#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <string>

#include "element_fixture.h"

using namespace element_test;

namespace {

class OutputTest : public ::testing::Test {
 protected:
  void start(fake_realtime::Server& server, const std::function<void(GstElement*)>& configure = nullptr,
             GstClockTime start_time = 0) {
    harness = std::make_unique<ElementHarness>(
        [&](GstElement* element) {
          g_object_set(element, "url", server.url().c_str(), "api-key", "sk-test", nullptr);
          if (configure) configure(element);
        },
        start_time);
    ASSERT_TRUE(harness->wait_session_state("ready"));
  }

  // Releases one frame and waits until the task is back in its clock wait, so
  // nothing else can happen before the next crank.
  Frame next() {
    Frame frame = harness->crank_frame();
    EXPECT_FALSE(frame.eos);
    EXPECT_TRUE(gst_harness_wait_for_clock_id_waits(harness->harness(), 1, 5));
    return frame;
  }

  GstClockTime running_time() {
    GstTestClock* clock = gst_harness_get_testclock(harness->harness());
    const GstClockTime now = gst_clock_get_time(GST_CLOCK(clock)) - gst_element_get_base_time(harness->element());
    gst_object_unref(clock);
    return now;
  }

  std::unique_ptr<ElementHarness> harness;
};

TEST_F(OutputTest, AnswersLatencyAsALiveSource) {
  fake_realtime::Server server;
  start(server);
  EXPECT_EQ(gst_harness_query_latency(harness->harness()), kFrame);
}

TEST_F(OutputTest, BehavesAsALiveSourceInStateChanges) {
  fake_realtime::Server server;
  GstElement* element = gst_element_factory_make("openairealtime", nullptr);
  ASSERT_TRUE(element);
  g_object_set(element, "url", server.url().c_str(), "api-key", "sk-test", nullptr);
  EXPECT_EQ(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_NO_PREROLL);
  EXPECT_EQ(gst_element_set_state(element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gst_object_unref(element);
}

TEST_F(OutputTest, FirstPtsIsTheRunningTimeWhenPlaybackStarts) {
  fake_realtime::Server server;
  start(server, nullptr, 7 * GST_SECOND);
  const Frame first = next();
  EXPECT_EQ(first.pts, 7 * GST_SECOND);
  EXPECT_TRUE(first.gap);
  EXPECT_FALSE(first.voiced);
  EXPECT_EQ(next().pts, 7 * GST_SECOND + kFrame);
}

TEST_F(OutputTest, AiSpeechIsPacedOnThePipelineClock) {
  fake_realtime::Behaviour behaviour;
  behaviour.reply_ms = 1000;
  behaviour.reply_speed = 8.0;  // all of it arrives long before it is due
  fake_realtime::Server server(behaviour);
  start(server);
  harness->push(caller_turn());
  ASSERT_TRUE(harness->wait_element_message("openairealtime-usage")) << "reply complete";
  ASSERT_EQ(harness->stat("received-ms"), 1000u);

  std::vector<Frame> frames;
  for (int i = 0; i < 80; ++i) {
    frames.push_back(next());
    // Each frame is released by the clock reaching its PTS, never ahead of it.
    EXPECT_EQ(gst_harness_buffers_in_queue(harness->harness()), 0u);
    EXPECT_EQ(frames.back().pts, running_time());
  }
  int voiced = 0, first_voiced = -1, last_voiced = -1;
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].pts, frames[0].pts + i * kFrame) << "contiguous PTS at frame " << i;
    EXPECT_EQ(frames[i].gap, !frames[i].voiced) << "GAP marks exactly the silence, frame " << i;
    if (!frames[i].voiced) continue;
    ++voiced;
    if (first_voiced < 0) first_voiced = static_cast<int>(i);
    last_voiced = static_cast<int>(i);
  }
  EXPECT_EQ(voiced, 50) << "1000 ms of speech = 50 frames";
  EXPECT_EQ(last_voiced - first_voiced + 1, 50) << "played without holes";
  EXPECT_EQ(frames[last_voiced].pts + kFrame - frames[first_voiced].pts, GST_SECOND)
      << "1 s of AI audio spans 1 s of running time";
  EXPECT_EQ(harness->stat("played-ms"), 1000u);
}

TEST_F(OutputTest, BargeInFlushesAndTruncatesAtWhatWasPlayed) {
  fake_realtime::Behaviour behaviour;
  behaviour.reply_ms = 4000;
  behaviour.reply_speed = 2.0;  // still streaming when the caller interrupts
  fake_realtime::Server server(behaviour);
  start(server);
  harness->push(caller_turn());
  ASSERT_TRUE(ElementHarness::eventually([&] { return harness->stat("received-ms") >= 600; }));

  int voiced_before = 0;
  for (int i = 0; i < 40 && voiced_before < 12; ++i) voiced_before += next().voiced;
  ASSERT_EQ(voiced_before, 12);

  harness->push(tone(500, 300, 0.3));  // the caller talks over the AI
  MessagePtr barge_in = harness->wait_element_message("openairealtime-barge-in");
  ASSERT_TRUE(barge_in);
  const GstStructure* fields = gst_message_get_structure(barge_in.get());
  guint64 audio_end_ms = 0, received_ms = 0;
  ASSERT_TRUE(gst_structure_get_uint64(fields, "audio-end-ms", &audio_end_ms));
  ASSERT_TRUE(gst_structure_get_uint64(fields, "received-ms", &received_ms));
  const std::string item_id = gst_structure_get_string(fields, "item-id");

  int voiced_after = 0;
  for (int i = 0; i < 60; ++i) voiced_after += next().voiced;
  EXPECT_EQ(voiced_after, 0) << "the flush happened while the task waited for the next frame";
  const guint64 pushed_ms = static_cast<guint64>(voiced_before + voiced_after) * 20;
  EXPECT_EQ(audio_end_ms, pushed_ms) << "truncate at exactly what was pushed downstream";
  EXPECT_LE(audio_end_ms, received_ms);
  EXPECT_EQ(harness->stat("played-ms"), pushed_ms);
  EXPECT_EQ(harness->stat("barge-ins"), 1u);

  ASSERT_TRUE(server.wait_until([](const fake_realtime::Server& s) { return !s.session(0).truncates.empty(); }));
  const fake_realtime::SessionSnapshot session = server.session(0);
  ASSERT_EQ(session.truncates.size(), 1u);
  EXPECT_EQ(session.truncates[0].item_id, item_id);
  EXPECT_EQ(session.truncates[0].content_index, 0);
  EXPECT_EQ(session.truncates[0].audio_end_ms, static_cast<int>(audio_end_ms));
  EXPECT_LE(session.truncates[0].audio_end_ms, session.truncates[0].audio_sent_ms);
  EXPECT_TRUE(std::find(session.errors_sent.begin(), session.errors_sent.end(), "invalid_value") ==
              session.errors_sent.end());
  EXPECT_EQ(std::count(session.event_types.begin(), session.event_types.end(), "response.cancel"), 0)
      << "server VAD cancels by itself";
}

TEST_F(OutputTest, NoTruncateWhenNothingIsPlaying) {
  fake_realtime::Server server;
  start(server);
  harness->push(caller_turn());
  ASSERT_TRUE(harness->wait_element_message("openairealtime-usage"));
  for (int i = 0; i < 70; ++i) next();  // everything played out
  harness->push(caller_turn());
  ASSERT_TRUE(server.wait_until([](const fake_realtime::Server& s) { return s.session(0).responses_started >= 2; }));
  EXPECT_TRUE(server.session(0).truncates.empty());
  EXPECT_EQ(harness->stat("barge-ins"), 0u);
}

TEST_F(OutputTest, EosAfterTheReplyHasPlayedOut) {
  fake_realtime::Server server;
  start(server, [](GstElement* element) { g_object_set(element, "eos-linger-ms", 200u, nullptr); });
  harness->push(caller_turn());
  ASSERT_TRUE(harness->wait_element_message("openairealtime-usage"));
  gst_harness_push_event(harness->harness(), gst_event_new_eos());
  EXPECT_EQ(gst_harness_push(harness->harness(), gst_buffer_new_allocate(nullptr, 960, nullptr)), GST_FLOW_EOS);

  // Crank frame by frame until the task sends EOS instead of a frame.
  GstHarness* h = harness->harness();
  int voiced = 0, silent_after_voice = 0;
  bool eos = false;
  for (int i = 0; i < 200 && !eos; ++i) {
    ASSERT_TRUE(gst_harness_crank_single_clock_wait(h));
    ASSERT_TRUE(ElementHarness::eventually([&] {
      while (GstEvent* event = gst_harness_try_pull_event(h)) {
        eos = eos || GST_EVENT_TYPE(event) == GST_EVENT_EOS;
        gst_event_unref(event);
      }
      return eos || gst_harness_buffers_in_queue(h) > 0;
    }));
    if (eos) break;
    GstBuffer* buffer = gst_harness_pull(h);
    GstMapInfo map;
    gst_buffer_map(buffer, &map, GST_MAP_READ);
    const bool frame_voiced = std::any_of(reinterpret_cast<const int16_t*>(map.data),
                                          reinterpret_cast<const int16_t*>(map.data + map.size),
                                          [](int16_t sample) { return sample != 0; });
    gst_buffer_unmap(buffer, &map);
    gst_buffer_unref(buffer);
    voiced += frame_voiced;
    if (voiced > 0 && !frame_voiced) ++silent_after_voice;
  }
  EXPECT_TRUE(eos);
  EXPECT_EQ(voiced, 50) << "the whole reply played before EOS";
  EXPECT_EQ(silent_after_voice, 9) << "200 ms of linger: nine silent frames, then EOS in the tenth slot";
}

// A real pipeline on the system clock: pausing while the task is blocked in a
// push to a prerolling sink must not deadlock, and output resumes with
// increasing timestamps. Only counts and orderings are asserted.
TEST(OutputPipelineTest, PausesAndResumesInAPipeline) {
  fake_realtime::Server server;
  g_autoptr(GError) error = nullptr;
  const std::string description = "audiotestsrc is-live=true wave=silence samplesperbuffer=480 ! " +
                                  std::string(kCaps) + " ! openairealtime name=ai api-key=sk-test url=" +
                                  server.url() + " ! fakesink name=sink sync=true signal-handoffs=true";
  struct StopAndUnref {
    void operator()(GstElement* pipeline) const {
      gst_element_set_state(pipeline, GST_STATE_NULL);
      gst_object_unref(pipeline);
    }
  };
  std::unique_ptr<GstElement, StopAndUnref> owner(gst_parse_launch(description.c_str(), &error));
  ASSERT_TRUE(owner) << error->message;
  GstElement* pipeline = owner.get();
  struct Seen {
    std::mutex mutex;
    std::vector<GstClockTime> pts;
  } seen;
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  g_signal_connect(sink, "handoff", G_CALLBACK(+[](GstElement*, GstBuffer* buffer, GstPad*, Seen* seen) {
                     std::lock_guard lock(seen->mutex);
                     seen->pts.push_back(GST_BUFFER_PTS(buffer));
                   }),
                   &seen);
  gst_object_unref(sink);
  auto count = [&seen] {
    std::lock_guard lock(seen.mutex);
    return seen.pts.size();
  };

  ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  ASSERT_TRUE(ElementHarness::eventually([&] { return count() >= 5; }));
  gst_element_set_state(pipeline, GST_STATE_PAUSED);
  EXPECT_NE(gst_element_get_state(pipeline, nullptr, nullptr, 10 * GST_SECOND), GST_STATE_CHANGE_ASYNC)
      << "pausing completed";
  const size_t paused_at = count();
  ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  ASSERT_TRUE(ElementHarness::eventually([&] { return count() >= paused_at + 5; }));
  EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  {
    std::lock_guard lock(seen.mutex);
    for (size_t i = 1; i < seen.pts.size(); ++i) EXPECT_GT(seen.pts[i], seen.pts[i - 1]) << "at " << i;
  }
}

// shared-pacing: several instances in their own pipelines are pushed by the
// pacing threads ("realtime:pacerN", one per core), each instance by one
// thread with contiguous timestamps; pausing one does not stop the others.
// Counts, orderings and thread names only.
TEST(OutputPipelineTest, SharedPacingSpreadsInstancesOverOneThreadPerCore) {
  fake_realtime::Server server;
  struct Output {
    std::mutex mutex;
    std::vector<GstClockTime> pts;
    std::set<std::string> threads;
  };
  struct StopAndUnref {
    void operator()(GstElement* pipeline) const {
      gst_element_set_state(pipeline, GST_STATE_NULL);
      gst_object_unref(pipeline);
    }
  };
  constexpr int kInstances = 3;
  std::vector<std::unique_ptr<GstElement, StopAndUnref>> pipelines;
  std::vector<std::unique_ptr<Output>> outputs;
  for (int i = 0; i < kInstances; ++i) {
    g_autoptr(GError) error = nullptr;
    const std::string description = "audiotestsrc is-live=true wave=silence samplesperbuffer=480 ! " +
                                    std::string(kCaps) + " ! openairealtime shared-pacing=true api-key=sk-test url=" +
                                    server.url() + " ! fakesink name=sink sync=false signal-handoffs=true";
    pipelines.emplace_back(gst_parse_launch(description.c_str(), &error));
    ASSERT_TRUE(pipelines.back()) << error->message;
    outputs.push_back(std::make_unique<Output>());
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipelines.back().get()), "sink");
    g_signal_connect(sink, "handoff", G_CALLBACK(+[](GstElement*, GstBuffer* buffer, GstPad*, Output* output) {
                       char name[16] = "";
                       pthread_getname_np(pthread_self(), name, sizeof name);
                       std::lock_guard lock(output->mutex);
                       output->pts.push_back(GST_BUFFER_PTS(buffer));
                       output->threads.insert(name);
                     }),
                     outputs.back().get());
    gst_object_unref(sink);
  }
  auto count = [&](int i) {
    std::lock_guard lock(outputs[i]->mutex);
    return outputs[i]->pts.size();
  };
  for (auto& pipeline : pipelines)
    ASSERT_NE(gst_element_set_state(pipeline.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  for (int i = 0; i < kInstances; ++i) ASSERT_TRUE(ElementHarness::eventually([&] { return count(i) >= 25; }));

  gst_element_set_state(pipelines[0].get(), GST_STATE_PAUSED);
  const size_t others_at = count(1);
  ASSERT_TRUE(ElementHarness::eventually([&] { return count(1) >= others_at + 10; })) << "one paused, others go on";
  ASSERT_NE(gst_element_set_state(pipelines[0].get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  const size_t resumed_at = count(0);
  ASSERT_TRUE(ElementHarness::eventually([&] { return count(0) >= resumed_at + 10; })) << "resumed";
  for (auto& pipeline : pipelines) EXPECT_EQ(gst_element_set_state(pipeline.get(), GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);

  std::set<std::string> pacing_threads;
  for (int i = 0; i < kInstances; ++i) {
    std::lock_guard lock(outputs[i]->mutex);
    // Instance 0, removed and added again, went back to the emptiest thread: its own.
    EXPECT_EQ(outputs[i]->threads.size(), 1u) << "instance " << i;
    for (const std::string& name : outputs[i]->threads) {
      EXPECT_EQ(name.rfind("realtime:pacer", 0), 0u) << name;
      pacing_threads.insert(name);
    }
    const std::vector<GstClockTime>& pts = outputs[i]->pts;
    // Contiguous while playing (instance 0 jumps once, at its resume).
    size_t jumps = 0;
    for (size_t n = 1; n < pts.size(); ++n) {
      EXPECT_GT(pts[n], pts[n - 1]) << "instance " << i << " frame " << n;
      jumps += pts[n] != pts[n - 1] + kFrame;
    }
    EXPECT_LE(jumps, i == 0 ? 1u : 0u) << "instance " << i;
  }
  // Each instance went to the thread with the fewest: one per core, at most 8.
  EXPECT_EQ(pacing_threads.size(), std::min<size_t>(kInstances, std::min(g_get_num_processors(), 8u)));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new GstEnvironment);
  return RUN_ALL_TESTS();
}
