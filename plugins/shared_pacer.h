// A few process-wide threads (one per core) that push the output of every
// openairealtime instance with shared-pacing=true, one tick per half frame
// period, instead of one pad task (a thread waking 50 times a second) per
// instance. Each output is paced by the thread that had the fewest.
#pragma once

#include <glib.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace openairealtime {

class PacedOutput {
 public:
  // On the pacer thread, once per tick: push whatever frames are due.
  virtual void pace() = 0;

 protected:
  ~PacedOutput() = default;
};

class SharedPacer {
 public:
  // The pacer of this process (its threads start on first use and are never
  // stopped: they sleep while they have no output).
  static SharedPacer& instance();

  void add(PacedOutput* output);
  // After it returns, pace() of `output` is not running and is not called again.
  // Must not be called from pace().
  void remove(PacedOutput* output);

 private:
  class Thread;

  SharedPacer();

  std::vector<std::unique_ptr<Thread>> threads_;
  std::mutex mutex_;  // guards assigned_
  std::unordered_map<PacedOutput*, Thread*> assigned_;
};

}  // namespace openairealtime
