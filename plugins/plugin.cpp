// The openairealtime plugin: GST_PLUGIN_DEFINE emits both the loader entry
// (gst_plugin_openairealtime_get_desc, for libgstopenairealtime.so) and
// gst_plugin_openairealtime_register() for static registration by the server.
#include <gst/gst.h>

#include "gstopenairealtime.h"

static gboolean plugin_init(GstPlugin* plugin) { return GST_ELEMENT_REGISTER(openairealtime, plugin); }

extern "C" {
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, openairealtime,
                  "Bridge to the OpenAI Realtime API (GA) with live paced playout", plugin_init, VERSION, "MIT",
                  "voicebridge", "https://github.com/voicebridge/voicebridge")
}
