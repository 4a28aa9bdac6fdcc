// Takes the queue (and its thread) out of webrtcbin's receive path once the
// call is connected: see receive_queue_bypass.cpp.
#pragma once

#include <gst/gst.h>

namespace vb {

// Call on the main loop once webrtcbin reports connection-state CONNECTED.
// Returns false (and changes nothing) when webrtcbin's insides are not what
// GStreamer 1.22 builds.
bool bypass_receive_queue(GstElement* webrtcbin);

}  // namespace vb
