// openairealtime: bridges 24 kHz mono S16LE caller audio to the OpenAI
// Realtime API (GA, WebSocket) and plays the AI's speech out as a live,
// clock-paced stream. See gst-inspect-1.0 openairealtime.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_OPENAI_REALTIME (gst_openai_realtime_get_type())
G_DECLARE_FINAL_TYPE(GstOpenAIRealtime, gst_openai_realtime, GST, OPENAI_REALTIME, GstElement)

GST_ELEMENT_REGISTER_DECLARE(openairealtime);

// Enum types of the turn-detection, vad-eagerness and noise-reduction properties.
#define GST_TYPE_OPENAI_REALTIME_TURN_DETECTION (gst_openai_realtime_turn_detection_get_type())
GType gst_openai_realtime_turn_detection_get_type(void);
#define GST_TYPE_OPENAI_REALTIME_EAGERNESS (gst_openai_realtime_eagerness_get_type())
GType gst_openai_realtime_eagerness_get_type(void);
#define GST_TYPE_OPENAI_REALTIME_NOISE_REDUCTION (gst_openai_realtime_noise_reduction_get_type())
GType gst_openai_realtime_noise_reduction_get_type(void);

G_END_DECLS
