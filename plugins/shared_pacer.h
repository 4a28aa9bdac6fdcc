// One process-wide thread that pushes the output of every openairealtime
// instance with shared-pacing=true, one tick per frame period, instead of one
// pad task (a thread waking 50 times a second) per instance.
#pragma once

#include <glib.h>

#include <condition_variable>
#include <memory>
#include <mutex>
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
  // The pacer of this process (started on first use, never stopped: it sleeps
  // while no output is added).
  static SharedPacer& instance();

  void add(PacedOutput* output);
  // After it returns, pace() of `output` is not running and is not called again.
  // Must not be called from pace().
  void remove(PacedOutput* output);

 private:
  SharedPacer();
  void run();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<PacedOutput*> outputs_;
  bool ticking_ = false;  // pace() calls in progress (outside the lock)
};

}  // namespace openairealtime
