#include "call/media.h"

#include "call/gst_ptr.h"
#include "call/shared_receive.h"

#include <gst/sdp/sdp.h>
#include <gst/webrtc/webrtc.h>
#include <json-glib/json-glib.h>

#include <atomic>
#include <mutex>
#include <optional>

extern "C" void gst_plugin_openairealtime_register(void);
extern "C" void gst_plugin_voiceopus_register(void);
extern "C" void gst_plugin_voicertp_register(void);

namespace vb {

// Shared between the CallMedia and every callback GStreamer may run on its own
// threads. `self` is read and cleared only on the main loop; `closing` tells
// other threads to stop starting new work. The handlers are members so that
// what they post to the main loop may call CallMedia's private members.
struct CallMedia::Guard {
  CallMedia* self = nullptr;
  std::atomic<bool> closing{false};
  // RTP packets from the caller reaching the depayloader (streaming thread).
  std::atomic<uint64_t> inbound_packets{0};

  static void fail_later(const std::shared_ptr<Guard>& guard, std::string reason);
  static void on_local_description_set_reply(GstPromise* promise, gpointer data);
  static void on_answer_created(GstPromise* promise, gpointer data);
  static void on_offer_created(GstPromise* promise, gpointer data);
  static void on_answer_applied(GstPromise* promise, gpointer data);
  static void on_remote_description_set(GstPromise* promise, gpointer data);
  static void on_gathering_state_notify(GObject* webrtc, GParamSpec*, gpointer data);
  static void on_connection_state_notify(GObject* webrtc, GParamSpec*, gpointer data);
  static void on_ice_connection_state_notify(GObject* webrtc, GParamSpec*, gpointer data);
  static void on_pad_added(GstElement* webrtc, GstPad* pad, gpointer data);
  static void on_webrtc_element_added(GstBin* webrtc, GstBin*, GstElement* element, gpointer data);
  static void on_send_key_set(GstElement*, gpointer data);
  static void on_function_call(GstElement*, const gchar* call_id, const gchar* name, const gchar* arguments,
                               gpointer data);
};

namespace {

using GuardPtr = std::shared_ptr<CallMedia::Guard>;

// How often InboundMediaWatch looks at the packet count: a silent caller is
// noticed at most this late after its timeout.
constexpr guint kMediaWatchIntervalMs = 2000;
constexpr int kOfferedOpusPayloadType = 111;  // what WhatsApp's own offers use
constexpr guint kJitterBufferLatencyMs = 50;  // reference §2.3: 40-60
// libopus adds in-band FEC only when it expects some loss.
constexpr int kFecExpectedLossPercent = 10;
constexpr const char* kPipelineAudioCaps = "audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved";

// Runs fn on the main loop, if the CallMedia still exists by then.
void post(const GuardPtr& guard, std::function<void(CallMedia&)> fn) {
  run_soon([guard, fn = std::move(fn)] {
    if (guard->self)
      fn(*guard->self);
  });
}

GuardPtr& guard_from(gpointer data) { return *static_cast<GuardPtr*>(data); }

void connect_guarded(gpointer instance, const char* signal, GCallback handler, const GuardPtr& guard) {
  g_signal_connect_data(instance, signal, handler, new GuardPtr(guard),
                        [](gpointer data, GClosure*) { delete static_cast<GuardPtr*>(data); }, GConnectFlags(0));
}

// A promise reply's user data: webrtcbin is held weakly, so a promise that is
// never answered cannot keep the element (and its ICE thread) alive.
struct PromiseContext {
  GuardPtr guard;
  GWeakRef webrtc;
  PromiseContext(GuardPtr g, GstElement* element) : guard(std::move(g)) { g_weak_ref_init(&webrtc, element); }
  ~PromiseContext() { g_weak_ref_clear(&webrtc); }
};

GstPromise* guarded_promise(const GuardPtr& guard, GstElement* webrtc, GstPromiseChangeFunc func) {
  return gst_promise_new_with_change_func(func, new PromiseContext(guard, webrtc),
                                          [](gpointer data) { delete static_cast<PromiseContext*>(data); });
}

// "" when the promise was answered without an error.
std::string promise_error(GstPromise* promise) {
  if (gst_promise_wait(promise) != GST_PROMISE_RESULT_REPLIED)
    return "no reply (webrtcbin shutting down)";
  const GstStructure* reply = gst_promise_get_reply(promise);
  if (!reply || !gst_structure_has_field(reply, "error"))
    return {};
  g_autoptr(GError) error = nullptr;
  gst_structure_get(reply, "error", G_TYPE_ERROR, &error, nullptr);
  return error ? error->message : "unknown error";
}

// A second incoming stream (another SSRC, or a payload we did not answer)
// must not stall webrtcbin with not-linked: it is discarded.
void discard_pad(GstBin* pipeline, GstPad* pad) {
  GstElement* sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(sink, "sync", FALSE, "async", FALSE, nullptr);
  gst_bin_add(pipeline, sink);
  GstPtr<GstPad> sink_pad(gst_element_get_static_pad(sink, "sink"));
  gst_pad_link(pad, sink_pad.get());
  gst_element_sync_state_with_parent(sink);
}

GstElement* make_element(GstBin* bin, const char* factory, const char* name, std::string* error) {
  GstElement* element = gst_element_factory_make(factory, name);
  if (!element) {
    *error = std::string("GStreamer element \"") + factory + "\" is not available (plugin missing?)";
    return nullptr;
  }
  gst_bin_add(bin, element);
  return element;
}

bool is_json_array(const std::string& text, std::string* error) {
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) parse_error = nullptr;
  if (!json_parser_load_from_data(parser, text.c_str(), static_cast<gssize>(text.size()), &parse_error)) {
    *error = std::string("tools: invalid JSON: ") + parse_error->message;
    return false;
  }
  if (!JSON_NODE_HOLDS_ARRAY(json_parser_get_root(parser))) {
    *error = "tools: expected a JSON array of tool definitions";
    return false;
  }
  return true;
}

// A token count of a usage message: a non-negative integer field (the element
// posts G_TYPE_INT; a 64-bit field is taken as well).
std::optional<int64_t> token_count(const GstStructure* usage, const char* field) {
  const GValue* value = gst_structure_get_value(usage, field);
  std::optional<int64_t> count;
  if (value && G_VALUE_HOLDS_INT(value))
    count = g_value_get_int(value);
  else if (value && G_VALUE_HOLDS_INT64(value))
    count = g_value_get_int64(value);
  if (count && *count < 0)
    return std::nullopt;
  return count;
}

// TURN over TCP/TLS needs TCP candidates; everything else stays UDP-only.
bool turn_needs_tcp(const std::string& turn_server) {
  return turn_server.starts_with("turns:") || turn_server.find("transport=tcp") != std::string::npos;
}

// Audio runs in a circle (webrtcbin → openairealtime → webrtcbin), and GstBin
// cannot order state changes around a cycle: it warns "loop detected" and
// picks an order that can leave a streaming thread blocked in a paused sink
// while another element waits for it. Cutting the circle at webrtcbin's
// source pads before teardown restores the sink-to-source order.
void unlink_source_pads(GstElement* element) {
  GstIterator* pads = gst_element_iterate_src_pads(element);
  gst_iterator_foreach(
      pads,
      [](const GValue* value, gpointer) {
        GstPad* pad = GST_PAD(g_value_get_object(value));
        if (GstPtr<GstPad> peer{gst_pad_get_peer(pad)})
          gst_pad_unlink(pad, peer.get());
      },
      nullptr);
  gst_iterator_free(pads);
}

}  // namespace

void CallMedia::Guard::fail_later(const GuardPtr& guard, std::string reason) {
  post(guard, [reason = std::move(reason)](CallMedia& media) { media.report_failure(reason); });
}

void CallMedia::Guard::on_local_description_set_reply(GstPromise* promise, gpointer data) {
  auto* context = static_cast<PromiseContext*>(data);
  if (std::string error = promise_error(promise); !error.empty())
    return fail_later(context->guard, "set-local-description failed: " + error);
  post(context->guard, [](CallMedia& media) { media.local_description_applied(); });
}

namespace {

// The reply of create-answer or create-offer (`kind`): applies it as the local description.
void set_created_description(GstPromise* promise, gpointer data, const char* kind) {
  auto* context = static_cast<PromiseContext*>(data);
  if (context->guard->closing)
    return;
  if (std::string error = promise_error(promise); !error.empty())
    return CallMedia::Guard::fail_later(context->guard, std::string("create-") + kind + " failed: " + error);
  GstWebRTCSessionDescription* description = nullptr;
  gst_structure_get(gst_promise_get_reply(promise), kind, GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &description,
                    nullptr);
  GstPtr<GstElement> webrtc(static_cast<GstElement*>(g_weak_ref_get(&context->webrtc)));
  if (!description || !webrtc) {
    if (description)
      gst_webrtc_session_description_free(description);
    return CallMedia::Guard::fail_later(context->guard, std::string("create-") + kind + " returned no " + kind);
  }
  GstPromise* next =
      guarded_promise(context->guard, webrtc.get(), CallMedia::Guard::on_local_description_set_reply);
  g_signal_emit_by_name(webrtc.get(), "set-local-description", description, next);
  gst_promise_unref(next);
  gst_webrtc_session_description_free(description);
}

}  // namespace

void CallMedia::Guard::on_answer_created(GstPromise* promise, gpointer data) {
  set_created_description(promise, data, "answer");
}

void CallMedia::Guard::on_offer_created(GstPromise* promise, gpointer data) {
  set_created_description(promise, data, "offer");
}

void CallMedia::Guard::on_answer_applied(GstPromise* promise, gpointer data) {
  auto* context = static_cast<PromiseContext*>(data);
  if (context->guard->closing)
    return;
  if (std::string error = promise_error(promise); !error.empty())
    fail_later(context->guard, "the answer was refused by webrtcbin: " + error);
}

void CallMedia::Guard::on_remote_description_set(GstPromise* promise, gpointer data) {
  auto* context = static_cast<PromiseContext*>(data);
  if (context->guard->closing)
    return;
  if (std::string error = promise_error(promise); !error.empty())
    return fail_later(context->guard, "the offer was refused by webrtcbin: " + error);
  GstPtr<GstElement> webrtc(static_cast<GstElement*>(g_weak_ref_get(&context->webrtc)));
  if (!webrtc)
    return;
  GstPromise* next = guarded_promise(context->guard, webrtc.get(), on_answer_created);
  g_signal_emit_by_name(webrtc.get(), "create-answer", nullptr, next);
  gst_promise_unref(next);
}

// notify:: handlers run on webrtcbin's threads with its lock released:
// reading the property there is safe, acting on it belongs to the main loop.
void CallMedia::Guard::on_gathering_state_notify(GObject* webrtc, GParamSpec*, gpointer data) {
  GstWebRTCICEGatheringState state;
  g_object_get(webrtc, "ice-gathering-state", &state, nullptr);
  if (state == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE)
    post(guard_from(data), [](CallMedia& media) { media.gathering_completed(); });
}

void CallMedia::Guard::on_connection_state_notify(GObject* webrtc, GParamSpec*, gpointer data) {
  GstWebRTCPeerConnectionState state;
  g_object_get(webrtc, "connection-state", &state, nullptr);
  post(guard_from(data), [state](CallMedia& media) { media.connection_state_changed(state); });
}

void CallMedia::Guard::on_ice_connection_state_notify(GObject* webrtc, GParamSpec*, gpointer data) {
  GstWebRTCICEConnectionState state;
  g_object_get(webrtc, "ice-connection-state", &state, nullptr);
  if (state == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED)
    fail_later(guard_from(data), "ICE failed: no candidate pair works");
}

namespace {

// The shared pacer pushes every call's audio: a push waiting in webrtcbin's
// send-path pad block (transportsendbin blocks the pad feeding dtlssrtpenc
// until the DTLS keys are set) would stall every call. The valve opens only
// after the keys (open_send_path); this drops instead of waiting if the block
// is there anyway.
void drop_while_send_blocked(GstElement* webrtc, GstElement* dtlssrtpenc) {
  GstPtr<GstPad> encoder_sink(gst_element_get_static_pad(dtlssrtpenc, "rtp_sink_0"));
  GstPtr<GstPad> blocked(encoder_sink ? gst_pad_get_peer(encoder_sink.get()) : nullptr);
  GstElement* pipeline = GST_ELEMENT_PARENT(webrtc);
  GstPtr<GstElement> payloader(pipeline ? gst_bin_get_by_name(GST_BIN(pipeline), "opuspay") : nullptr);
  GstPtr<GstPad> output(payloader ? gst_element_get_static_pad(payloader.get(), "src") : nullptr);
  if (!blocked || !output) {
    g_warning("media: webrtcbin's send path is not what GStreamer 1.22 builds: not guarded");
    return;
  }
  gst_pad_add_probe(
      output.get(), GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad*, GstPadProbeInfo*, gpointer pad) {
        return gst_pad_is_blocked(GST_PAD(pad)) ? GST_PAD_PROBE_DROP : GST_PAD_PROBE_OK;
      },
      blocked.release(), gst_object_unref);
}

}  // namespace

// Any thread that builds webrtcbin's insides.
// webrtcbin 1.22 puts a clocksync (sync=true) behind each sink pad. The AI's
// audio is already paced on the clock: syncing again would hold every frame
// for the pipeline's latency, and under shared pacing that wait would delay
// every other call's frames too.
void CallMedia::Guard::on_webrtc_element_added(GstBin* webrtc, GstBin*, GstElement* element, gpointer data) {
  if (made_by(element, "clocksync")) {
    g_object_set(element, "sync", FALSE, nullptr);
  } else if (made_by(element, "dtlssrtpenc")) {
    connect_guarded(element, "on-key-set", G_CALLBACK(on_send_key_set), guard_from(data));
    drop_while_send_blocked(GST_ELEMENT(webrtc), element);
  }
}

// webrtcbin holds the send path blocked until the DTLS keys are set (its
// handler of this signal, connected first, has just unblocked it).
void CallMedia::Guard::on_send_key_set(GstElement*, gpointer data) {
  post(guard_from(data), [](CallMedia& media) {
    media.send_keys_set_ = true;
    media.open_send_path();
  });
}

// Runs on webrtcbin's threads. Linking is done right here (the reference
// allows it), so media never waits for the main loop.
void CallMedia::Guard::on_pad_added(GstElement* webrtc, GstPad* pad, gpointer data) {
  GuardPtr& guard = guard_from(data);
  if (guard->closing)
    return;
  GstBin* pipeline = GST_BIN(GST_ELEMENT_PARENT(webrtc));
  g_autofree gchar* name = gst_pad_get_name(pad);
  if (GST_PAD_DIRECTION(pad) == GST_PAD_SINK) {
    // The send pad webrtcbin creates for our one SENDRECV transceiver once
    // negotiated: sink_0 when answering, but as the offerer 1.22 may number
    // it sink_1. Any later sink pad would be a new, unnegotiated transceiver.
    GstPtr<GstElement> payloader(gst_bin_get_by_name(pipeline, "opuspay"));
    GstPtr<GstPad> src(gst_element_get_static_pad(payloader.get(), "src"));
    if (gst_pad_is_linked(src.get()))
      return;
    if (const GstPadLinkReturn result = gst_pad_link(src.get(), pad); result != GST_PAD_LINK_OK)
      fail_later(guard, std::string("cannot link the Opus payloader to webrtcbin ") + name + ": " +
                            gst_pad_link_get_name(result));
    return;
  }
  GstPtr<GstElement> depayloader(gst_bin_get_by_name(pipeline, "opusdepay"));
  GstPtr<GstPad> sink(gst_element_get_static_pad(depayloader.get(), "sink"));
  if (gst_pad_is_linked(sink.get()) || gst_pad_link(pad, sink.get()) != GST_PAD_LINK_OK) {
    g_message("media: discarding extra incoming stream on %s", name);
    discard_pad(pipeline, pad);
  }
}

// Emitted by openairealtime on its network thread.
void CallMedia::Guard::on_function_call(GstElement*, const gchar* call_id, const gchar* name,
                                         const gchar* arguments, gpointer data) {
  post(guard_from(data), [call_id = std::string(call_id ? call_id : ""), name = std::string(name ? name : ""),
                          arguments = std::string(arguments ? arguments : "")](CallMedia& media) {
    media.function_called(call_id, name, arguments);
  });
}

bool register_static_plugins() {
  static std::once_flag once;
  static bool registered = false;
  std::call_once(once, [] {
    gst_plugin_openairealtime_register();
    gst_plugin_voiceopus_register();
    gst_plugin_voicertp_register();
    registered = true;
    for (const char* name : {"openairealtime", "voiceopusenc", "voiceopusdec", "voicejitter"}) {
      g_autoptr(GstElementFactory) factory = gst_element_factory_find(name);
      registered = registered && factory;
    }
  });
  return registered;
}

void warm_up_media() {
  for (const char* factory : {"webrtcbin", "dtlssrtpdec", "dtlssrtpenc", "nicesrc", "nicesink", "rtpbin",
                              "rtpopusdepay", "rtpopuspay", "voiceopusdec", "voiceopusenc", "openairealtime", "valve",
                              "capsfilter", "voicejitter"}) {
    // Made and dropped at once: dtlssrtpdec's init makes the certificate.
    GstPtr<GstElement> element(gst_element_factory_make(factory, nullptr));
    if (element)
      gst_object_ref_sink(element.get());  // the floating reference becomes the one GstPtr drops
    else
      g_warning("media: GStreamer element %s is missing: calls will fail", factory);
  }
}

CallMedia::CallMedia(MediaSettings settings, MediaEvents events)
    : settings_(std::move(settings)), events_(std::move(events)), guard_(std::make_shared<Guard>()) {
  guard_->self = this;
}

std::unique_ptr<CallMedia> CallMedia::create_answerer(const std::string& offer_sdp, const MediaSettings& settings,
                                                      MediaEvents events, std::string* error) {
  OfferParseResult parsed = parse_offer(offer_sdp);
  if (!parsed.opus) {
    *error = "unusable offer: " + parsed.error;
    g_warning("media: %s", error->c_str());
    return nullptr;
  }
  std::unique_ptr<CallMedia> media(new CallMedia(settings, std::move(events)));
  media->offer_ = *parsed.opus;
  if (!media->build(error) || !media->negotiate(offer_sdp, error)) {
    g_warning("media: %s", error->c_str());
    return nullptr;
  }
  return media;
}

std::unique_ptr<CallMedia> CallMedia::create_offerer(const MediaSettings& settings, MediaEvents events,
                                                     std::string* error) {
  std::unique_ptr<CallMedia> media(new CallMedia(settings, std::move(events)));
  media->offerer_ = true;
  media->offer_.payload_type = kOfferedOpusPayloadType;
  if (!media->build(error)) {
    g_warning("media: %s", error->c_str());
    return nullptr;
  }
  media->create_offer();
  return media;
}

void CallMedia::create_offer() {
  GstPromise* promise = guarded_promise(guard_, webrtc_, Guard::on_offer_created);
  g_signal_emit_by_name(webrtc_, "create-offer", nullptr, promise);
  gst_promise_unref(promise);
}

bool CallMedia::apply_answer(const std::string& answer_sdp, std::string* error) {
  if (!offerer_ || answer_applied_ || offer_sdp_.empty() || failed_) {
    *error = offerer_ && !answer_applied_ && !failed_ ? "no offer was sent yet" : "not waiting for an answer";
    return false;
  }
  // The answer has the offer's shape: one audio m-line with Opus on our payload type.
  OfferParseResult parsed = parse_offer(answer_sdp);
  if (!parsed.opus || parsed.opus->payload_type != offer_.payload_type) {
    *error = "unusable answer: " +
             (parsed.opus ? "Opus on payload type " + std::to_string(parsed.opus->payload_type) + ", offered " +
                                std::to_string(offer_.payload_type)
                          : parsed.error);
    g_warning("media: %s", error->c_str());
    return false;
  }
  GstSDPMessage* sdp = nullptr;
  if (gst_sdp_message_new_from_text(answer_sdp.c_str(), &sdp) != GST_SDP_OK || !sdp) {
    if (sdp)
      gst_sdp_message_free(sdp);
    *error = "unusable answer: SDP could not be parsed";
    g_warning("media: %s", error->c_str());
    return false;
  }
  answer_applied_ = true;
  GstWebRTCSessionDescription* answer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
  GstPromise* promise = guarded_promise(guard_, webrtc_, Guard::on_answer_applied);
  g_signal_emit_by_name(webrtc_, "set-remote-description", answer, promise);
  gst_promise_unref(promise);
  gst_webrtc_session_description_free(answer);
  return true;
}

bool CallMedia::build(std::string* error) {
  pipeline_ = gst_pipeline_new("call");
  gst_object_ref_sink(pipeline_);
  if (!build_audio_chain(error) || !configure_realtime(error) || !configure_ice(error) ||
      !add_send_transceiver(error))
    return false;
  connect_signals();
  // webrtcbin's signalling thread starts with the state change: PLAYING
  // comes before any description is applied.
  if (gst_element_set_state(pipeline_, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    *error = "the call pipeline failed to start";
    return false;
  }
  return true;
}

// rtpbin's jitterbuffer for the caller's stream is voicejitter
// (plugins/voicertp): it passes packets on in the thread that received them,
// where rtpjitterbuffer's own thread woke for each one (50 a second per call).
static bool use_voice_jitter(GstElement* webrtc, std::string* error) {
  GstPtr<GstElement> rtpbin(gst_bin_get_by_name(GST_BIN(webrtc), "rtpbin"));
  if (!rtpbin) {
    *error = "webrtcbin has no rtpbin: not the GStreamer 1.22 layout";
    return false;
  }
  // The element is returned floating: rtpbin adds it to itself. A NULL
  // return would make rtpbin fall back to its own rtpjitterbuffer.
  g_signal_connect(rtpbin.get(), "request-jitterbuffer",
                   G_CALLBACK(+[](GstElement*, guint) { return gst_element_factory_make("voicejitter", nullptr); }),
                   nullptr);
  return true;
}

bool CallMedia::build_audio_chain(std::string* error) {
  GstBin* bin = GST_BIN(pipeline_);
  webrtc_ = make_element(bin, "webrtcbin", "webrtc", error);
  GstElement* depay = webrtc_ ? make_element(bin, "rtpopusdepay", "opusdepay", error) : nullptr;
  // Opus is decoded and encoded at the AI's 24 kHz directly (no resampler),
  // by our single-stream codec elements (plugins/voiceopus: why not opusdec/opusenc).
  GstElement* decoder = depay ? make_element(bin, "voiceopusdec", nullptr, error) : nullptr;
  GstElement* in_caps = decoder ? make_element(bin, "capsfilter", nullptr, error) : nullptr;
  realtime_ = in_caps ? make_element(bin, "openairealtime", "realtime", error) : nullptr;
  valve_ = realtime_ ? make_element(bin, "valve", nullptr, error) : nullptr;
  GstElement* encoder = valve_ ? make_element(bin, "voiceopusenc", nullptr, error) : nullptr;
  GstElement* payloader = encoder ? make_element(bin, "rtpopuspay", "opuspay", error) : nullptr;
  if (!payloader)
    return false;

  g_object_set(webrtc_, "bundle-policy", GST_WEBRTC_BUNDLE_POLICY_MAX_BUNDLE, "latency", kJitterBufferLatencyMs,
               nullptr);
  // Adjusts webrtcbin's insides as it builds them (clocksync, send path).
  connect_guarded(webrtc_, "deep-element-added", G_CALLBACK(Guard::on_webrtc_element_added), guard_);
  if (!use_voice_jitter(webrtc_, error))
    return false;
  g_autoptr(GstCaps) audio_caps = gst_caps_from_string(kPipelineAudioCaps);
  g_object_set(in_caps, "caps", audio_caps, nullptr);
  // Buffers are dropped until Meta's accept (no RTP before it), but caps and
  // segment still flow so the send path is negotiated when the valve opens.
  gst_util_set_object_arg(G_OBJECT(valve_), "drop-mode", "forward-sticky-events");
  g_object_set(valve_, "drop", TRUE, nullptr);
  const EncoderSettings encoding = encoder_settings_for(offer_);
  g_object_set(encoder, "bitrate", encoding.bitrate, "max-bandwidth", encoding.bandwidth, "inband-fec",
               encoding.inband_fec, "packet-loss-percentage", encoding.inband_fec ? kFecExpectedLossPercent : 0,
               "frame-size", encoding.frame_size_ms, "complexity", settings_.opus_complexity, nullptr);
  g_object_set(payloader, "pt", static_cast<guint>(offer_.payload_type), nullptr);

  // webrtcbin's pads appear later: on_pad_added links them.
  if (!gst_element_link_many(depay, decoder, in_caps, realtime_, nullptr) ||
      !gst_element_link_many(realtime_, valve_, encoder, payloader, nullptr)) {
    *error = "cannot link the call's audio elements";
    return false;
  }
  count_inbound_packets(depay);
  return true;
}

// The jitterbuffer in webrtcbin pushes only packets that arrived, so the
// depayloader's input stops when the caller's media does.
void CallMedia::count_inbound_packets(GstElement* depayloader) {
  GstPtr<GstPad> sink(gst_element_get_static_pad(depayloader, "sink"));
  gst_pad_add_probe(
      sink.get(), GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
      [](GstPad*, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
        const guint packets = (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST)
                                  ? gst_buffer_list_length(GST_PAD_PROBE_INFO_BUFFER_LIST(info))
                                  : 1;
        guard_from(data)->inbound_packets.fetch_add(packets, std::memory_order_relaxed);
        return GST_PAD_PROBE_OK;
      },
      new GuardPtr(guard_), [](gpointer data) { delete static_cast<GuardPtr*>(data); });
}

uint64_t CallMedia::inbound_packets() const { return guard_->inbound_packets.load(std::memory_order_relaxed); }

void InboundMediaWatch::start(const CallMedia& media, int timeout_s, std::function<void()> on_silent) {
  media_ = &media;
  timeout_us_ = int64_t{timeout_s} * G_USEC_PER_SEC;
  last_count_ = media.inbound_packets();
  last_change_us_ = g_get_monotonic_time();
  on_silent_ = std::move(on_silent);
  timer_ = run_after(kMediaWatchIntervalMs, [this] { check(); });
}

void InboundMediaWatch::stop() {
  timer_.reset();
  media_ = nullptr;
}

void InboundMediaWatch::check() {
  timer_.release();
  const int64_t now_us = g_get_monotonic_time();
  if (const uint64_t count = media_->inbound_packets(); count != last_count_) {
    last_count_ = count;
    last_change_us_ = now_us;
  } else if (now_us - last_change_us_ >= timeout_us_) {
    media_ = nullptr;
    // Moved out first: on_silent usually ends the call that owns this watch.
    auto on_silent = std::move(on_silent_);
    on_silent();
    return;
  }
  timer_ = run_after(kMediaWatchIntervalMs, [this] { check(); });
}

// The send side must exist, on the offer's Opus PT and without sprop-*
// fields, before the offer is applied; anything else answers recvonly.
bool CallMedia::add_send_transceiver(std::string* error) {
  g_autoptr(GstCaps) codec = gst_caps_new_simple("application/x-rtp", "media", G_TYPE_STRING, "audio",
                                                 "encoding-name", G_TYPE_STRING, "OPUS", "clock-rate", G_TYPE_INT,
                                                 48000, "payload", G_TYPE_INT, offer_.payload_type, nullptr);
  GstWebRTCRTPTransceiver* transceiver = nullptr;
  g_signal_emit_by_name(webrtc_, "add-transceiver", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV, codec,
                        &transceiver);
  if (!transceiver) {
    *error = "webrtcbin refused the audio transceiver";
    return false;
  }
  gst_object_unref(transceiver);
  return true;
}

void CallMedia::connect_signals() {
  connect_guarded(webrtc_, "pad-added", G_CALLBACK(Guard::on_pad_added), guard_);
  connect_guarded(webrtc_, "notify::ice-gathering-state", G_CALLBACK(Guard::on_gathering_state_notify), guard_);
  connect_guarded(webrtc_, "notify::connection-state", G_CALLBACK(Guard::on_connection_state_notify), guard_);
  connect_guarded(webrtc_, "notify::ice-connection-state", G_CALLBACK(Guard::on_ice_connection_state_notify),
                  guard_);
  connect_guarded(realtime_, "function-call", G_CALLBACK(Guard::on_function_call), guard_);

  GstPtr<GstBus> bus(gst_element_get_bus(pipeline_));
  gst_bus_add_watch_full(
      bus.get(), G_PRIORITY_DEFAULT,
      [](GstBus*, GstMessage* message, gpointer data) -> gboolean {
        if (CallMedia* self = guard_from(data)->self)
          self->on_bus_message(message);
        return G_SOURCE_CONTINUE;
      },
      new GuardPtr(guard_), [](gpointer data) { delete static_cast<GuardPtr*>(data); });
  bus_watched_ = true;
}

bool CallMedia::configure_realtime(std::string* error) {
  const RealtimeSettings& realtime = settings_.realtime;
  auto set_if_given = [this](const char* property, const std::string& value) {
    if (!value.empty())
      g_object_set(realtime_, property, value.c_str(), nullptr);
  };
  set_if_given("url", realtime.url);
  set_if_given("api-key", realtime.api_key);
  set_if_given("model", realtime.model);
  set_if_given("voice", realtime.voice);
  set_if_given("instructions", settings_.instructions.empty() ? realtime.instructions : settings_.instructions);
  g_object_set(realtime_, "azure", realtime.azure ? TRUE : FALSE, nullptr);
  // Every call's output is pushed by one thread: nothing downstream blocks
  // (webrtcbin's sinks do not sync), and it saves a thread and 50 wake-ups a
  // second per call.
  g_object_set(realtime_, "shared-pacing", TRUE, nullptr);
  if (!settings_.tools_json.empty()) {
    if (!is_json_array(settings_.tools_json, error))
      return false;
    g_object_set(realtime_, "tools", settings_.tools_json.c_str(), nullptr);
  }
  return true;
}

bool CallMedia::configure_ice(std::string* error) {
  const IceSettings& ice_settings = settings_.ice;
  if (!ice_settings.stun_server.empty())
    g_object_set(webrtc_, "stun-server", ice_settings.stun_server.c_str(), nullptr);
  if (!ice_settings.turn_server.empty())
    g_object_set(webrtc_, "turn-server", ice_settings.turn_server.c_str(), nullptr);

  // webrtcbin keeps its ICE object floating: adopt the getter's reference as
  // is and release it with a plain unref (never ref_sink).
  GstWebRTCICE* raw_ice = nullptr;
  g_object_get(webrtc_, "ice-agent", &raw_ice, nullptr);
  GstPtr<GstWebRTCICE> ice(raw_ice);
  if (!ice) {
    *error = "webrtcbin has no ICE agent";
    return false;
  }
  g_object_set(ice.get(), "ice-tcp", turn_needs_tcp(ice_settings.turn_server) ? TRUE : FALSE, "ice-udp", TRUE,
               nullptr);
  if (ice_settings.port_min > 0 && ice_settings.port_max >= ice_settings.port_min)
    g_object_set(ice.get(), "min-rtp-port", static_cast<guint>(ice_settings.port_min), "max-rtp-port",
                 static_cast<guint>(ice_settings.port_max), nullptr);
  for (const std::string& address : settings_.local_ip_addresses) {
    gboolean added = FALSE;
    g_signal_emit_by_name(ice.get(), "add-local-ip-address", address.c_str(), &added);
    if (!added) {
      *error = "ICE cannot gather on local address \"" + address + "\"";
      return false;
    }
  }
  // UPnP costs a thread and ~200 ms per gathering, and a server must not
  // ask the LAN router for port mappings.
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(ice.get()), "agent")) {
    GObject* agent = nullptr;
    g_object_get(ice.get(), "agent", &agent, nullptr);
    if (agent) {
      g_object_set(agent, "upnp", FALSE, nullptr);
      g_object_unref(agent);
    }
  }
  return true;
}

bool CallMedia::negotiate(const std::string& offer_sdp, std::string* error) {
  GstSDPMessage* sdp = nullptr;
  gst_sdp_message_new_from_text(offer_sdp.c_str(), &sdp);
  if (!sdp) {
    *error = "unusable offer: SDP could not be parsed";
    return false;
  }
  GstWebRTCSessionDescription* offer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, sdp);
  GstPromise* promise = guarded_promise(guard_, webrtc_, Guard::on_remote_description_set);
  g_signal_emit_by_name(webrtc_, "set-remote-description", offer, promise);
  gst_promise_unref(promise);
  gst_webrtc_session_description_free(offer);
  return true;
}

void CallMedia::local_description_applied() {
  if (failed_ || answer_done_)
    return;
  local_description_set_ = true;
  GstWebRTCICEGatheringState state;
  g_object_get(webrtc_, "ice-gathering-state", &state, nullptr);
  if (state == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) {
    finish_answer("gathering complete");
    return;
  }
  // 1.22.0 may never report COMPLETE (reference §1.1 step 7): answer anyway.
  gather_timer_ = run_after(static_cast<guint>(settings_.gather_timeout_ms), [this] {
    gather_timer_.release();
    finish_answer("gathering timeout");
  });
}

void CallMedia::gathering_completed() {
  if (local_description_set_)
    finish_answer("gathering complete");
}

void CallMedia::finish_answer(const char* why) {
  if (failed_ || answer_done_)
    return;
  answer_done_ = true;
  gather_timer_.reset();
  GstWebRTCSessionDescription* description = nullptr;
  g_object_get(webrtc_, "local-description", &description, nullptr);
  if (!description) {
    report_failure("webrtcbin has no local description");
    return;
  }
  g_autofree gchar* text = gst_sdp_message_as_text(description->sdp);
  gst_webrtc_session_description_free(description);
  std::string answer = text;
  if (!settings_.ice.public_ip.empty())
    answer = rewrite_candidates_for_public_ip(answer, settings_.ice.public_ip);
  if (answer.find("a=candidate:") == std::string::npos) {
    report_failure(std::string("ICE gathering produced no candidates (") + why + ")");
    return;
  }
  if (offerer_)
    return finish_offer(std::move(answer));
  if (const std::vector<std::string> problems = check_answer(answer, offer_); !problems.empty()) {
    std::string reason = "refusing to send a bad answer:";
    for (const std::string& problem : problems)
      reason += " " + problem + ";";
    reason.pop_back();
    report_failure(reason);
    return;
  }
  g_debug("media: answer ready (%s)", why);
  answer_sdp_ = std::move(answer);
  if (events_.on_answer_ready)
    events_.on_answer_ready(answer_sdp_);
}

// Meta refuses offers without exactly one sha-256 fingerprint or with a
// fixed DTLS role (reference §3.4): check ours before it leaves.
void CallMedia::finish_offer(std::string offer) {
  std::vector<std::string> problems;
  if (OfferParseResult parsed = parse_offer(offer); !parsed.opus)
    problems.push_back(parsed.error);
  size_t fingerprints = 0;
  for (size_t at = offer.find("a=fingerprint:"); at != std::string::npos; at = offer.find("a=fingerprint:", at + 1))
    ++fingerprints;
  if (fingerprints != 1 || offer.find("a=fingerprint:sha-256 ") == std::string::npos)
    problems.push_back("the offer needs exactly one sha-256 fingerprint, has " + std::to_string(fingerprints));
  if (offer.find("a=setup:actpass") == std::string::npos)
    problems.push_back("the offer lacks a=setup:actpass");
  if (!problems.empty()) {
    std::string reason = "refusing to send a bad offer:";
    for (const std::string& problem : problems)
      reason += " " + problem + ";";
    reason.pop_back();
    report_failure(reason);
    return;
  }
  offer_sdp_ = std::move(offer);
  if (events_.on_offer_ready)
    events_.on_offer_ready(offer_sdp_);
}

void CallMedia::connection_state_changed(int state) {
  if (state == GST_WEBRTC_PEER_CONNECTION_STATE_CONNECTED && !connected_) {
    connected_ = true;
    receive_takeover_ = ReceiveTakeover::start(webrtc_);
    if (!receive_takeover_)
      g_warning("media: webrtcbin's receive path is not what GStreamer 1.22 builds: nicesrc keeps receiving");
    if (events_.on_connected)
      events_.on_connected();
  } else if (state == GST_WEBRTC_PEER_CONNECTION_STATE_FAILED) {
    report_failure("WebRTC connection failed (ICE or DTLS)");
  }
}

void CallMedia::function_called(const std::string& call_id, const std::string& name, const std::string& arguments) {
  if (events_.on_function_call)
    events_.on_function_call(call_id, name, arguments);
}

void CallMedia::on_bus_message(GstMessage* message) {
  switch (GST_MESSAGE_TYPE(message)) {
    case GST_MESSAGE_ELEMENT: {
      const GstStructure* s = gst_message_get_structure(message);
      if (gst_structure_has_name(s, "openairealtime-session")) {
        const char* state = gst_structure_get_string(s, "state");
        g_debug("media: realtime session %s", state ? state : "?");
        if (g_strcmp0(state, "ready") == 0 && !realtime_ready_) {
          realtime_ready_ = true;
          if (events_.on_realtime_ready)
            events_.on_realtime_ready();
        }
      } else if (gst_structure_has_name(s, "openairealtime-transcript")) {
        const char* role = gst_structure_get_string(s, "role");
        const char* text = gst_structure_get_string(s, "text");
        if (events_.on_transcript && role && text)
          events_.on_transcript(role, text);
      } else if (gst_structure_has_name(s, "openairealtime-usage")) {
        usage_reported(s);
      }
      break;
    }
    case GST_MESSAGE_ERROR: {
      g_autoptr(GError) error = nullptr;
      g_autofree gchar* debug = nullptr;
      gst_message_parse_error(message, &error, &debug);
      const GstStructure* details = nullptr;
      gst_message_parse_error_details(message, &details);
      std::string reason;
      if (details && gst_structure_has_name(details, "openairealtime-error")) {
        realtime_error_reported(details);
        const char* type = gst_structure_get_string(details, "type");
        const char* code = gst_structure_get_string(details, "code");
        const char* text = gst_structure_get_string(details, "message");
        reason = std::string("realtime error ") + (type ? type : "?") + "/" + (code ? code : "?") + ": " +
                 (text ? text : error->message);
      } else {
        reason = std::string("pipeline error from ") + GST_OBJECT_NAME(GST_MESSAGE_SRC(message)) + ": " +
                 error->message + (debug ? std::string(" (") + debug + ")" : "");
      }
      report_failure(reason);
      break;
    }
    case GST_MESSAGE_LATENCY:
      // The send path joins webrtcbin after PLAYING: redistribute latency.
      gst_bin_recalculate_latency(GST_BIN(pipeline_));
      break;
    case GST_MESSAGE_WARNING: {
      g_autoptr(GError) warning = nullptr;
      g_autofree gchar* debug = nullptr;
      gst_message_parse_warning(message, &warning, &debug);
      const GstStructure* details = nullptr;
      gst_message_parse_warning_details(message, &details);
      if (details && gst_structure_has_name(details, "openairealtime-error"))
        realtime_error_reported(details);
      g_warning("media: warning from %s: %s", GST_OBJECT_NAME(GST_MESSAGE_SRC(message)), warning->message);
      break;
    }
    default:
      break;
  }
}

void CallMedia::usage_reported(const GstStructure* usage) {
  const std::optional<int64_t> input = token_count(usage, "input-tokens");
  const std::optional<int64_t> output = token_count(usage, "output-tokens");
  if (!input || !output) {
    g_autofree gchar* text = gst_structure_to_string(usage);
    g_warning("media: ignoring a malformed usage message: %s", text);
    return;
  }
  if (events_.on_usage)
    events_.on_usage(*input, *output);
}

void CallMedia::realtime_error_reported(const GstStructure* details) {
  const char* code = gst_structure_get_string(details, "code");
  if (events_.on_realtime_error)
    events_.on_realtime_error(code ? code : "");
}

MediaTotals CallMedia::totals() const {
  if (!realtime_)
    return {};
  guint64 sent_input_ms = 0, played_ms = 0;
  guint barge_ins = 0;
  g_object_get(realtime_, "sent-input-ms", &sent_input_ms, "played-ms", &played_ms, "barge-ins", &barge_ins, nullptr);
  return {sent_input_ms / kAudioFrameMs, played_ms / kAudioFrameMs, barge_ins};
}

void CallMedia::report_failure(const std::string& reason) {
  if (failed_)
    return;
  failed_ = true;
  gather_timer_.reset();
  g_warning("media: %s", reason.c_str());
  if (events_.on_failed)
    events_.on_failed(reason);
}

void CallMedia::start_sending() {
  if (sending_ || !valve_)
    return;
  sending_ = true;
  open_send_path();
  gboolean queued = FALSE;
  g_signal_emit_by_name(realtime_, "create-response", nullptr, &queued);
  if (!queued)
    g_warning("media: the AI refused to start the greeting");
}

// Once Meta accepted and webrtcbin's send path is unblocked (in practice both
// come with DTLS connecting): opening the valve earlier would let the shared
// pacer's push wait in webrtcbin's pad block, and every call's audio with it.
void CallMedia::open_send_path() {
  if (!sending_ || !send_keys_set_ || send_path_open_)
    return;
  send_path_open_ = true;
  g_object_set(valve_, "drop", FALSE, nullptr);
}

void CallMedia::send_function_result(const std::string& call_id, const std::string& output_json) {
  gboolean sent = FALSE;
  g_signal_emit_by_name(realtime_, "function-result", call_id.c_str(), output_json.c_str(), &sent);
  if (!sent)
    g_warning("media: function result for %s not accepted", call_id.c_str());
}

void CallMedia::ask_to_speak(const std::string& instructions) {
  gboolean queued = FALSE;
  g_signal_emit_by_name(realtime_, "create-response", instructions.empty() ? nullptr : instructions.c_str(),
                        &queued);
  if (!queued)
    g_warning("media: the AI refused create-response");
}

CallMedia::~CallMedia() {
  guard_->self = nullptr;
  guard_->closing = true;
  gather_timer_.reset();
  if (!pipeline_)
    return;
  if (bus_watched_) {
    GstPtr<GstBus> bus(gst_element_get_bus(pipeline_));
    gst_bus_remove_watch(bus.get());
  }
  if (receive_takeover_)
    receive_takeover_->stop();  // no receive thread pushes into the pipeline from here on
  if (webrtc_) {
    unlink_source_pads(webrtc_);
    // webrtcbin first: a send thread may be held inside it (a sink pad still
    // blocked before DTLS connects, or nicesink prerolling once paused), and
    // only deactivating webrtcbin's pads releases it. Stopping the upstream
    // elements while it is held would wait for it forever.
    gst_element_set_state(webrtc_, GST_STATE_NULL);
  }
  // NULL stops every streaming and signalling thread; dropping the last
  // reference right away finalizes webrtcbin and with it the ICE thread.
  gst_element_set_state(pipeline_, GST_STATE_NULL);
  gst_object_unref(pipeline_);
}

}  // namespace vb
