// The server's Prometheus metrics (GET /metrics, text exposition format 0.0.4).
//
// Every metric lives in Metrics except the few that are read at scrape time
// (LiveState): active calls, draining, database health, HTTP counters and the
// audio of calls still up. Label values come from closed sets (directions,
// outcomes, the known tool names) or are capped (Realtime error codes), so the
// number of series stays bounded.
//
// voicebridge_calls_total{direction, outcome}, counted once when a call ends:
//   completed  the call was answered, or ended by the caller, the AI or a
//              drain (the caller hanging up while it rings counts here too);
//   rejected   we refused it: capacity, draining, no caller number, the AI
//              session could not be opened, the server stopped before accept;
//   failed     we tried and it broke: setup timeout, media failure, Meta
//              refused pre_accept/accept, the AI session failed mid-call.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vb {

enum class CallDirection { Inbound, Outbound };
const char* to_string(CallDirection direction);

enum class CallOutcome { Completed, Rejected, Failed };
const char* to_string(CallOutcome outcome);

// The element counts audio in milliseconds; WhatsApp and the AI both work in 20 ms frames.
inline constexpr uint64_t kAudioFrameMs = 20;

// Audio and barge-ins of one call, or summed over several.
struct MediaTotals {
  uint64_t frames_in = 0;   // 20 ms frames of the caller sent to the AI
  uint64_t frames_out = 0;  // 20 ms frames of the AI played to the caller
  uint64_t barge_ins = 0;
  MediaTotals& operator+=(const MediaTotals& other) {
    frames_in += other.frames_in;
    frames_out += other.frames_out;
    barge_ins += other.barge_ins;
    return *this;
  }
};

// A label value escaped for the text format: backslash, double quote and newline.
std::string prometheus_escape_label(std::string_view value);
// A sample value or bucket bound: integers without a fraction, "+Inf", "NaN".
std::string prometheus_number(double value);

class Histogram {
 public:
  // `upper_bounds` ascending; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Cumulative count per upper bound (le), the +Inf bucket last.
  std::vector<uint64_t> cumulative_counts() const;
  // The _bucket, _sum and _count lines of metric `name`.
  void render(std::string& out, std::string_view name) const;

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; one more than upper_bounds_
  uint64_t count_ = 0;
  double sum_ = 0;
};

// What the scrape reads from the running server rather than from Metrics.
struct LiveState {
  uint64_t active_inbound = 0, active_outbound = 0;
  int max_calls = 0;
  bool draining = false;
  std::optional<bool> database_up;  // nullopt: no DATABASE_URL, the gauge is left out
  uint64_t database_errors = 0;
  uint64_t webhooks = 0, signature_failures = 0;
  MediaTotals live_media;  // calls still up
};

class Metrics {
 public:
  // Distinct Realtime error codes kept as labels; later ones count as "other".
  static constexpr size_t kMaxErrorCodes = 20;

  // `known_tools`: the tool names the AI is offered; any other counts as "unknown".
  explicit Metrics(std::vector<std::string> known_tools);

  void call_ended(CallDirection direction, CallOutcome outcome);
  void capacity_rejection() { ++capacity_rejections_; }
  void call_setup(double seconds) { setup_seconds_.observe(seconds); }
  void realtime_error(std::string_view code);
  void tool_call(std::string_view tool, bool ok);
  // The final totals of a call whose media is gone.
  void media_finished(const MediaTotals& totals) { finished_media_ += totals; }

  const Histogram& setup_seconds() const { return setup_seconds_; }
  std::string render(const LiveState& live) const;

 private:
  std::vector<std::string> known_tools_;
  std::map<std::pair<CallDirection, CallOutcome>, uint64_t> calls_;
  uint64_t capacity_rejections_ = 0;
  Histogram setup_seconds_;
  std::map<std::string, uint64_t> realtime_errors_;
  std::map<std::pair<std::string, bool>, uint64_t> tool_calls_;
  MediaTotals finished_media_;
};

}  // namespace vb
