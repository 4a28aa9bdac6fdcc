// The loop shared by the process-wide threads that serve many calls on a
// fixed period: the openairealtime pacing threads and the server's receive
// threads. One wake-up per period for all of a thread's members instead of a
// thread per member. Header-only: used by the plugin and the server alike.
#pragma once

#include <glib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace voicebridge {

class TickingThread {
 public:
  // How many members the thread serves now (to place a new one).
  size_t load() {
    std::lock_guard lock(mutex_);
    return member_count();
  }

 protected:
  explicit TickingThread(std::chrono::nanoseconds period) : period_(period) {}
  // The thread never ends: the objects live as long as the process.
  ~TickingThread() = default;

  // Starts the thread: call at the end of the (final) derived class's
  // constructor, once the hooks below can run. The thread calls started(),
  // then ticks every period while it has members and sleeps while not.
  void start(const std::string& name) {
    g_thread_unref(g_thread_new(name.c_str(), [](gpointer self) -> gpointer {
      static_cast<TickingThread*>(self)->run();
      return nullptr;
    }, this));
  }

  // On the thread, before the first tick.
  virtual void started() = 0;
  // Under mutex_.
  virtual size_t member_count() const = 0;
  // Under mutex_: takes what this tick works on.
  virtual void begin_tick() = 0;
  // Without the lock: the tick's work.
  virtual void tick() = 0;

  // Call after adding a member, under mutex_.
  void members_changed() { changed_.notify_all(); }
  // Waits (releasing `lock`) until no tick is in progress.
  void wait_for_tick_end(std::unique_lock<std::mutex>& lock) {
    changed_.wait(lock, [this] { return !ticking_; });
  }

  std::mutex mutex_;

 private:
  void run() {
    started();
    auto next_tick = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    for (;;) {
      if (member_count() == 0) {
        changed_.wait(lock, [this] { return member_count() > 0; });
        next_tick = std::chrono::steady_clock::now();
      }
      // Absolute deadlines: no drift; after a stall, one tick catches up.
      next_tick = std::max(next_tick + period_, std::chrono::steady_clock::now() - period_);
      if (changed_.wait_until(lock, next_tick, [this] { return member_count() == 0; }))
        continue;
      begin_tick();
      ticking_ = true;
      lock.unlock();
      tick();
      lock.lock();
      ticking_ = false;
      changed_.notify_all();
    }
  }

  const std::chrono::nanoseconds period_;
  std::condition_variable changed_;
  bool ticking_ = false;  // tick() in progress (outside the lock)
};

}  // namespace voicebridge
