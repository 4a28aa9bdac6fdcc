// voiceopusdec: see gstvoiceopusdec.cpp.
#pragma once

#include <gst/audio/gstaudiodecoder.h>

G_BEGIN_DECLS

#define GST_TYPE_VOICE_OPUS_DEC (gst_voice_opus_dec_get_type())
G_DECLARE_FINAL_TYPE(GstVoiceOpusDec, gst_voice_opus_dec, GST, VOICE_OPUS_DEC, GstAudioDecoder)

GST_ELEMENT_REGISTER_DECLARE(voiceopusdec);

G_END_DECLS
