/**
 * SECTION:element-voicejitter
 *
 * Passes the RTP packets of one live voice stream on in the thread that
 * received them, in order: duplicates and packets that arrive after a later
 * one are dropped, and a sequence gap becomes a `GstRTPPacketLost` event
 * (timestamp and duration of the missing packets), which depayloaders turn
 * into a GAP event for the decoder's packet loss concealment. Packets are
 * never held, so there is no thread, no timer and no added latency:
 * reordering costs a concealed packet instead of a wait.
 *
 * It stands in for rtpjitterbuffer in rtpbin (the server returns it from
 * rtpbin's `request-jitterbuffer`), where rtpjitterbuffer's own thread costs
 * a wake-up per packet per call. Its interface is what rtpbin needs of a
 * jitterbuffer: the `sink` and `src` pads, a `sink_rtcp` request pad (RTCP is
 * dropped: there is no lip-sync for one audio stream), the `latency`
 * property, and the `request-pt-map`, `clear-pt-map` and `handle-sync`
 * signals (`handle-sync` is never emitted, for the same reason); and what
 * webrtcbin sets: `do-retransmission` (no NACKs are sent: WhatsApp's audio
 * offer negotiates none).
 *
 * A gap of more than 100 packets, or a packet more than 100 behind, is taken
 * for a new stream (the sender restarted its sequence): followed, flagged
 * DISCONT, with no loss reported.
 *
 * Example: gst-launch-1.0 udpsrc caps="application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
 *   ! voicejitter ! rtpopusdepay ! voiceopusdec ! autoaudiosink
 */
#include "gstvoicejitter.h"

#include <gst/rtp/gstrtpbuffer.h>

#include <atomic>

GST_DEBUG_CATEGORY_STATIC(voicejitter_debug);
#define GST_CAT_DEFAULT voicejitter_debug

namespace voicertp {
namespace {

// Larger sequence jumps (either way) are a new stream, not a loss: 2 s of
// 20 ms packets, the most voiceopusdec conceals.
constexpr gint kMaxGapPackets = 100;
constexpr gint kMaxMisorderPackets = 100;
constexpr guint kDefaultLatencyMs = 200;  // rtpbin's default, reported back as set

enum Property {
  PROP_0,
  PROP_LATENCY,
  PROP_DO_RETRANSMISSION,
  PROP_PUSHED_PACKETS,
  PROP_LOST_PACKETS,
  PROP_DROPPED_PACKETS,
  PROP_STATS,
};

enum Signal {
  SIGNAL_REQUEST_PT_MAP,
  SIGNAL_CLEAR_PT_MAP,
  SIGNAL_HANDLE_SYNC,
  N_SIGNALS,
};

guint signals[N_SIGNALS];

struct Packet {
  guint16 seq = 0;
  guint32 rtptime = 0;
  guint8 pt = 0;
  GstClockTime pts = GST_CLOCK_TIME_NONE;
};

}  // namespace

// The stream fields belong to the streaming thread (chain and serialized
// events); the state change resets them while no data flows. The rest is
// read and written from any thread.
struct JitterState {
  bool have_last = false;
  Packet last;
  bool discont = true;
  gint caps_pt = -1;      // the payload type and clock rate of the sink caps
  gint caps_clock_rate = 0;
  gint mapped_pt = -1;    // the last answer of request-pt-map
  gint mapped_clock_rate = 0;

  std::atomic<bool> pt_map_cleared{false};
  std::atomic<guint> latency_ms{kDefaultLatencyMs};
  std::atomic<bool> do_retransmission{false};
  std::atomic<guint64> pushed_packets{0};
  std::atomic<guint64> lost_packets{0};
  std::atomic<guint64> dropped_packets{0};
  std::atomic<guint64> duplicate_packets{0};  // of the dropped ones

  void reset_stream() {
    have_last = false;
    last = Packet{};
    discont = true;
  }
};

}  // namespace voicertp

using voicertp::JitterState;
using voicertp::Packet;

struct _GstVoiceJitter {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;
  GstPad* rtcp_sinkpad;    // the requested sink_rtcp pad, or nullptr (object lock)
  JitterState* state;      // created in init, deleted in finalize
};

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("application/x-rtp"));
static GstStaticPadTemplate rtcp_sink_template =
    GST_STATIC_PAD_TEMPLATE("sink_rtcp", GST_PAD_SINK, GST_PAD_REQUEST, GST_STATIC_CAPS("application/x-rtcp"));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("application/x-rtp"));

G_DEFINE_TYPE_WITH_CODE(GstVoiceJitter, gst_voice_jitter, GST_TYPE_ELEMENT,
                        GST_DEBUG_CATEGORY_INIT(voicejitter_debug, "voicejitter", 0,
                                                "Thread-less RTP jitter handling for live voice"));
GST_ELEMENT_REGISTER_DEFINE(voicejitter, "voicejitter", GST_RANK_NONE, GST_TYPE_VOICE_JITTER);

static bool read_packet(GstBuffer* buffer, Packet* packet) {
  GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
  if (!gst_rtp_buffer_map(buffer, GST_MAP_READ, &rtp)) return false;
  packet->seq = gst_rtp_buffer_get_seq(&rtp);
  packet->rtptime = gst_rtp_buffer_get_timestamp(&rtp);
  packet->pt = gst_rtp_buffer_get_payload_type(&rtp);
  packet->pts = GST_BUFFER_PTS(buffer);
  gst_rtp_buffer_unmap(&rtp);
  return true;
}

static gint clock_rate_of(const GstCaps* caps, gint* pt) {
  if (!caps || gst_caps_is_empty(caps)) return 0;
  const GstStructure* s = gst_caps_get_structure(caps, 0);
  gint rate = 0;
  if (!gst_structure_get_int(s, "clock-rate", &rate) || rate <= 0) return 0;
  if (pt && !gst_structure_get_int(s, "payload", pt)) *pt = -1;
  return rate;
}

// The clock rate of payload type `pt`: from the caps, else from the
// application (rtpbin answers request-pt-map from the remote description);
// 0 when nobody knows.
static gint clock_rate_for(GstVoiceJitter* self, guint8 pt) {
  JitterState& state = *self->state;
  if (state.caps_clock_rate > 0 && (state.caps_pt < 0 || state.caps_pt == pt)) return state.caps_clock_rate;
  if (state.pt_map_cleared.exchange(false)) state.mapped_pt = -1;
  if (state.mapped_pt != pt) {
    GstCaps* caps = nullptr;
    g_signal_emit(self, voicertp::signals[voicertp::SIGNAL_REQUEST_PT_MAP], 0, static_cast<guint>(pt), &caps);
    state.mapped_clock_rate = clock_rate_of(caps, nullptr);
    state.mapped_pt = pt;
    if (caps) gst_caps_unref(caps);
    GST_DEBUG_OBJECT(self, "payload type %u: clock rate %d", pt, state.mapped_clock_rate);
  }
  return state.mapped_clock_rate;
}

// Reports the `missing` packets between the last pushed one and `packet` as
// one GstRTPPacketLost event, spaced by RTP time (else by arrival time).
static void report_lost(GstVoiceJitter* self, const Packet& packet, guint missing) {
  JitterState& state = *self->state;
  state.lost_packets += missing;
  const Packet& last = state.last;
  GstClockTime spacing = GST_CLOCK_TIME_NONE;
  const guint32 rtp_delta = packet.rtptime - last.rtptime;
  const gint rate = clock_rate_for(self, packet.pt);
  if (rate > 0 && rtp_delta > 0 && rtp_delta <= G_MAXINT32)
    spacing = gst_util_uint64_scale(rtp_delta, GST_SECOND, static_cast<guint64>(rate) * (missing + 1));
  else if (GST_CLOCK_TIME_IS_VALID(packet.pts) && GST_CLOCK_TIME_IS_VALID(last.pts) && packet.pts > last.pts)
    spacing = (packet.pts - last.pts) / (missing + 1);
  if (!GST_CLOCK_TIME_IS_VALID(spacing) || !GST_CLOCK_TIME_IS_VALID(last.pts) || spacing == 0) {
    GST_INFO_OBJECT(self, "%u packets lost before #%u; no timing to report them with", missing, packet.seq);
    return;
  }
  const GstClockTime timestamp = last.pts + spacing;
  const GstClockTime duration = spacing * missing;
  GST_DEBUG_OBJECT(self, "%u packets lost from #%u: %" GST_TIME_FORMAT " for %" GST_TIME_FORMAT, missing,
                   static_cast<guint16>(last.seq + 1), GST_TIME_ARGS(timestamp), GST_TIME_ARGS(duration));
  const guint first_missing = static_cast<guint16>(last.seq + 1);
  GstStructure* lost = gst_structure_new("GstRTPPacketLost", "seqnum", G_TYPE_UINT, first_missing,
                                         "timestamp", G_TYPE_UINT64, timestamp, "duration", G_TYPE_UINT64, duration,
                                         "retry", G_TYPE_UINT, 0u, nullptr);
  gst_pad_push_event(self->srcpad, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, lost));
}

static GstFlowReturn chain(GstPad*, GstObject* parent, GstBuffer* buffer) {
  GstVoiceJitter* self = GST_VOICE_JITTER(parent);
  JitterState& state = *self->state;
  Packet packet;
  if (!read_packet(buffer, &packet)) {
    ++state.dropped_packets;
    GST_WARNING_OBJECT(self, "dropping a buffer of %" G_GSIZE_FORMAT " bytes that is not RTP",
                       gst_buffer_get_size(buffer));
    gst_buffer_unref(buffer);
    return GST_FLOW_OK;
  }
  if (state.have_last) {
    const gint ahead = gst_rtp_buffer_compare_seqnum(state.last.seq, packet.seq);
    if (ahead <= 0 && -ahead <= voicertp::kMaxMisorderPackets) {
      ++state.dropped_packets;
      if (ahead == 0) ++state.duplicate_packets;
      GST_LOG_OBJECT(self, "dropping #%u: %s", packet.seq, ahead == 0 ? "duplicate" : "arrived too late");
      gst_buffer_unref(buffer);
      return GST_FLOW_OK;
    }
    if (ahead > 1 && ahead <= voicertp::kMaxGapPackets)
      report_lost(self, packet, static_cast<guint>(ahead - 1));
    else if (ahead != 1)
      GST_INFO_OBJECT(self, "sequence jumped from #%u to #%u: a new stream", state.last.seq, packet.seq);
    if (ahead != 1) state.discont = true;
  }
  state.have_last = true;
  state.last = packet;
  if (state.discont) {
    buffer = gst_buffer_make_writable(buffer);
    GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_DISCONT);
    state.discont = false;
  }
  ++state.pushed_packets;
  return gst_pad_push(self->srcpad, buffer);
}

static gboolean sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  JitterState& state = *GST_VOICE_JITTER(parent)->state;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps = nullptr;
      gst_event_parse_caps(event, &caps);
      state.caps_clock_rate = clock_rate_of(caps, &state.caps_pt);
      break;
    }
    case GST_EVENT_FLUSH_STOP: state.reset_stream(); break;
    default: break;
  }
  return gst_pad_event_default(pad, parent, event);
}

// RTCP serves rtpjitterbuffer's lip-sync only: taken and dropped.
static GstFlowReturn rtcp_chain(GstPad*, GstObject*, GstBuffer* buffer) {
  gst_buffer_unref(buffer);
  return GST_FLOW_OK;
}

static gboolean rtcp_event(GstPad*, GstObject*, GstEvent* event) {
  gst_event_unref(event);  // the RTP pad carries the stream's events
  return TRUE;
}

static GstPad* request_new_pad(GstElement* element, GstPadTemplate* templ, const gchar*, const GstCaps*) {
  GstVoiceJitter* self = GST_VOICE_JITTER(element);
  GST_OBJECT_LOCK(self);
  if (self->rtcp_sinkpad) {
    GST_OBJECT_UNLOCK(self);
    GST_WARNING_OBJECT(self, "sink_rtcp is already requested");
    return nullptr;
  }
  GstPad* pad = gst_pad_new_from_template(templ, "sink_rtcp");
  gst_pad_set_chain_function(pad, rtcp_chain);
  gst_pad_set_event_function(pad, rtcp_event);
  self->rtcp_sinkpad = pad;
  GST_OBJECT_UNLOCK(self);
  gst_element_add_pad(element, pad);  // takes the floating reference; activates it when running
  return pad;
}

static void release_pad(GstElement* element, GstPad* pad) {
  GstVoiceJitter* self = GST_VOICE_JITTER(element);
  GST_OBJECT_LOCK(self);
  if (pad == self->rtcp_sinkpad) self->rtcp_sinkpad = nullptr;
  GST_OBJECT_UNLOCK(self);
  gst_element_remove_pad(element, pad);
}

static GstStateChangeReturn change_state(GstElement* element, GstStateChange transition) {
  JitterState& state = *GST_VOICE_JITTER(element)->state;
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    state.reset_stream();
    state.pushed_packets = 0;
    state.lost_packets = 0;
    state.dropped_packets = 0;
    state.duplicate_packets = 0;
  }
  return GST_ELEMENT_CLASS(gst_voice_jitter_parent_class)->change_state(element, transition);
}

static void clear_pt_map(GstVoiceJitter* self) { self->state->pt_map_cleared = true; }

static void set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  JitterState& state = *GST_VOICE_JITTER(object)->state;
  switch (id) {
    case voicertp::PROP_LATENCY: state.latency_ms = g_value_get_uint(value); break;
    case voicertp::PROP_DO_RETRANSMISSION:
      state.do_retransmission = g_value_get_boolean(value);
      if (state.do_retransmission) GST_WARNING_OBJECT(object, "retransmission requested: no NACKs will be sent");
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

// rtpjitterbuffer's statistics structure, which webrtcbin's get-stats reads
// for its inbound-rtp report; no retransmission ever happens here.
static GstStructure* stats_of(const JitterState& state) {
  return gst_structure_new("application/x-rtp-jitterbuffer-stats", "num-pushed", G_TYPE_UINT64,
                           state.pushed_packets.load(), "num-lost", G_TYPE_UINT64, state.lost_packets.load(),
                           "num-late", G_TYPE_UINT64, state.dropped_packets - state.duplicate_packets,
                           "num-duplicates", G_TYPE_UINT64, state.duplicate_packets.load(), "avg-jitter",
                           G_TYPE_UINT64, G_GUINT64_CONSTANT(0), "rtx-count", G_TYPE_UINT64, G_GUINT64_CONSTANT(0),
                           "rtx-success-count", G_TYPE_UINT64, G_GUINT64_CONSTANT(0), "rtx-per-packet",
                           G_TYPE_DOUBLE, 0.0, "rtx-rtt", G_TYPE_UINT64, G_GUINT64_CONSTANT(0), nullptr);
}

static void get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  const JitterState& state = *GST_VOICE_JITTER(object)->state;
  switch (id) {
    case voicertp::PROP_LATENCY: g_value_set_uint(value, state.latency_ms); break;
    case voicertp::PROP_DO_RETRANSMISSION: g_value_set_boolean(value, state.do_retransmission); break;
    case voicertp::PROP_PUSHED_PACKETS: g_value_set_uint64(value, state.pushed_packets); break;
    case voicertp::PROP_LOST_PACKETS: g_value_set_uint64(value, state.lost_packets); break;
    case voicertp::PROP_DROPPED_PACKETS: g_value_set_uint64(value, state.dropped_packets); break;
    case voicertp::PROP_STATS: g_value_take_boxed(value, stats_of(state)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static void finalize(GObject* object) {
  delete GST_VOICE_JITTER(object)->state;
  G_OBJECT_CLASS(gst_voice_jitter_parent_class)->finalize(object);
}

static void gst_voice_jitter_init(GstVoiceJitter* self) {
  self->state = new JitterState();
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, chain);
  gst_pad_set_event_function(self->sinkpad, sink_event);
  GST_PAD_SET_PROXY_CAPS(self->sinkpad);
  GST_PAD_SET_PROXY_ALLOCATION(self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  GST_PAD_SET_PROXY_CAPS(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}

static void install_counter(GObjectClass* klass, guint id, const char* name, const char* nick, const char* blurb) {
  g_object_class_install_property(
      klass, id,
      g_param_spec_uint64(name, nick, blurb, 0, G_MAXUINT64, 0, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
}

static void gst_voice_jitter_class_init(GstVoiceJitterClass* klass) {
  GObjectClass* object_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  object_class->set_property = set_property;
  object_class->get_property = get_property;
  object_class->finalize = finalize;
  element_class->change_state = change_state;
  element_class->request_new_pad = request_new_pad;
  element_class->release_pad = release_pad;

  g_object_class_install_property(
      object_class, voicertp::PROP_LATENCY,
      g_param_spec_uint("latency", "Latency (ms)",
                        "Accepted because rtpbin sets it on every jitterbuffer; packets are never held, so none is "
                        "added",
                        0, G_MAXUINT, voicertp::kDefaultLatencyMs,
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(
      object_class, voicertp::PROP_DO_RETRANSMISSION,
      g_param_spec_boolean("do-retransmission", "Do retransmission",
                           "Accepted because webrtcbin sets it; no retransmission is ever requested (TRUE is logged "
                           "as a warning)",
                           FALSE, GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  install_counter(object_class, voicertp::PROP_PUSHED_PACKETS, "pushed-packets", "Pushed packets",
                  "RTP packets passed on since the element last started (READY to PAUSED)");
  install_counter(object_class, voicertp::PROP_LOST_PACKETS, "lost-packets", "Lost packets",
                  "Packets missing from sequence jumps of at most 100, reported downstream as GstRTPPacketLost");
  install_counter(object_class, voicertp::PROP_DROPPED_PACKETS, "dropped-packets", "Dropped packets",
                  "Duplicates, packets that arrived after a later one was passed on, and buffers that are not RTP");
  g_object_class_install_property(
      object_class, voicertp::PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "rtpjitterbuffer's statistics structure (read by webrtcbin's get-stats): num-pushed, "
                         "num-lost, num-late, num-duplicates; jitter and retransmission fields are 0",
                         GST_TYPE_STRUCTURE, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstVoiceJitter::request-pt-map:
   * @pt: the payload type
   *
   * Asks for the caps (with `clock-rate`) of @pt when the sink caps lack
   * them; the clock rate times the packets reported lost.
   */
  voicertp::signals[voicertp::SIGNAL_REQUEST_PT_MAP] =
      g_signal_new("request-pt-map", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr, nullptr,
                   GST_TYPE_CAPS, 1, G_TYPE_UINT);
  /**
   * GstVoiceJitter::clear-pt-map:
   *
   * Forgets the answer of request-pt-map: it is asked again.
   */
  voicertp::signals[voicertp::SIGNAL_CLEAR_PT_MAP] = g_signal_new_class_handler(
      "clear-pt-map", G_TYPE_FROM_CLASS(klass), GSignalFlags(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION),
      G_CALLBACK(clear_pt_map), nullptr, nullptr, nullptr, G_TYPE_NONE, 0);
  /**
   * GstVoiceJitter::handle-sync:
   * @sync: RTCP sender-report timing
   *
   * rtpbin connects to it on every jitterbuffer; never emitted here (no
   * lip-sync for one audio stream).
   */
  voicertp::signals[voicertp::SIGNAL_HANDLE_SYNC] =
      g_signal_new("handle-sync", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr, nullptr,
                   G_TYPE_NONE, 1, GST_TYPE_STRUCTURE | G_SIGNAL_TYPE_STATIC_SCOPE);

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &rtcp_sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Voice RTP jitter handling", "Filter/Network/RTP",
      "Passes one live voice stream's RTP packets on at once, in order, reporting sequence gaps as lost packets "
      "(a thread-less stand-in for rtpjitterbuffer in rtpbin)",
      "voicebridge <voicebridge@example.org>");
}
