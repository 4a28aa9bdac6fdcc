// Test helpers for the media suites: a main-loop runner and a webrtcbin that
// plays Meta's side of a call (offerer, non-trickle, sendrecv Opus on PT 111).
#pragma once

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#include <gst/webrtc/webrtc.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace media_test {

inline constexpr const char* kOurAddress = "198.18.0.1";   // CallMedia's side of the veth pair
inline constexpr const char* kMetaAddress = "198.18.0.2";  // MetaPeer's side
inline constexpr int kToneToUsHz = 600;                    // what "the caller" says

// Iterates the default main context until pred() holds or timeout_ms passed
// (a bound against hangs, never a timing assertion).
inline bool run_until(const std::function<bool()>& pred, int timeout_ms = 10000) {
  const gint64 deadline = g_get_monotonic_time() + gint64{timeout_ms} * 1000;
  while (!pred()) {
    if (g_get_monotonic_time() > deadline)
      return false;
    if (!g_main_context_iteration(nullptr, FALSE))
      g_usleep(2000);
  }
  return true;
}

// Meta's side: a webrtcbin offering sendrecv Opus on PT 111 with a test tone,
// recording what it receives as 48 kHz mono PCM.
class MetaPeer {
 public:
  MetaPeer() {
    g_autoptr(GError) error = nullptr;
    pipeline_ = gst_parse_launch(
        ("webrtcbin name=meta bundle-policy=max-bundle latency=50 "
         "audiotestsrc is-live=true wave=sine volume=0.3 freq=" + std::to_string(kToneToUsHz) +
         " ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 ! meta.")
            .c_str(),
        &error);
    EXPECT_TRUE(pipeline_) << (error ? error->message : "");
    webrtc_ = gst_bin_get_by_name(GST_BIN(pipeline_), "meta");
    GstWebRTCICE* ice = nullptr;
    g_object_get(webrtc_, "ice-agent", &ice, nullptr);
    gboolean added = FALSE;
    g_signal_emit_by_name(ice, "add-local-ip-address", kMetaAddress, &added);
    g_object_set(ice, "ice-tcp", FALSE, nullptr);
    gst_object_unref(ice);
    g_signal_connect(webrtc_, "pad-added", G_CALLBACK(on_pad_added), this);
    GstBus* bus = gst_element_get_bus(pipeline_);
    gst_bus_add_watch(bus, on_bus_message, pipeline_);
    gst_object_unref(bus);
    gst_element_set_state(pipeline_, GST_STATE_PLAYING);
  }

  ~MetaPeer() {
    GstBus* bus = gst_element_get_bus(pipeline_);
    gst_bus_remove_watch(bus);
    gst_object_unref(bus);
    gst_element_set_state(pipeline_, GST_STATE_NULL);
    gst_object_unref(webrtc_);
    gst_object_unref(pipeline_);
  }

  // A non-trickle offer with every candidate inline, as Meta sends it.
  std::string make_offer() {
    // webrtcbin builds the m-line from the send branch's caps: wait for them.
    GstPad* sink = gst_element_get_static_pad(webrtc_, "sink_0");
    EXPECT_TRUE(sink);
    run_until([&] { return sink && gst_pad_has_current_caps(sink); }, 5000);
    if (sink)
      gst_object_unref(sink);
    GstPromise* promise = gst_promise_new();
    g_signal_emit_by_name(webrtc_, "create-offer", nullptr, promise);
    gst_promise_wait(promise);
    GstWebRTCSessionDescription* offer = nullptr;
    gst_structure_get(gst_promise_get_reply(promise), "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &offer, nullptr);
    gst_promise_unref(promise);
    promise = gst_promise_new();
    g_signal_emit_by_name(webrtc_, "set-local-description", offer, promise);
    gst_promise_wait(promise);
    gst_promise_unref(promise);
    gst_webrtc_session_description_free(offer);
    run_until([&] {
      GstWebRTCICEGatheringState state;
      g_object_get(webrtc_, "ice-gathering-state", &state, nullptr);
      return state == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE;
    }, 3000);
    GstWebRTCSessionDescription* local = nullptr;
    g_object_get(webrtc_, "local-description", &local, nullptr);
    g_autofree gchar* text = gst_sdp_message_as_text(local->sdp);
    gst_webrtc_session_description_free(local);
    return text;
  }

  bool accept_answer(const std::string& answer_text) {
    GstSDPMessage* sdp = nullptr;
    if (gst_sdp_message_new_from_text(answer_text.c_str(), &sdp) != GST_SDP_OK)
      return false;
    GstWebRTCSessionDescription* answer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
    GstPromise* promise = gst_promise_new();
    g_signal_emit_by_name(webrtc_, "set-remote-description", answer, promise);
    gst_promise_wait(promise);
    const GstStructure* reply = gst_promise_get_reply(promise);
    const bool ok = !reply || !gst_structure_has_field(reply, "error");
    gst_promise_unref(promise);
    gst_webrtc_session_description_free(answer);
    return ok;
  }

  std::vector<int16_t> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  GstElement* webrtc() const { return webrtc_; }

  size_t received_count() {
    std::lock_guard lock(mutex_);
    return received_.size();
  }

 private:
  static gboolean on_bus_message(GstBus*, GstMessage* message, gpointer pipeline) {
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_LATENCY)
      gst_bin_recalculate_latency(GST_BIN(pipeline));
    return G_SOURCE_CONTINUE;
  }

  static void on_pad_added(GstElement*, GstPad* pad, gpointer data) {
    if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC)
      return;
    auto* self = static_cast<MetaPeer*>(data);
    GstElement* chain = gst_parse_bin_from_description(
        "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! "
        "audio/x-raw,format=S16LE,rate=48000,channels=1 ! appsink name=out sync=false emit-signals=true",
        TRUE, nullptr);
    GstElement* sink = gst_bin_get_by_name(GST_BIN(chain), "out");
    g_signal_connect(sink, "new-sample", G_CALLBACK(on_sample), self);
    gst_object_unref(sink);
    gst_bin_add(GST_BIN(self->pipeline_), chain);
    gst_element_sync_state_with_parent(chain);
    GstPad* sink_pad = gst_element_get_static_pad(chain, "sink");
    gst_pad_link(pad, sink_pad);
    gst_object_unref(sink_pad);
  }

  static GstFlowReturn on_sample(GstAppSink* sink, gpointer data) {
    auto* self = static_cast<MetaPeer*>(data);
    GstSample* sample = gst_app_sink_pull_sample(sink);
    GstMapInfo map;
    GstBuffer* buffer = gst_sample_get_buffer(sample);
    if (gst_buffer_map(buffer, &map, GST_MAP_READ)) {
      const auto* samples = reinterpret_cast<const int16_t*>(map.data);
      std::lock_guard lock(self->mutex_);
      self->received_.insert(self->received_.end(), samples, samples + map.size / 2);
      gst_buffer_unmap(buffer, &map);
    }
    gst_sample_unref(sample);
    return GST_FLOW_OK;
  }

  GstElement* pipeline_ = nullptr;
  GstElement* webrtc_ = nullptr;
  std::mutex mutex_;
  std::vector<int16_t> received_;
};

}  // namespace media_test
