// Log lines on stderr ("callers: ..."); stdout carries only the JSON events.
#pragma once

#include <cstdint>

namespace callers {

[[gnu::format(printf, 1, 2)]] void log_line(const char *format, ...);

// Lets one line through per interval and counts the rest, so a misbehaving
// peer cannot flood stderr at 50 packets a second.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(int64_t interval_ns) : interval_ns_(interval_ns) {}

  // True if this occurrence should be logged; `suppressed` is how many were
  // dropped since the last logged one.
  bool allow(int64_t now_ns, unsigned &suppressed);

 private:
  int64_t interval_ns_;
  int64_t last_ns_ = INT64_MIN;
  unsigned suppressed_ = 0;
};

}  // namespace callers
