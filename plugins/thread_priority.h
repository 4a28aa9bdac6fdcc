// Raising a thread that every call's audio waits for above the many
// streaming threads it feeds: the openairealtime pacer and the server's
// receive threads. Header-only: used by the plugin and the server alike.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace voicebridge {

enum class ThreadPriority { RealtimeRoundRobin, Nice, Normal };

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

}  // namespace voicebridge
