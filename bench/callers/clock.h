// CLOCK_MONOTONIC, the clock every event's "t" is on (Python's time.monotonic()).
#pragma once

#include <cstdint>
#include <ctime>

namespace callers {

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerSecond = 1'000'000'000;

inline int64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * kNsPerSecond + now.tv_nsec;
}

// Maps CLOCK_REALTIME stamps (SO_TIMESTAMPNS) onto CLOCK_MONOTONIC; sampled
// at every wake-up, so clock steps cannot accumulate.
inline int64_t realtime_minus_monotonic_ns() {
  timespec realtime{}, monotonic{};
  clock_gettime(CLOCK_REALTIME, &realtime);
  clock_gettime(CLOCK_MONOTONIC, &monotonic);
  return (int64_t{realtime.tv_sec} - monotonic.tv_sec) * kNsPerSecond + (realtime.tv_nsec - monotonic.tv_nsec);
}

inline double to_seconds(int64_t ns) { return static_cast<double>(ns) / kNsPerSecond; }

}  // namespace callers
