#include "shared_pacer.h"

#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "thread_priority.h"

GST_DEBUG_CATEGORY_EXTERN(openairealtime_debug);
#define GST_CAT_DEFAULT openairealtime_debug

namespace openairealtime {
namespace {

// Half the frame period: an output's next frame, due at some phase of its own,
// is at most this late (it is pushed at the first tick at or after its PTS
// minus half a period).
constexpr auto kTick = std::chrono::milliseconds(10);
// A tick longer than a frame period has delayed every output.
constexpr gint64 kSlowTickUs = 20000;
// Every output's audio waits for this one thread: when the cores are busy it
// must not queue behind the many streaming threads of the pipelines it feeds
// (measured, 80 calls on 2 cores: ticks of 20-52 ms and 88 ms gaps at normal
// priority, none over 47 ms with SCHED_RR), nor behind the server's receive
// threads (SCHED_RR one below: 80 calls, max gap 73 ms at their priority, 40
// ms above it).
void raise_priority() {
  std::string refused;
  switch (voicebridge::raise_thread_priority(voicebridge::kPacerRealtimePriority, &refused)) {
    case voicebridge::ThreadPriority::RealtimeRoundRobin:
      if (refused.empty())
        GST_INFO("realtime:pacer runs SCHED_RR");
      else
        GST_WARNING("realtime:pacer: %s: audio may stall behind receive threads", refused.c_str());
      break;
    case voicebridge::ThreadPriority::Nice: GST_INFO("realtime:pacer runs at nice -10 (%s)", refused.c_str()); break;
    case voicebridge::ThreadPriority::Normal:
      GST_WARNING("realtime:pacer runs at normal priority (%s): audio may stall under CPU contention",
                  refused.c_str());
      break;
  }
}

}  // namespace

SharedPacer& SharedPacer::instance() {
  static SharedPacer* pacer = new SharedPacer();  // lives as long as the process, like its thread
  return *pacer;
}

SharedPacer::SharedPacer() {
  g_thread_unref(g_thread_new("realtime:pacer", [](gpointer self) -> gpointer {
    static_cast<SharedPacer*>(self)->run();
    return nullptr;
  }, this));
}

void SharedPacer::add(PacedOutput* output) {
  std::lock_guard lock(mutex_);
  if (std::find(outputs_.begin(), outputs_.end(), output) == outputs_.end())
    outputs_.push_back(output);
  changed_.notify_all();
}

void SharedPacer::remove(PacedOutput* output) {
  std::unique_lock lock(mutex_);
  outputs_.erase(std::remove(outputs_.begin(), outputs_.end(), output), outputs_.end());
  changed_.wait(lock, [this] { return !ticking_; });
}

void SharedPacer::run() {
  raise_priority();
  std::vector<PacedOutput*> due;
  auto next_tick = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  for (;;) {
    if (outputs_.empty()) {
      changed_.wait(lock, [this] { return !outputs_.empty(); });
      next_tick = std::chrono::steady_clock::now();
    }
    // Absolute deadlines: no drift; after a stall, one tick catches up.
    next_tick = std::max(next_tick + kTick, std::chrono::steady_clock::now() - kTick);
    if (changed_.wait_until(lock, next_tick, [this] { return outputs_.empty(); }))
      continue;
    due = outputs_;
    ticking_ = true;
    lock.unlock();
    const gint64 start_us = g_get_monotonic_time();
    for (PacedOutput* output : due) output->pace();
    const gint64 took_us = g_get_monotonic_time() - start_us;
    if (took_us > kSlowTickUs)
      GST_WARNING("pushing %zu outputs took %" G_GINT64_FORMAT " ms: each of them was late", due.size(),
                  took_us / 1000);
    lock.lock();
    ticking_ = false;
    changed_.notify_all();
  }
}

}  // namespace openairealtime
