// voiceopusenc: see gstvoiceopusenc.cpp.
#pragma once

#include <gst/audio/gstaudioencoder.h>

G_BEGIN_DECLS

#define GST_TYPE_VOICE_OPUS_ENC (gst_voice_opus_enc_get_type())
G_DECLARE_FINAL_TYPE(GstVoiceOpusEnc, gst_voice_opus_enc, GST, VOICE_OPUS_ENC, GstAudioEncoder)

GST_ELEMENT_REGISTER_DECLARE(voiceopusenc);

G_END_DECLS
