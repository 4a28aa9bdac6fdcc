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

// The calling thread to SCHED_RR at the lowest real-time priority (needs
// CAP_SYS_NICE or RLIMIT_RTPRIO >= 1), else to nice -10 (RLIMIT_NICE), else
// left alone. Only for threads whose work per wake-up is bounded and that
// never block, so the lowest real-time priority is safe (the kernel's RT
// throttling still applies). `why_not_better` says what was refused.
inline ThreadPriority raise_thread_priority(std::string* why_not_better) {
  const sched_param param{.sched_priority = 1};
  const int rr_error = pthread_setschedparam(pthread_self(), SCHED_RR, &param);
  if (rr_error == 0)
    return ThreadPriority::RealtimeRoundRobin;
  *why_not_better = std::string("SCHED_RR: ") + strerror(rr_error);
  if (setpriority(PRIO_PROCESS, 0, -10) == 0)  // on Linux, 0 is the calling thread
    return ThreadPriority::Nice;
  *why_not_better += std::string("; nice: ") + strerror(errno);
  return ThreadPriority::Normal;
}

}  // namespace voicebridge
