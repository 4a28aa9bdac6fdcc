// The voiceopus plugin: GST_PLUGIN_DEFINE emits both the loader entry point of
// libgstvoiceopus.so and gst_plugin_voiceopus_register() for static
// registration by the server.
#include <gst/gst.h>

#include "gstvoiceopusdec.h"
#include "gstvoiceopusenc.h"

static gboolean plugin_init(GstPlugin* plugin) {
  return GST_ELEMENT_REGISTER(voiceopusenc, plugin) && GST_ELEMENT_REGISTER(voiceopusdec, plugin);
}

extern "C" {
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, voiceopus,
                  "Opus for one mono voice stream through libopus's single-stream API", plugin_init, VERSION, "MIT",
                  "voicebridge", "https://github.com/voicebridge/voicebridge")
}
