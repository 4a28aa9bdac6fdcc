// Small RAII helpers over GLib main-loop sources and object lifetimes.
#pragma once

#include <glib.h>

#include <functional>
#include <memory>
#include <utility>

namespace vb {

// A main-loop source that is removed when this object goes away, so a timer
// can never fire into an object that no longer exists.
class ScopedSource {
 public:
  ScopedSource() = default;
  explicit ScopedSource(guint id) : id_(id) {}
  ScopedSource(ScopedSource&& other) noexcept : id_(std::exchange(other.id_, 0)) {}
  ScopedSource& operator=(ScopedSource&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, 0);
    }
    return *this;
  }
  ScopedSource(const ScopedSource&) = delete;
  ScopedSource& operator=(const ScopedSource&) = delete;
  ~ScopedSource() { reset(); }

  void reset() {
    if (id_ != 0)
      g_source_remove(std::exchange(id_, 0));
  }
  bool active() const { return id_ != 0; }
  // The source fired and removed itself: forget the id without removing it.
  void release() { id_ = 0; }

 private:
  guint id_ = 0;
};

// Runs fn once after delay_ms on the thread-default main context.
// The returned guard cancels it if destroyed first.
inline ScopedSource run_after(guint delay_ms, std::function<void()> fn) {
  auto* heap_fn = new std::function<void()>(std::move(fn));
  guint id = g_timeout_add_full(
      G_PRIORITY_DEFAULT, delay_ms,
      [](gpointer data) -> gboolean {
        (*static_cast<std::function<void()>*>(data))();
        return G_SOURCE_REMOVE;
      },
      heap_fn, [](gpointer data) { delete static_cast<std::function<void()>*>(data); });
  return ScopedSource(id);
}

// Runs fn on the next main-loop iteration (after the current callback returns).
inline void run_soon(std::function<void()> fn) {
  auto* heap_fn = new std::function<void()>(std::move(fn));
  g_idle_add_full(
      G_PRIORITY_DEFAULT,
      [](gpointer data) -> gboolean {
        (*static_cast<std::function<void()>*>(data))();
        return G_SOURCE_REMOVE;
      },
      heap_fn, [](gpointer data) { delete static_cast<std::function<void()>*>(data); });
}

// Lets asynchronous callbacks (Graph API replies, timers) find out whether the
// object that started them still exists.
template <typename T>
class AliveToken {
 public:
  explicit AliveToken(T* owner) : self_(std::make_shared<T*>(owner)) {}
  std::weak_ptr<T*> weak() const { return self_; }

 private:
  std::shared_ptr<T*> self_;
};

}  // namespace vb
