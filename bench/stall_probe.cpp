// voicebridge-bench-stall-probe: how late a thread at the top real-time
// priority wakes on each CPU, to tell the server's stalls from the machine's.
//
// One thread per online CPU, pinned to it, SCHED_FIFO 99, wakes every 5 ms on
// an absolute CLOCK_MONOTONIC deadline and does nothing else. Nothing in the
// guest can keep such a thread from running for long, so when it wakes tens of
// milliseconds late the CPU itself was not running: the hypervisor had taken
// it. Runs until stdin reaches EOF, then prints one JSON line:
//   {"realtime":true,"cpus":[{"cpu":0,"max_late_ms":1.2,"late_over_20ms":0,
//     "late_at":[[t, late_ms], ...]}, ...]}
// with `t` (CLOCK_MONOTONIC seconds) of up to 100 wakes later than 20 ms.
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr long kPeriodNs = 5'000'000;
constexpr double kLateReportMs = 20.0;
constexpr size_t kMaxLateRecorded = 100;

std::atomic<bool> stopping{false};

struct CpuProbe {
  int cpu = 0;
  bool realtime = false;
  double max_late_ms = 0;
  int late_over_report = 0;
  std::vector<std::pair<double, double>> late_at;  // (monotonic s, late ms)
};

double seconds(const timespec &t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9; }

void advance(timespec &t, long ns) {
  t.tv_nsec += ns;
  while (t.tv_nsec >= 1'000'000'000) {
    t.tv_nsec -= 1'000'000'000;
    ++t.tv_sec;
  }
}

void probe(CpuProbe &result) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(result.cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  const sched_param top{.sched_priority = sched_get_priority_max(SCHED_FIFO)};
  result.realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &top) == 0;

  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  while (!stopping.load(std::memory_order_relaxed)) {
    advance(deadline, kPeriodNs);
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const double late_ms = (seconds(now) - seconds(deadline)) * 1000;
    result.max_late_ms = std::max(result.max_late_ms, late_ms);
    if (late_ms > kLateReportMs) {
      ++result.late_over_report;
      if (result.late_at.size() < kMaxLateRecorded) result.late_at.emplace_back(seconds(deadline), late_ms);
    }
    if (late_ms > kPeriodNs / 1e6) deadline = now;  // do not count one stall again for each missed period
  }
}

}  // namespace

int main() {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  std::vector<CpuProbe> results(static_cast<size_t>(std::max(cpus, 1L)));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].cpu = static_cast<int>(i);
    threads.emplace_back(probe, std::ref(results[i]));
  }
  char buffer[256];
  while (read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }
  stopping = true;
  for (std::thread &thread : threads) thread.join();

  const bool realtime = std::all_of(results.begin(), results.end(), [](const CpuProbe &r) { return r.realtime; });
  printf("{\"realtime\":%s,\"cpus\":[", realtime ? "true" : "false");
  for (size_t i = 0; i < results.size(); ++i) {
    const CpuProbe &r = results[i];
    printf("%s{\"cpu\":%d,\"max_late_ms\":%.3f,\"late_over_20ms\":%d,\"late_at\":[", i ? "," : "", r.cpu,
           r.max_late_ms, r.late_over_report);
    for (size_t j = 0; j < r.late_at.size(); ++j)
      printf("%s[%.6f,%.3f]", j ? "," : "", r.late_at[j].first, r.late_at[j].second);
    printf("]}");
  }
  printf("]}\n");
  return 0;
}
