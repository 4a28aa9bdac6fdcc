// Small helpers for holding and identifying GStreamer objects in src/call/.
#pragma once

#include <gst/gst.h>

#include <memory>

namespace vb {

struct GstObjectUnref {
  void operator()(gpointer object) const { gst_object_unref(object); }
};
// Owns one reference to a GstObject (element, pad, bus, ...).
template <typename T>
using GstPtr = std::unique_ptr<T, GstObjectUnref>;

// Whether `element` was made by the factory named `factory_name`.
inline bool made_by(GstElement* element, const char* factory_name) {
  GstElementFactory* factory = gst_element_get_factory(element);
  return factory && g_str_equal(GST_OBJECT_NAME(factory), factory_name);
}

}  // namespace vb
