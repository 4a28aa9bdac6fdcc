// Every server process with a database runs one scheduler: each tick it claims
// as many due reminders as it has free call capacity for (none while full or
// draining: they stay for another process or a later tick) and hands each to
// the outbound-call code, which records the outcome under the same claimer.
#pragma once

#include <functional>
#include <string>

#include "glib_util.h"
#include "store/reminder_claims.h"

namespace vb {

struct ReminderSchedulerSettings {
  int tick_s = 15;            // REMINDER_TICK_S
  int claim_timeout_s = 300;  // REMINDER_CLAIM_TIMEOUT_S: a claim this old belongs to a dead process
  int max_claims_per_tick = 20;
};

class ReminderScheduler {
 public:
  // Calls this server may still start now: 0 when full or draining.
  using FreeCapacity = std::function<int()>;
  // Starts the call for a claimed reminder; its outcome is recorded with claimer().
  using PlaceCall = std::function<void(const ClaimedReminder&)>;

  ReminderScheduler(Database& db, std::string claimer, ReminderSchedulerSettings settings, FreeCapacity free_capacity,
                    PlaceCall place_call);
  ReminderScheduler(const ReminderScheduler&) = delete;
  ReminderScheduler& operator=(const ReminderScheduler&) = delete;

  // Ticks now, then every tick_s.
  void start();
  // Claims due reminders now, unless a claim is still running or there is no capacity.
  void tick();

  const std::string& claimer() const { return claimer_; }
  // Reminders claimed by this scheduler since start (for logs and tests).
  uint64_t claimed() const { return claimed_; }

 private:
  Database& db_;
  std::string claimer_;
  ReminderSchedulerSettings settings_;
  FreeCapacity free_capacity_;
  PlaceCall place_call_;
  ScopedSource timer_;
  bool claiming_ = false;
  uint64_t claimed_ = 0;
  AliveToken<ReminderScheduler> alive_{this};
};

}  // namespace vb
