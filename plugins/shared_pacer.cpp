#include "shared_pacer.h"

#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "thread_priority.h"
#include "ticking_thread.h"

GST_DEBUG_CATEGORY_EXTERN(openairealtime_debug);
#define GST_CAT_DEFAULT openairealtime_debug

namespace openairealtime {
namespace {

// Half the frame period: an output's next frame, due at some phase of its own,
// is at most this late (it is pushed at the first tick at or after its PTS
// minus half a period).
constexpr auto kTick = std::chrono::milliseconds(10);
// A tick longer than a frame period has delayed every output of its thread.
constexpr gint64 kSlowTickUs = 20000;
constexpr unsigned kMaxThreads = 8;
// Every output's audio waits for its pacing thread: when the cores are busy it
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
        GST_INFO("pacing thread runs SCHED_RR");
      else
        GST_WARNING("pacing thread: %s: audio may stall behind receive threads", refused.c_str());
      break;
    case voicebridge::ThreadPriority::Nice: GST_INFO("pacing thread runs at nice -10 (%s)", refused.c_str()); break;
    case voicebridge::ThreadPriority::Normal:
      GST_WARNING("pacing thread runs at normal priority (%s): audio may stall under CPU contention",
                  refused.c_str());
      break;
  }
}

}  // namespace

// One pacing thread and the outputs assigned to it.
class SharedPacer::Thread final : public voicebridge::TickingThread {
 public:
  explicit Thread(unsigned index) : TickingThread(kTick) { start("realtime:pacer" + std::to_string(index)); }

  void add(PacedOutput* output) {
    std::lock_guard lock(mutex_);
    outputs_.push_back(output);
    members_changed();
  }

  void remove(PacedOutput* output) {
    std::unique_lock lock(mutex_);
    std::erase(outputs_, output);
    wait_for_tick_end(lock);
  }

 private:
  void started() override { raise_priority(); }
  size_t member_count() const override { return outputs_.size(); }
  void begin_tick() override { due_ = outputs_; }

  void tick() override {
    const gint64 start_us = g_get_monotonic_time();
    for (PacedOutput* output : due_) output->pace();
    const gint64 took_us = g_get_monotonic_time() - start_us;
    if (took_us > kSlowTickUs)
      GST_WARNING("pushing %zu outputs took %" G_GINT64_FORMAT " ms: each of them was late", due_.size(),
                  took_us / 1000);
  }

  std::vector<PacedOutput*> outputs_;  // under mutex_
  std::vector<PacedOutput*> due_;      // this tick's (the thread's own)
};

SharedPacer& SharedPacer::instance() {
  static SharedPacer* pacer = new SharedPacer();  // lives as long as the process, like its threads
  return *pacer;
}

// One thread per core (at most kMaxThreads): a tick's pushes run on all cores
// at once, so a tick takes a fraction of the time one thread needed for every
// output, and a slow core delays only its share of the calls.
SharedPacer::SharedPacer() {
  const unsigned count = std::clamp(g_get_num_processors(), 1u, kMaxThreads);
  for (unsigned i = 0; i < count; ++i) threads_.push_back(std::make_unique<Thread>(i));
}

void SharedPacer::add(PacedOutput* output) {
  std::lock_guard lock(mutex_);
  if (assigned_.contains(output)) return;
  Thread* least = threads_.front().get();
  for (const auto& thread : threads_)
    if (thread->load() < least->load()) least = thread.get();
  assigned_[output] = least;
  least->add(output);
}

void SharedPacer::remove(PacedOutput* output) {
  Thread* thread = nullptr;
  {
    std::lock_guard lock(mutex_);
    const auto found = assigned_.find(output);
    if (found == assigned_.end()) return;
    thread = found->second;
    assigned_.erase(found);
  }
  thread->remove(output);  // waits for a tick in progress: not under our lock
}

}  // namespace openairealtime
