// Test helpers: drive the default GLib main context until something happened.
#pragma once

#include <glib.h>
#include <gtest/gtest.h>

#include <functional>

namespace vb::test {

// Iterates the default main context until `done()` holds. The guard only stops a hung test; nothing is timed.
inline bool run_until(const std::function<bool()>& done, unsigned guard_seconds = 20) {
  bool expired = false;
  guint guard = g_timeout_add_seconds(guard_seconds, [](gpointer flag) {
    *static_cast<bool*>(flag) = true;
    return G_SOURCE_REMOVE;
  }, &expired);
  while (!done() && !expired) g_main_context_iteration(nullptr, TRUE);
  if (!expired) g_source_remove(guard);
  EXPECT_FALSE(expired) << "main loop guard expired";
  return !expired;
}

// Dispatches everything already pending (including idles), without blocking.
inline void drain_main_context() {
  while (g_main_context_iteration(nullptr, FALSE)) {
  }
}

}  // namespace vb::test
