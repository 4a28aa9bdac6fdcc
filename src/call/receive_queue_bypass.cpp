// webrtcbin 1.22's transportreceivebin runs nicesrc ! capsfilter ! queue !
// dtlssrtpdec. The queue exists for the time before ICE connects: its
// transportreceivebin blocks dtlssrtpdec's input then, and the leaky queue keeps
// nicesrc's thread (which also runs libnice's STUN handling) from blocking
// with it. Once connected it is only one more thread hand-off per packet:
// nicesrc's thread wakes the queue's, 50 times a second per call. Relinking
// capsfilter straight to dtlssrtpdec lets nicesrc's thread carry each packet
// through SRTP into the jitterbuffer; the queue's thread then sleeps for the
// rest of the call.
#include "call/receive_queue_bypass.h"

#include "call/gst_ptr.h"

namespace vb {
namespace {

GstElement* peer_element(GstElement* element, const char* pad_name) {
  GstPtr<GstPad> pad(gst_element_get_static_pad(element, pad_name));
  GstPtr<GstPad> peer(pad ? gst_pad_get_peer(pad.get()) : nullptr);
  return peer ? gst_pad_get_parent_element(peer.get()) : nullptr;
}

// The queue whose src feeds a dtlssrtpdec and whose sink is fed by a capsfilter.
GstElement* find_receive_queue(GstElement* webrtcbin) {
  g_autoptr(GstIterator) it = gst_bin_iterate_recurse(GST_BIN(webrtcbin));
  GValue item = G_VALUE_INIT;
  GstElement* found = nullptr;
  while (!found && gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto* element = GST_ELEMENT(g_value_get_object(&item));
    if (made_by(element, "queue")) {
      GstPtr<GstElement> downstream(peer_element(element, "src"));
      GstPtr<GstElement> upstream(peer_element(element, "sink"));
      if (downstream && upstream && made_by(downstream.get(), "dtlssrtpdec") && made_by(upstream.get(), "capsfilter"))
        found = GST_ELEMENT(gst_object_ref(element));
    }
    g_value_reset(&item);
  }
  g_value_unset(&item);
  return found;
}

// Runs on nicesrc's thread, between two packets: nothing flows meanwhile.
GstPadProbeReturn relink(GstPad* capsfilter_src, GstPadProbeInfo*, gpointer data) {
  auto* queue = GST_ELEMENT(data);
  GstPtr<GstPad> queue_sink(gst_element_get_static_pad(queue, "sink"));
  GstPtr<GstPad> queue_src(gst_element_get_static_pad(queue, "src"));
  GstPtr<GstPad> decoder_sink(gst_pad_get_peer(queue_src.get()));
  if (!decoder_sink || !gst_pad_unlink(capsfilter_src, queue_sink.get()) ||
      !gst_pad_unlink(queue_src.get(), decoder_sink.get()) ||
      gst_pad_link(capsfilter_src, decoder_sink.get()) != GST_PAD_LINK_OK) {
    GST_ERROR_OBJECT(queue, "cannot bypass the receive queue");  // the call's media timeout ends it
  }
  return GST_PAD_PROBE_REMOVE;
}

}  // namespace

bool bypass_receive_queue(GstElement* webrtcbin) {
  GstPtr<GstElement> queue(find_receive_queue(webrtcbin));
  if (!queue)
    return false;
  GstPtr<GstPad> queue_sink(gst_element_get_static_pad(queue.get(), "sink"));
  GstPtr<GstPad> capsfilter_src(gst_pad_get_peer(queue_sink.get()));
  if (!capsfilter_src)
    return false;
  gst_pad_add_probe(capsfilter_src.get(), GstPadProbeType(GST_PAD_PROBE_TYPE_BLOCK | GST_PAD_PROBE_TYPE_BUFFER),
                    relink, gst_object_ref(queue.get()), gst_object_unref);
  return true;
}

}  // namespace vb
