#include "log.h"

#include <cstdarg>
#include <cstdio>

namespace callers {

void log_line(const char *format, ...) {
  char text[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(text, sizeof text, format, args);
  va_end(args);
  fprintf(stderr, "callers: %s\n", text);
}

bool RateLimitedLog::allow(int64_t now_ns, unsigned &suppressed) {
  if (last_ns_ != INT64_MIN && now_ns - last_ns_ < interval_ns_) {
    ++suppressed_;
    return false;
  }
  last_ns_ = now_ns;
  suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

}  // namespace callers
