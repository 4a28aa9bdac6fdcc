// Owners for GLib objects held as class members (g_autoptr covers locals).
#pragma once

#include <glib-object.h>

#include <functional>
#include <memory>
#include <utility>

namespace openairealtime {

struct GObjectUnref {
  void operator()(gpointer object) const { g_object_unref(object); }
};
template <typename T>
using GObjectPtr = std::unique_ptr<T, GObjectUnref>;

// Removes a source from its context and drops our reference.
struct SourceDestroy {
  void operator()(GSource* source) const {
    g_source_destroy(source);
    g_source_unref(source);
  }
};
using SourcePtr = std::unique_ptr<GSource, SourceDestroy>;

// A timer or idle source attached to a given context; destroying the owner
// (or reset()) removes it, so it can never fire into a dead object.
class ScopedSource {
 public:
  ScopedSource() = default;
  ScopedSource(ScopedSource&& other) noexcept : source_(std::exchange(other.source_, nullptr)) {}
  ScopedSource& operator=(ScopedSource&& other) noexcept {
    if (this != &other) {
      reset();
      source_ = std::exchange(other.source_, nullptr);
    }
    return *this;
  }
  ScopedSource(const ScopedSource&) = delete;
  ScopedSource& operator=(const ScopedSource&) = delete;
  ~ScopedSource() { reset(); }

  // Calls `callback` once after `delay_ms`, on `context`.
  static ScopedSource timeout(GMainContext* context, guint delay_ms, std::function<void()> callback) {
    return attach(context, g_timeout_source_new(delay_ms), std::move(callback), false);
  }
  // Calls `callback` every `interval_ms` until reset.
  static ScopedSource repeating(GMainContext* context, guint interval_ms, std::function<void()> callback) {
    return attach(context, g_timeout_source_new(interval_ms), std::move(callback), true);
  }

  bool active() const { return source_ && !g_source_is_destroyed(source_); }
  void reset() {
    if (!source_) return;
    g_source_destroy(source_);
    g_source_unref(std::exchange(source_, nullptr));
  }

 private:
  static ScopedSource attach(GMainContext* context, GSource* source, std::function<void()> callback,
                             bool repeat) {
    struct Closure {
      std::function<void()> callback;
      bool repeat;
    };
    g_source_set_callback(
        source,
        [](gpointer data) -> gboolean {
          auto* closure = static_cast<Closure*>(data);
          const bool repeat = closure->repeat;  // the callback may reset its own source
          closure->callback();
          return repeat ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
        },
        new Closure{std::move(callback), repeat}, [](gpointer data) { delete static_cast<Closure*>(data); });
    g_source_attach(source, context);
    ScopedSource scoped;
    scoped.source_ = source;
    return scoped;
  }

  GSource* source_ = nullptr;
};

}  // namespace openairealtime
