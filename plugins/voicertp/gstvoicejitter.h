// voicejitter: see gstvoicejitter.cpp.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_VOICE_JITTER (gst_voice_jitter_get_type())
G_DECLARE_FINAL_TYPE(GstVoiceJitter, gst_voice_jitter, GST, VOICE_JITTER, GstElement)

GST_ELEMENT_REGISTER_DECLARE(voicejitter);

G_END_DECLS
