// Raising a thread that every call's audio waits for above the many
// streaming threads it feeds: the openairealtime pacer (SCHED_DEADLINE, else
// SCHED_RR) and the server's receive threads (SCHED_RR, one below).
// Header-only: used by the plugin and the server alike.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

namespace voicebridge {

enum class ThreadPriority { Deadline, RealtimeRoundRobin, Nice, Normal };

// The real-time priorities used (the lowest ones): the pacer above the
// receive threads, so that a receive tick never delays the outgoing audio.
constexpr int kPacerRealtimePriority = 2;
constexpr int kReceiveRealtimePriority = 1;

// The calling thread to SCHED_RR at `rt_priority` (needs CAP_SYS_NICE or
// RLIMIT_RTPRIO >= rt_priority), else at 1, else to nice -10 (RLIMIT_NICE),
// else left alone. Only for threads whose work per wake-up is bounded and
// that never block, so a low real-time priority is safe (the kernel's RT
// throttling still applies). `why_not_better` says what was refused.
inline ThreadPriority raise_thread_priority(int rt_priority, std::string* why_not_better) {
  int rr_error = 0;
  for (int priority = rt_priority; priority >= 1; --priority) {
    const sched_param param{.sched_priority = priority};
    rr_error = pthread_setschedparam(pthread_self(), SCHED_RR, &param);
    if (rr_error == 0) {
      if (priority != rt_priority)
        *why_not_better = "SCHED_RR priority " + std::to_string(rt_priority) + ": " + strerror(EPERM) +
                          "; running at priority " + std::to_string(priority);
      return ThreadPriority::RealtimeRoundRobin;
    }
  }
  *why_not_better = std::string("SCHED_RR: ") + strerror(rr_error);
  if (setpriority(PRIO_PROCESS, 0, -10) == 0)  // on Linux, 0 is the calling thread
    return ThreadPriority::Nice;
  *why_not_better += std::string("; nice: ") + strerror(errno);
  return ThreadPriority::Normal;
}

// A periodic thread's SCHED_DEADLINE reservation: up to `runtime` of CPU
// within each `period`, finished by the period's end.
struct DeadlineReservation {
  std::chrono::nanoseconds runtime;
  std::chrono::nanoseconds period;
};

// The calling thread to SCHED_DEADLINE (needs CAP_SYS_NICE, an affinity that
// spans every CPU, and room in the kernel's admission control), else as
// raise_thread_priority. Deadline tasks run ahead of every real-time and
// normal thread. Linux 6.12+ runs normal threads ahead of real-time ones for
// up to 50 ms a second through a "fair server", itself a deadline task with a
// 1 s period: a 10 ms deadline still comes first. A thread that uses up its
// runtime waits for its next period.
inline ThreadPriority raise_thread_to_deadline(DeadlineReservation reservation, int rt_priority,
                                               std::string* why_not_better) {
  // The kernel's struct sched_attr, first version (<linux/sched/types.h>
  // cannot be included beside glibc's <sched.h>: both define sched_param).
  struct {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
  } attributes{};
  static_assert(sizeof attributes == 48, "SCHED_ATTR_SIZE_VER0");
  constexpr uint64_t kResetOnFork = 0x01;  // SCHED_FLAG_RESET_ON_FORK: children start as normal threads
  attributes.size = sizeof attributes;
  attributes.sched_policy = SCHED_DEADLINE;
  attributes.sched_flags = kResetOnFork;
  attributes.sched_runtime = static_cast<uint64_t>(reservation.runtime.count());
  attributes.sched_deadline = attributes.sched_period = static_cast<uint64_t>(reservation.period.count());
  if (syscall(SYS_sched_setattr, 0, &attributes, 0) == 0)
    return ThreadPriority::Deadline;
  const std::string deadline_error = std::string("SCHED_DEADLINE: ") + strerror(errno);
  const ThreadPriority fallback = raise_thread_priority(rt_priority, why_not_better);
  *why_not_better = why_not_better->empty() ? deadline_error : deadline_error + "; " + *why_not_better;
  return fallback;
}

}  // namespace voicebridge
