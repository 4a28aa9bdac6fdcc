// The events on stdout: one JSON object per line, written with a single
// write(2) each so a reader never sees half a line (bench/README.md, "The callers process").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace callers {

// One peer's receive counters for a `window` event.
struct WindowCounters {
  int64_t id = 0;
  uint64_t received = 0;
  double max_gap_ms = 0;
  std::optional<double> max_gap_end_t;  // arrival of the packet that ended the largest gap
  // RTP sequence numbers that packet advanced by: 1 if the packets were late,
  // more if some never came (not sent, or dropped on the way).
  unsigned max_gap_seq_step = 0;
  std::optional<double> first_t;
  std::optional<double> last_t;
};

class EventWriter {
 public:
  void offer(int64_t id, std::string_view sdp);
  void answer(int64_t id, std::string_view sdp);  // the echo test peer's
  void connected(int64_t id, double t);
  void failed(int64_t id, std::string_view reason);
  void tone(int64_t id, double t);
  void onset(int64_t id, double t);
  void window(double t, double cpu_s, const std::vector<WindowCounters> &peers);

  // False once stdout is gone (the reader exited): time to quit.
  bool ok() const { return ok_; }

 private:
  void timed(const char *event, int64_t id, double t);
  void description(const char *event, int64_t id, std::string_view sdp);
  void append_string(std::string_view text);
  void append_number(double value, const char *format);
  void flush_line();

  std::string line_;  // reused: no allocation once it has grown
  bool ok_ = true;
};

}  // namespace callers
