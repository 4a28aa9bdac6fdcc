/**
 * SECTION:element-voiceopusenc
 *
 * Encodes one mono voice stream to Opus, one frame per packet (20 ms by
 * default), through libopus's single-stream API, and skips the encoder while
 * the input is silent.
 *
 * Why not opusenc: GStreamer's opusenc always uses libopus's multistream API,
 * which in Debian 12's libopus 1.3.1 (built with custom modes) recomputes the
 * encoder's size on every packet, running CPUID each time; inside a virtual
 * machine CPUID traps to the hypervisor. And an AI voice agent is silent most
 * of a call: encoding digital silence costs as much as encoding speech.
 *
 * Silence: a frame is silent when its buffer is flagged GAP or all its
 * samples are zero. After 10 silent frames (200 ms) have gone through the encoder
 * (so that its state and lookahead, and the far end's decoder, have settled on
 * silence) the packet it produced is cached and sent again for every further
 * silent frame without running the encoder. Timestamps and the packet cadence
 * are unchanged, so RTP timing downstream stays continuous.
 *
 * Example: gst-launch-1.0 audiotestsrc is-live=true ! audio/x-raw,rate=24000,channels=1 !
 *   voiceopusenc bitrate=20000 complexity=2 ! rtpopuspay ! udpsink host=127.0.0.1 port=5004
 */
#include "gstvoiceopusenc.h"

#include <gst/audio/audio.h>
#include <opus/opus.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(voiceopusenc_debug);
#define GST_CAT_DEFAULT voiceopusenc_debug

namespace {

constexpr int kDefaultFrameMs = 20;
constexpr int kMaxFrameMs = 60;
constexpr gsize kMaxFrameSamples = 48000 * kMaxFrameMs / 1000;
constexpr int kMaxPacketBytes = 1275;  // RFC 6716 §3.2.1: one frame's largest size
// Silent frames encoded before the packet is cached: libopus's lookahead
// (≤ 6.5 ms) and SILK's inter-frame state must have flushed. After speech its
// silence packets take ~4 frames to shrink to their steady 7-8 bytes (with
// in-band FEC on they carry the last speech frame again: 35-54 bytes).
constexpr guint64 kSilentFramesBeforeCaching = 10;

constexpr int kDefaultBitrate = 20000;
constexpr int kDefaultComplexity = 5;
constexpr int kDefaultBandwidth = OPUS_BANDWIDTH_WIDEBAND;

enum Property {
  PROP_0,
  PROP_BITRATE,
  PROP_MAX_BANDWIDTH,
  PROP_COMPLEXITY,
  PROP_FRAME_SIZE,
  PROP_INBAND_FEC,
  PROP_PACKET_LOSS_PERCENTAGE,
  PROP_SKIP_SILENCE,
  PROP_ENCODED_FRAMES,
  PROP_SILENT_FRAMES,
};

struct OpusEncoderDeleter {
  void operator()(OpusEncoder* encoder) const { opus_encoder_destroy(encoder); }
};
using OpusEncoderPtr = std::unique_ptr<OpusEncoder, OpusEncoderDeleter>;

struct BufferUnref {
  void operator()(GstBuffer* buffer) const { gst_buffer_unref(buffer); }
};
using BufferPtr = std::unique_ptr<GstBuffer, BufferUnref>;

struct Settings {
  int bitrate = kDefaultBitrate;
  int max_bandwidth = kDefaultBandwidth;
  int complexity = kDefaultComplexity;
  int frame_ms = kDefaultFrameMs;
  bool inband_fec = false;
  int packet_loss_percentage = 0;
  bool skip_silence = true;
};

bool is_silent(GstBuffer* buffer, const GstMapInfo& map) {
  if (GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_GAP))
    return true;
  return std::all_of(map.data, map.data + map.size, [](guint8 byte) { return byte == 0; });
}

}  // namespace

struct _GstVoiceOpusEnc {
  GstAudioEncoder parent;

  // Under the object lock: written by property setters, read per frame.
  Settings settings;
  bool settings_changed;
  guint64 encoded_frames;
  guint64 silent_frames;

  // Streaming thread only.
  OpusEncoderPtr encoder;
  int rate;
  int frame_samples;
  guint64 silent_run;        // consecutive silent frames
  BufferPtr silence_packet;  // cached once the encoder has settled on silence
};

#define SINK_CAPS                                                                      \
  "audio/x-raw, format=(string)" GST_AUDIO_NE(S16) ", layout=(string)interleaved, " \
  "rate=(int){ 8000, 12000, 16000, 24000, 48000 }, channels=(int)1"
// rate is the input's, as GStreamer's opusenc does (RTP's clock is 48 kHz whatever it is).
#define SRC_CAPS \
  "audio/x-opus, rate=(int){ 8000, 12000, 16000, 24000, 48000 }, channels=(int)1, channel-mapping-family=(int)0"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(SINK_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(SRC_CAPS));

G_DEFINE_TYPE_WITH_CODE(GstVoiceOpusEnc, gst_voice_opus_enc, GST_TYPE_AUDIO_ENCODER,
                        GST_DEBUG_CATEGORY_INIT(voiceopusenc_debug, "voiceopusenc", 0,
                                                "Opus voice encoder (single stream, silence skipping)"));
GST_ELEMENT_REGISTER_DEFINE(voiceopusenc, "voiceopusenc", GST_RANK_NONE, GST_TYPE_VOICE_OPUS_ENC);

#define GST_TYPE_VOICE_OPUS_ENC_BANDWIDTH (gst_voice_opus_enc_bandwidth_get_type())
static GType gst_voice_opus_enc_bandwidth_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {OPUS_BANDWIDTH_NARROWBAND, "Narrowband (4 kHz)", "narrowband"},
      {OPUS_BANDWIDTH_MEDIUMBAND, "Mediumband (6 kHz)", "mediumband"},
      {OPUS_BANDWIDTH_WIDEBAND, "Wideband (8 kHz)", "wideband"},
      {OPUS_BANDWIDTH_SUPERWIDEBAND, "Super wideband (12 kHz)", "superwideband"},
      {OPUS_BANDWIDTH_FULLBAND, "Fullband (20 kHz)", "fullband"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GstVoiceOpusEncBandwidth", values));
  return type;
}

#define GST_TYPE_VOICE_OPUS_ENC_FRAME_SIZE (gst_voice_opus_enc_frame_size_get_type())
static GType gst_voice_opus_enc_frame_size_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {10, "10 ms", "10"}, {20, "20 ms", "20"}, {40, "40 ms", "40"}, {60, "60 ms", "60"}, {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GstVoiceOpusEncFrameSize", values));
  return type;
}

static bool apply_settings(GstVoiceOpusEnc* self, const Settings& settings) {
  OpusEncoder* encoder = self->encoder.get();
  const int errors[] = {
      opus_encoder_ctl(encoder, OPUS_SET_BITRATE(settings.bitrate)),
      opus_encoder_ctl(encoder, OPUS_SET_MAX_BANDWIDTH(settings.max_bandwidth)),
      opus_encoder_ctl(encoder, OPUS_SET_COMPLEXITY(settings.complexity)),
      opus_encoder_ctl(encoder, OPUS_SET_INBAND_FEC(settings.inband_fec ? 1 : 0)),
      opus_encoder_ctl(encoder, OPUS_SET_PACKET_LOSS_PERC(settings.packet_loss_percentage)),
      opus_encoder_ctl(encoder, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE)),
  };
  for (int error : errors) {
    if (error != OPUS_OK) {
      GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, (nullptr), ("opus_encoder_ctl: %s", opus_strerror(error)));
      return false;
    }
  }
  // The cached packet was made with the old settings.
  self->silence_packet.reset();
  self->silent_run = 0;
  return true;
}

// Applies property changes made since the last frame.
// The settings for this frame, with changes since the last one applied;
// nullopt after an error (posted).
static std::optional<Settings> refresh_settings(GstVoiceOpusEnc* self) {
  GST_OBJECT_LOCK(self);
  const bool changed = self->settings_changed;
  const Settings settings = self->settings;
  self->settings_changed = false;
  GST_OBJECT_UNLOCK(self);
  if (changed && !apply_settings(self, settings))
    return std::nullopt;
  return settings;
}

static gboolean set_format(GstAudioEncoder* encoder, GstAudioInfo* info) {
  GstVoiceOpusEnc* self = GST_VOICE_OPUS_ENC(encoder);
  int error = OPUS_OK;
  self->encoder.reset(opus_encoder_create(GST_AUDIO_INFO_RATE(info), 1, OPUS_APPLICATION_VOIP, &error));
  if (!self->encoder) {
    GST_ELEMENT_ERROR(self, LIBRARY, INIT, (nullptr), ("opus_encoder_create: %s", opus_strerror(error)));
    return FALSE;
  }
  self->rate = GST_AUDIO_INFO_RATE(info);
  GST_OBJECT_LOCK(self);
  const Settings settings = self->settings;
  self->settings_changed = false;
  GST_OBJECT_UNLOCK(self);
  self->frame_samples = self->rate * settings.frame_ms / 1000;
  if (!apply_settings(self, settings))
    return FALSE;

  gst_audio_encoder_set_frame_samples_min(encoder, self->frame_samples);
  gst_audio_encoder_set_frame_samples_max(encoder, self->frame_samples);
  gst_audio_encoder_set_frame_max(encoder, 1);
  opus_int32 lookahead = 0;
  opus_encoder_ctl(self->encoder.get(), OPUS_GET_LOOKAHEAD(&lookahead));
  const GstClockTime latency =
      settings.frame_ms * GST_MSECOND + gst_util_uint64_scale_int(lookahead, GST_SECOND, self->rate);
  gst_audio_encoder_set_latency(encoder, latency, latency);

  g_autoptr(GstCaps) caps = gst_caps_new_simple("audio/x-opus", "rate", G_TYPE_INT, self->rate, "channels",
                                                G_TYPE_INT, 1, "channel-mapping-family", G_TYPE_INT, 0, nullptr);
  return gst_audio_encoder_set_output_format(encoder, caps);
}

// Encodes one frame of `pcm` (frame_samples samples) straight into the packet.
static GstFlowReturn encode(GstVoiceOpusEnc* self, const opus_int16* pcm, GstBuffer** out) {
  GstBuffer* packet = gst_audio_encoder_allocate_output_buffer(GST_AUDIO_ENCODER(self), kMaxPacketBytes);
  GstMapInfo map;
  gst_buffer_map(packet, &map, GST_MAP_WRITE);
  const opus_int32 length = opus_encode(self->encoder.get(), pcm, self->frame_samples, map.data, map.size);
  gst_buffer_unmap(packet, &map);
  if (length < 0) {
    gst_buffer_unref(packet);
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, (nullptr), ("opus_encode: %s", opus_strerror(length)));
    return GST_FLOW_ERROR;
  }
  gst_buffer_set_size(packet, length);
  *out = packet;
  return GST_FLOW_OK;
}

// The input as whole frame of samples: the mapped data itself when it is one
// (the usual case), else a zero-padded copy in `padded` (a short last frame).
static const opus_int16* frame_samples_of(GstVoiceOpusEnc* self, const GstMapInfo& map,
                                          std::vector<opus_int16>& padded) {
  const gsize frame_bytes = self->frame_samples * sizeof(opus_int16);
  if (map.size >= frame_bytes && reinterpret_cast<guintptr>(map.data) % alignof(opus_int16) == 0)
    return reinterpret_cast<const opus_int16*>(map.data);
  padded.assign(self->frame_samples, 0);
  std::memcpy(padded.data(), map.data, std::min(map.size, frame_bytes));
  return padded.data();
}

static GstFlowReturn handle_frame(GstAudioEncoder* encoder, GstBuffer* buffer) {
  GstVoiceOpusEnc* self = GST_VOICE_OPUS_ENC(encoder);
  if (!buffer)  // drain: nothing is buffered beyond libopus's lookahead
    return GST_FLOW_OK;
  const std::optional<Settings> settings = refresh_settings(self);
  if (!settings)
    return GST_FLOW_ERROR;

  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ))
    return GST_FLOW_ERROR;
  const bool silent = is_silent(buffer, map);
  self->silent_run = silent ? self->silent_run + 1 : 0;

  GstBuffer* packet = nullptr;
  GstFlowReturn result = GST_FLOW_OK;
  const bool from_cache = silent && settings->skip_silence && self->silence_packet;
  if (from_cache) {
    packet = gst_buffer_copy(self->silence_packet.get());  // shares the memory
  } else {
    // A GAP buffer's content is undefined: encode zeros.
    static const std::array<opus_int16, kMaxFrameSamples> kZeros{};
    std::vector<opus_int16> padded;
    result = encode(self, silent ? kZeros.data() : frame_samples_of(self, map, padded), &packet);
    if (result == GST_FLOW_OK && silent && self->silent_run >= kSilentFramesBeforeCaching)
      self->silence_packet.reset(gst_buffer_copy(packet));
  }
  gst_buffer_unmap(buffer, &map);
  if (result != GST_FLOW_OK)
    return result;

  GST_OBJECT_LOCK(self);
  ++(from_cache ? self->silent_frames : self->encoded_frames);
  GST_OBJECT_UNLOCK(self);
  return gst_audio_encoder_finish_frame(encoder, packet, self->frame_samples);
}

static gboolean stop(GstAudioEncoder* encoder) {
  GstVoiceOpusEnc* self = GST_VOICE_OPUS_ENC(encoder);
  self->encoder.reset();
  self->silence_packet.reset();
  self->silent_run = 0;
  return TRUE;
}

static void set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstVoiceOpusEnc* self = GST_VOICE_OPUS_ENC(object);
  GST_OBJECT_LOCK(self);
  Settings& settings = self->settings;
  switch (id) {
    case PROP_BITRATE: settings.bitrate = g_value_get_int(value); break;
    case PROP_MAX_BANDWIDTH: settings.max_bandwidth = g_value_get_enum(value); break;
    case PROP_COMPLEXITY: settings.complexity = g_value_get_int(value); break;
    case PROP_FRAME_SIZE: settings.frame_ms = g_value_get_enum(value); break;
    case PROP_INBAND_FEC: settings.inband_fec = g_value_get_boolean(value); break;
    case PROP_PACKET_LOSS_PERCENTAGE: settings.packet_loss_percentage = g_value_get_int(value); break;
    case PROP_SKIP_SILENCE: settings.skip_silence = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
  self->settings_changed = true;
  GST_OBJECT_UNLOCK(self);
}

static void get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstVoiceOpusEnc* self = GST_VOICE_OPUS_ENC(object);
  GST_OBJECT_LOCK(self);
  const Settings& settings = self->settings;
  switch (id) {
    case PROP_BITRATE: g_value_set_int(value, settings.bitrate); break;
    case PROP_MAX_BANDWIDTH: g_value_set_enum(value, settings.max_bandwidth); break;
    case PROP_COMPLEXITY: g_value_set_int(value, settings.complexity); break;
    case PROP_FRAME_SIZE: g_value_set_enum(value, settings.frame_ms); break;
    case PROP_INBAND_FEC: g_value_set_boolean(value, settings.inband_fec); break;
    case PROP_PACKET_LOSS_PERCENTAGE: g_value_set_int(value, settings.packet_loss_percentage); break;
    case PROP_SKIP_SILENCE: g_value_set_boolean(value, settings.skip_silence); break;
    case PROP_ENCODED_FRAMES: g_value_set_uint64(value, self->encoded_frames); break;
    case PROP_SILENT_FRAMES: g_value_set_uint64(value, self->silent_frames); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(self);
}

static void finalize(GObject* object) {
  GstVoiceOpusEnc* self = GST_VOICE_OPUS_ENC(object);
  self->encoder.~OpusEncoderPtr();
  self->silence_packet.~BufferPtr();
  self->settings.~Settings();
  G_OBJECT_CLASS(gst_voice_opus_enc_parent_class)->finalize(object);
}

static void gst_voice_opus_enc_init(GstVoiceOpusEnc* self) {
  new (&self->settings) Settings();
  new (&self->encoder) OpusEncoderPtr();
  new (&self->silence_packet) BufferPtr();
  self->settings_changed = false;
  self->encoded_frames = self->silent_frames = self->silent_run = 0;
  self->rate = self->frame_samples = 0;
}

static void gst_voice_opus_enc_class_init(GstVoiceOpusEncClass* klass) {
  GObjectClass* object_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstAudioEncoderClass* encoder_class = GST_AUDIO_ENCODER_CLASS(klass);
  object_class->set_property = set_property;
  object_class->get_property = get_property;
  object_class->finalize = finalize;
  encoder_class->set_format = set_format;
  encoder_class->handle_frame = handle_frame;
  encoder_class->stop = stop;

  const auto rw = GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);
  const auto ro = GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(
      object_class, PROP_BITRATE,
      g_param_spec_int("bitrate", "Bitrate", "Target bitrate in bit/s", 6000, 510000, kDefaultBitrate, rw));
  g_object_class_install_property(
      object_class, PROP_MAX_BANDWIDTH,
      g_param_spec_enum("max-bandwidth", "Maximum bandwidth", "Widest audio bandwidth the encoder may use",
                        GST_TYPE_VOICE_OPUS_ENC_BANDWIDTH, kDefaultBandwidth, rw));
  g_object_class_install_property(
      object_class, PROP_COMPLEXITY,
      g_param_spec_int("complexity", "Complexity",
                       "libopus computational complexity: 0 is the cheapest, 10 the best quality", 0, 10,
                       kDefaultComplexity, rw));
  g_object_class_install_property(
      object_class, PROP_FRAME_SIZE,
      g_param_spec_enum("frame-size", "Frame size", "Audio per packet in ms (the SDP's ptime)",
                        GST_TYPE_VOICE_OPUS_ENC_FRAME_SIZE, kDefaultFrameMs,
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(
      object_class, PROP_INBAND_FEC,
      g_param_spec_boolean("inband-fec", "In-band FEC",
                           "Carry forward error correction for the previous frame (the peer must ask for it)",
                           FALSE, rw));
  g_object_class_install_property(
      object_class, PROP_PACKET_LOSS_PERCENTAGE,
      g_param_spec_int("packet-loss-percentage", "Packet loss percentage",
                       "Expected packet loss, tunes the in-band FEC", 0, 100, 0, rw));
  g_object_class_install_property(
      object_class, PROP_SKIP_SILENCE,
      g_param_spec_boolean("skip-silence", "Skip silence",
                           "Send a cached silence packet for GAP or all-zero frames once the encoder has settled "
                           "on silence, instead of encoding them",
                           TRUE, rw));
  g_object_class_install_property(
      object_class, PROP_ENCODED_FRAMES,
      g_param_spec_uint64("encoded-frames", "Encoded frames", "Frames that went through the encoder", 0,
                          G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      object_class, PROP_SILENT_FRAMES,
      g_param_spec_uint64("silent-frames", "Silent frames", "Frames sent as the cached silence packet", 0,
                          G_MAXUINT64, 0, ro));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Opus voice encoder", "Codec/Encoder/Audio",
      "Encodes mono voice to 20 ms Opus packets with libopus's single-stream API; silence is sent as a cached "
      "packet without encoding",
      "voicebridge");
  gst_type_mark_as_plugin_api(GST_TYPE_VOICE_OPUS_ENC_BANDWIDTH, GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(GST_TYPE_VOICE_OPUS_ENC_FRAME_SIZE, GstPluginAPIFlags(0));
}
