// Once a call is connected, its packets are received by one of a few
// process-wide threads on a 10 ms grid, instead of by webrtcbin's nicesrc,
// whose thread woke for every packet: see shared_receive.cpp.
#pragma once

#include <glib.h>
#include <gst/gst.h>
#include <nice/agent.h>

#include <memory>
#include <mutex>

#include "call/gst_ptr.h"
#include "glib_ptr.h"  // plugins/: GObjectPtr

namespace vb {

class ReceiveThread;

class ReceiveTakeover {
 public:
  // Call on the main loop once webrtcbin reports connection-state CONNECTED.
  // The takeover starts on nicesrc's thread between two packets. Returns
  // nullptr (and changes nothing) when webrtcbin's insides are not what
  // GStreamer 1.22 builds.
  static std::shared_ptr<ReceiveTakeover> start(GstElement* webrtcbin);

  // After it returns no thread of ours pushes into the call's pipeline.
  // Call on the main loop before the pipeline stops.
  void stop();

  ~ReceiveTakeover();
  ReceiveTakeover(const ReceiveTakeover&) = delete;
  ReceiveTakeover& operator=(const ReceiveTakeover&) = delete;

 private:
  friend class ReceiveThread;
  enum class State { Waiting, Receiving, Failed, Stopped };

  ReceiveTakeover() = default;
  GstPadProbeReturn on_nicesrc_buffer(GstPadProbeInfo* info);
  bool relink();
  // On the receive thread: stops nicesrc, has libnice deliver to `context`.
  void attach(GMainContext* context);
  // Has libnice deliver nowhere (`parking` is never iterated).
  void detach(GMainContext* parking);
  static void on_packet(NiceAgent* agent, guint stream_id, guint component_id, guint length, gchar* data,
                        gpointer self);
  void push(GstBuffer* packet);

  std::mutex mutex_;  // state_ between nicesrc's thread (takeover) and stop()
  State state_ = State::Waiting;

  // Set by start(), read-only afterwards.
  GstPtr<GstElement> nicesrc_;
  GstPtr<GstElement> queue_;
  GstPtr<GstPad> capsfilter_src_;  // nicesrc ! capsfilter: where nicesrc's packets come out (probed)
  GstPtr<GstPad> queue_src_;      // ... ! queue ! dtlssrtpdec, the path nicesrc feeds
  GstPtr<GstPad> decoder_sink_;
  GstPtr<GstPad> pad_;  // ours, linked to dtlssrtpdec's sink by the takeover
  GstPtr<GstClock> clock_;
  GstClockTime base_time_ = 0;
  openairealtime::GObjectPtr<GObject> agent_;  // the NiceAgent
  guint stream_id_ = 0;
  guint component_id_ = 0;
  ReceiveThread* thread_ = nullptr;  // while Receiving

  // The receive thread's alone.
  bool push_failed_ = false;
  // nicesrc's packet that triggered the takeover, pushed before any other.
  std::unique_ptr<GstBuffer, decltype(&gst_buffer_unref)> first_packet_{nullptr, gst_buffer_unref};
};

}  // namespace vb
