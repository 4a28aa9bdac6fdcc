// The voicertp plugin: GST_PLUGIN_DEFINE emits both the loader entry point of
// libgstvoicertp.so and gst_plugin_voicertp_register() for static
// registration by the server.
#include <gst/gst.h>

#include "gstvoicejitter.h"

static gboolean plugin_init(GstPlugin* plugin) { return GST_ELEMENT_REGISTER(voicejitter, plugin); }

extern "C" {
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, voicertp,
                  "RTP reception for one live voice stream without a thread of its own", plugin_init, VERSION,
                  "MIT", "voicebridge", "https://github.com/voicebridge/voicebridge")
}
