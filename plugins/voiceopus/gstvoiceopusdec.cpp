/**
 * SECTION:element-voiceopusdec
 *
 * Decodes one Opus voice stream (one packet per buffer, as rtpopusdepay
 * outputs it) to mono S16LE, directly at the rate downstream asks for (24 kHz
 * when it is free to choose). Stereo packets are downmixed by libopus.
 *
 * Unlike opusdec it uses libopus's single-stream API: Debian's libopus 1.3.1
 * (built with custom modes) recomputes the decoder size in every
 * opus_multistream_decode, which runs CPUID several times per packet, and
 * CPUID traps to the hypervisor in a VM.
 *
 * Lost packets (GAP events, e.g. from rtpjitterbuffer do-lost=TRUE through
 * rtpopusdepay) and corrupt packets are concealed with Opus PLC while the
 * base class's `plc` property is TRUE (this element's default), in steps of
 * at most 20 ms rounded to 2.5 ms, up to 2 s per gap. A corrupt packet counts
 * as a decoder error: it fails the stream only beyond the base class's
 * `max-errors` (default -1: never). Buffers flagged HEADER (OpusHead/OpusTags
 * from opusenc) are skipped; the clipping meta of Ogg pre-skip is ignored.
 *
 * Example: gst-launch-1.0 udpsrc caps="application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
 *   ! rtpjitterbuffer do-lost=true ! rtpopusdepay ! voiceopusdec ! audio/x-raw,rate=24000 ! autoaudiosink
 */
#include "gstvoiceopusdec.h"

#include <gst/audio/audio.h>
#include <opus.h>

#include <algorithm>
#include <atomic>
#include <memory>

GST_DEBUG_CATEGORY_STATIC(voiceopusdec_debug);
#define GST_CAT_DEFAULT voiceopusdec_debug

// opus_decode() writes native-endian samples; the src caps promise S16LE.
static_assert(G_BYTE_ORDER == G_LITTLE_ENDIAN, "voiceopusdec outputs native samples as S16LE");

namespace voiceopus {
namespace {

constexpr gint kPreferredRate = 24000;  // what the Realtime bridge takes
constexpr gint kOpusRates[] = {8000, 12000, 16000, 24000, 48000};
// PLC works in multiples of 2.5 ms; one opus_decode(NULL) call covers at most 20 ms.
constexpr GstClockTime kPlcGranule = 2500 * GST_USECOND;
constexpr GstClockTime kPlcStep = 20 * GST_MSECOND;
constexpr GstClockTime kDefaultPacketDuration = 20 * GST_MSECOND;
// A longer gap is concealed only up to this; the timeline resumes with the
// next packet's timestamp (the base class resyncs on every input timestamp).
constexpr GstClockTime kMaxConcealment = 2 * GST_SECOND;

enum Property {
  PROP_0,
  PROP_DECODED_PACKETS,
  PROP_CORRUPT_PACKETS,
  PROP_CONCEALED_MS,
};

struct OpusDecoderDestroy {
  void operator()(OpusDecoder* decoder) const { opus_decoder_destroy(decoder); }
};
using OpusDecoderPtr = std::unique_ptr<OpusDecoder, OpusDecoderDestroy>;

}  // namespace

// The decoder state, touched only by the streaming thread (set_format,
// handle_frame, flush) and by start/stop while no data flows; the counters
// are read from any thread.
struct DecoderState {
  OpusDecoderPtr decoder;
  gint rate = 0;
  GstClockTime last_packet_duration = GST_CLOCK_TIME_NONE;
  // Gap time not yet concealed (or concealed in advance, when negative):
  // concealment is rounded to the nearest 2.5 ms.
  gint64 plc_carry = 0;

  std::atomic<guint64> decoded_packets{0};
  std::atomic<guint64> corrupt_packets{0};
  std::atomic<guint64> concealed_time{0};  // ns

  void reset_stream() {
    decoder.reset();
    rate = 0;
    last_packet_duration = GST_CLOCK_TIME_NONE;
    plc_carry = 0;
  }
};

}  // namespace voiceopus

using voiceopus::DecoderState;

struct _GstVoiceOpusDec {
  GstAudioDecoder parent;
  DecoderState* state;  // created in init, deleted in finalize
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-opus, channel-mapping-family=(int)0, channels=(int)[ 1, 2 ]"));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)S16LE, layout=(string)interleaved, channels=(int)1, "
                    "rate=(int){ 8000, 12000, 16000, 24000, 48000 }"));

G_DEFINE_TYPE_WITH_CODE(GstVoiceOpusDec, gst_voice_opus_dec, GST_TYPE_AUDIO_DECODER,
                        GST_DEBUG_CATEGORY_INIT(voiceopusdec_debug, "voiceopusdec", 0,
                                                "Opus voice decoder (single-stream libopus)"));
GST_ELEMENT_REGISTER_DEFINE(voiceopusdec, "voiceopusdec", GST_RANK_NONE, GST_TYPE_VOICE_OPUS_DEC);

static DecoderState& state_of(GstAudioDecoder* dec) { return *GST_VOICE_OPUS_DEC(dec)->state; }

static GstClockTime samples_to_time(gint samples, gint rate) {
  return gst_util_uint64_scale_int(static_cast<guint64>(samples), GST_SECOND, rate);
}

// The output rate: 24 kHz if downstream takes it, else the allowed rate
// nearest to it; 0 if downstream takes none of ours.
static gint choose_rate(GstAudioDecoder* dec) {
  g_autoptr(GstCaps) allowed = gst_pad_get_allowed_caps(GST_AUDIO_DECODER_SRC_PAD(dec));
  if (!allowed) return voiceopus::kPreferredRate;  // not linked: anything goes
  GST_DEBUG_OBJECT(dec, "downstream allows %" GST_PTR_FORMAT, allowed);
  if (gst_caps_is_empty(allowed)) return 0;
  g_autoptr(GstCaps) preferred = gst_caps_new_simple("audio/x-raw", "rate", G_TYPE_INT, voiceopus::kPreferredRate,
                                                     nullptr);
  if (gst_caps_can_intersect(allowed, preferred)) return voiceopus::kPreferredRate;
  g_autoptr(GstStructure) first = gst_structure_copy(gst_caps_get_structure(allowed, 0));
  gst_structure_fixate_field_nearest_int(first, "rate", voiceopus::kPreferredRate);  // FALSE if already fixed
  gint rate = 0;
  if (!gst_structure_get_int(first, "rate", &rate)) return 0;
  const auto& rates = voiceopus::kOpusRates;
  return std::find(std::begin(rates), std::end(rates), rate) != std::end(rates) ? rate : 0;
}

static gboolean set_format(GstAudioDecoder* dec, GstCaps* caps) {
  DecoderState& state = state_of(dec);
  GST_DEBUG_OBJECT(dec, "input caps %" GST_PTR_FORMAT, caps);
  const gint rate = choose_rate(dec);
  if (rate == 0) {
    GST_ELEMENT_ERROR(dec, CORE, NEGOTIATION, ("Downstream accepts no Opus output rate"),
                      ("need mono S16LE at 8, 12, 16, 24 or 48 kHz"));
    return FALSE;
  }
  if (!state.decoder || rate != state.rate) {
    int error = OPUS_OK;
    voiceopus::OpusDecoderPtr decoder(opus_decoder_create(rate, 1, &error));
    if (!decoder || error != OPUS_OK) {
      GST_ELEMENT_ERROR(dec, LIBRARY, INIT, ("Could not create the Opus decoder: %s", opus_strerror(error)),
                        ("rate %d, 1 channel", rate));
      return FALSE;
    }
    GST_INFO_OBJECT(dec, "decoding to mono at %d Hz", rate);
    state.reset_stream();
    state.decoder = std::move(decoder);
    state.rate = rate;
  }
  GstAudioInfo info;
  gst_audio_info_set_format(&info, GST_AUDIO_FORMAT_S16LE, rate, 1, nullptr);
  return gst_audio_decoder_set_output_format(dec, &info);
}

// Synthesises `duration` of audio with Opus PLC (rounded to 2.5 ms, the
// remainder carried to the next concealment) and finishes the current frame
// with it.
static GstFlowReturn conceal(GstAudioDecoder* dec, GstClockTime duration) {
  DecoderState& state = state_of(dec);
  const gint64 pending = static_cast<gint64>(std::min(duration, voiceopus::kMaxConcealment)) + state.plc_carry;
  const gint64 granule = voiceopus::kPlcGranule;
  const gint64 aligned = std::max<gint64>(0, (pending + granule / 2) / granule * granule);
  state.plc_carry = pending - aligned;
  if (aligned == 0) return gst_audio_decoder_finish_frame(dec, nullptr, 1);

  const gint total = static_cast<gint>(gst_util_uint64_scale_int(aligned, state.rate, GST_SECOND));
  const gint step = static_cast<gint>(gst_util_uint64_scale_int(voiceopus::kPlcStep, state.rate, GST_SECOND));
  GstBuffer* output = gst_audio_decoder_allocate_output_buffer(dec, static_cast<gsize>(total) * sizeof(opus_int16));
  GstMapInfo map;
  if (!gst_buffer_map(output, &map, GST_MAP_WRITE)) {
    gst_buffer_unref(output);
    GST_ELEMENT_ERROR(dec, CORE, FAILED, ("Could not write an output buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  auto* samples = reinterpret_cast<opus_int16*>(map.data);
  gint done = 0;
  int result = OPUS_OK;
  while (done < total) {
    result = opus_decode(state.decoder.get(), nullptr, 0, samples + done, std::min(step, total - done), 0);
    if (result <= 0) break;
    done += result;
  }
  gst_buffer_unmap(output, &map);
  if (done < total) {
    if (result >= 0) result = OPUS_INTERNAL_ERROR;
    gst_buffer_unref(output);
    GstFlowReturn ret = GST_FLOW_OK;
    GST_AUDIO_DECODER_ERROR(dec, 1, STREAM, DECODE, ("Opus packet loss concealment failed: %s", opus_strerror(result)),
                            ("%d of %d samples concealed", done, total), ret);
    return ret == GST_FLOW_OK ? gst_audio_decoder_finish_frame(dec, nullptr, 1) : ret;
  }
  state.concealed_time += static_cast<guint64>(aligned);
  GST_LOG_OBJECT(dec, "concealed %" GST_TIME_FORMAT " (carry %" G_GINT64_FORMAT " ns)",
                 GST_TIME_ARGS(static_cast<GstClockTime>(aligned)), state.plc_carry);
  return gst_audio_decoder_finish_frame(dec, output, 1);
}

// A packet libopus rejected: a decoder error by the base class's rules, then
// concealed for as long as the packet presumably lasted.
static GstFlowReturn corrupt_packet(GstAudioDecoder* dec, GstBuffer* packet, gsize size, int error) {
  DecoderState& state = state_of(dec);
  ++state.corrupt_packets;
  GstFlowReturn ret = GST_FLOW_OK;
  GST_AUDIO_DECODER_ERROR(dec, 1, STREAM, DECODE, ("Corrupt Opus packet: %s", opus_strerror(error)),
                          ("%" G_GSIZE_FORMAT " bytes at %" GST_TIME_FORMAT, size,
                           GST_TIME_ARGS(GST_BUFFER_PTS(packet))),
                          ret);
  if (ret != GST_FLOW_OK) return ret;
  if (!gst_audio_decoder_get_plc(dec)) return gst_audio_decoder_finish_frame(dec, nullptr, 1);
  GstClockTime duration = GST_BUFFER_DURATION(packet);
  if (!GST_CLOCK_TIME_IS_VALID(duration) || duration == 0) duration = state.last_packet_duration;
  if (!GST_CLOCK_TIME_IS_VALID(duration)) duration = voiceopus::kDefaultPacketDuration;
  return conceal(dec, duration);
}

static GstFlowReturn decode_packet(GstAudioDecoder* dec, GstBuffer* packet) {
  DecoderState& state = state_of(dec);
  GstMapInfo input;
  if (!gst_buffer_map(packet, &input, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(dec, CORE, FAILED, ("Could not read an input buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  const gsize size = input.size;
  const opus_int32 length = static_cast<opus_int32>(std::min<gsize>(size, G_MAXINT32));
  const int samples = opus_decoder_get_nb_samples(state.decoder.get(), input.data, length);
  if (samples <= 0) {
    gst_buffer_unmap(packet, &input);
    return corrupt_packet(dec, packet, size, samples < 0 ? samples : OPUS_INVALID_PACKET);
  }
  GstBuffer* output = gst_audio_decoder_allocate_output_buffer(dec, static_cast<gsize>(samples) * sizeof(opus_int16));
  GstMapInfo map;
  if (!gst_buffer_map(output, &map, GST_MAP_WRITE)) {
    gst_buffer_unmap(packet, &input);
    gst_buffer_unref(output);
    GST_ELEMENT_ERROR(dec, CORE, FAILED, ("Could not write an output buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  const int decoded =
      opus_decode(state.decoder.get(), input.data, length, reinterpret_cast<opus_int16*>(map.data), samples, 0);
  gst_buffer_unmap(output, &map);
  gst_buffer_unmap(packet, &input);
  if (decoded < 0) {
    gst_buffer_unref(output);
    return corrupt_packet(dec, packet, size, decoded);
  }
  gst_buffer_set_size(output, static_cast<gsize>(decoded) * sizeof(opus_int16));
  state.last_packet_duration = samples_to_time(decoded, state.rate);
  ++state.decoded_packets;
  return gst_audio_decoder_finish_frame(dec, output, 1);
}

static GstFlowReturn handle_frame(GstAudioDecoder* dec, GstBuffer* buffer) {
  if (!buffer) return GST_FLOW_OK;  // drain: nothing is held back
  DecoderState& state = state_of(dec);
  const bool gap = gst_buffer_get_size(buffer) == 0;  // the base class's PLC request
  if (!state.decoder) {
    // Only a gap can come before the caps: there is nothing to conceal yet.
    GST_DEBUG_OBJECT(dec, "no stream yet, dropping a %s", gap ? "gap" : "packet");
    return gst_audio_decoder_finish_frame(dec, nullptr, 1);
  }
  if (gap) {
    const GstClockTime duration = GST_BUFFER_DURATION(buffer);
    return conceal(dec, GST_CLOCK_TIME_IS_VALID(duration) ? duration : voiceopus::kDefaultPacketDuration);
  }
  if (GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_HEADER)) {
    GST_DEBUG_OBJECT(dec, "skipping a header buffer (OpusHead/OpusTags)");
    return gst_audio_decoder_finish_frame(dec, nullptr, 1);
  }
  return decode_packet(dec, buffer);
}

// The sink accepts any Opus mono/stereo stream whatever the output is: the
// output rate and channel count do not constrain the input.
static GstCaps* sink_getcaps(GstAudioDecoder* dec, GstCaps* filter) {
  GstCaps* caps = gst_pad_get_pad_template_caps(GST_AUDIO_DECODER_SINK_PAD(dec));
  if (!filter) return caps;
  GstCaps* filtered = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
  gst_caps_unref(caps);
  return filtered;
}

static void flush(GstAudioDecoder* dec, gboolean hard) {
  DecoderState& state = state_of(dec);
  if (!hard || !state.decoder) return;
  opus_decoder_ctl(state.decoder.get(), OPUS_RESET_STATE);
  state.last_packet_duration = GST_CLOCK_TIME_NONE;
  state.plc_carry = 0;
}

static gboolean start(GstAudioDecoder* dec) {
  DecoderState& state = state_of(dec);
  state.reset_stream();
  state.decoded_packets = 0;
  state.corrupt_packets = 0;
  state.concealed_time = 0;
  gst_audio_decoder_set_plc_aware(dec, TRUE);  // the base class resets it before start
  return TRUE;
}

static gboolean stop(GstAudioDecoder* dec) {
  state_of(dec).reset_stream();
  return TRUE;
}

static void get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  const DecoderState& state = *GST_VOICE_OPUS_DEC(object)->state;
  switch (id) {
    case voiceopus::PROP_DECODED_PACKETS: g_value_set_uint64(value, state.decoded_packets); break;
    case voiceopus::PROP_CORRUPT_PACKETS: g_value_set_uint64(value, state.corrupt_packets); break;
    case voiceopus::PROP_CONCEALED_MS: g_value_set_uint64(value, state.concealed_time / GST_MSECOND); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static void finalize(GObject* object) {
  delete GST_VOICE_OPUS_DEC(object)->state;
  G_OBJECT_CLASS(gst_voice_opus_dec_parent_class)->finalize(object);
}

static void gst_voice_opus_dec_init(GstVoiceOpusDec* self) {
  self->state = new DecoderState();
  GstAudioDecoder* dec = GST_AUDIO_DECODER(self);
  gst_audio_decoder_set_needs_format(dec, TRUE);
  gst_audio_decoder_set_plc(dec, TRUE);  // the base class's "plc" property: on by default here
  // Accept-caps checks the template only, and by intersection: caps without
  // a channels field are fine.
  gst_audio_decoder_set_use_default_pad_acceptcaps(dec, TRUE);
  GST_PAD_SET_ACCEPT_TEMPLATE(GST_AUDIO_DECODER_SINK_PAD(dec));
  GST_PAD_SET_ACCEPT_INTERSECT(GST_AUDIO_DECODER_SINK_PAD(dec));
}

static void install_counter(GObjectClass* klass, guint id, const char* name, const char* nick, const char* blurb) {
  g_object_class_install_property(
      klass, id,
      g_param_spec_uint64(name, nick, blurb, 0, G_MAXUINT64, 0, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
}

static void gst_voice_opus_dec_class_init(GstVoiceOpusDecClass* klass) {
  GObjectClass* object_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstAudioDecoderClass* decoder_class = GST_AUDIO_DECODER_CLASS(klass);
  object_class->get_property = get_property;
  object_class->finalize = finalize;
  decoder_class->start = start;
  decoder_class->stop = stop;
  decoder_class->set_format = set_format;
  decoder_class->handle_frame = handle_frame;
  decoder_class->flush = flush;
  decoder_class->getcaps = sink_getcaps;

  install_counter(object_class, voiceopus::PROP_DECODED_PACKETS, "decoded-packets", "Decoded packets",
                  "Opus packets decoded since the element last started (READY to PAUSED)");
  install_counter(object_class, voiceopus::PROP_CORRUPT_PACKETS, "corrupt-packets", "Corrupt packets",
                  "Packets libopus rejected as invalid (each one a decoder error, concealed while plc is on)");
  install_counter(object_class, voiceopus::PROP_CONCEALED_MS, "concealed-ms", "Concealed",
                  "Audio synthesised by packet loss concealment for lost and corrupt packets, in ms");

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Opus voice decoder", "Codec/Decoder/Audio",
      "Decodes one Opus voice stream to mono at the rate downstream wants, with packet loss concealment "
      "(libopus single-stream API)",
      "voicebridge <voicebridge@example.org>");
}
