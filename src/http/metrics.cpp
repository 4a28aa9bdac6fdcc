#include "http/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

namespace vb {
namespace {

// Webhook received → accept sent: ICE, DTLS and the AI session usually take well under a second.
const std::vector<double> kSetupBuckets = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10};
constexpr const char* kOtherErrorCode = "other";
constexpr const char* kUnknownTool = "unknown";

constexpr CallDirection kDirections[] = {CallDirection::Inbound, CallDirection::Outbound};
constexpr CallOutcome kOutcomes[] = {CallOutcome::Completed, CallOutcome::Rejected, CallOutcome::Failed};

void family(std::string& out, std::string_view name, const char* type, const char* help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// One sample; `labels` as name/value pairs, values escaped here.
using Labels = std::initializer_list<std::pair<const char*, std::string_view>>;

void sample(std::string& out, std::string_view name, Labels labels, double value) {
  out.append(name);
  if (labels.size() > 0) {
    out.append("{");
    bool first = true;
    for (const auto& [label, label_value] : labels) {
      if (!first) out.append(",");
      first = false;
      out.append(label).append("=\"").append(prometheus_escape_label(label_value)).append("\"");
    }
    out.append("}");
  }
  out.append(" ").append(prometheus_number(value)).append("\n");
}

}  // namespace

const char* to_string(CallDirection direction) {
  return direction == CallDirection::Inbound ? "inbound" : "outbound";
}

const char* to_string(CallOutcome outcome) {
  switch (outcome) {
    case CallOutcome::Completed: return "completed";
    case CallOutcome::Rejected: return "rejected";
    case CallOutcome::Failed: return "failed";
  }
  return "?";
}

std::string prometheus_escape_label(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': escaped += "\\\\"; break;
      case '"': escaped += "\\\""; break;
      case '\n': escaped += "\\n"; break;
      default: escaped += c;
    }
  }
  return escaped;
}

std::string prometheus_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return error == std::errc() ? std::string(buffer, end) : "NaN";
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  auto bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++counts_[static_cast<size_t>(bucket)];
  ++count_;
  sum_ += value;
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  std::vector<uint64_t> cumulative(counts_.size());
  uint64_t running = 0;
  for (size_t i = 0; i < counts_.size(); ++i) cumulative[i] = running += counts_[i];
  return cumulative;
}

void Histogram::render(std::string& out, std::string_view name) const {
  const std::string bucket_name = std::string(name) + "_bucket";
  const auto cumulative = cumulative_counts();
  for (size_t i = 0; i < upper_bounds_.size(); ++i)
    sample(out, bucket_name, {{"le", prometheus_number(upper_bounds_[i])}}, static_cast<double>(cumulative[i]));
  sample(out, bucket_name, {{"le", "+Inf"}}, static_cast<double>(count_));
  sample(out, std::string(name) + "_sum", {}, sum_);
  sample(out, std::string(name) + "_count", {}, static_cast<double>(count_));
}

Metrics::Metrics(std::vector<std::string> known_tools)
    : known_tools_(std::move(known_tools)), setup_seconds_(kSetupBuckets) {
  // Every known series from the start, at 0, so that rates and alerts see them.
  for (auto direction : kDirections)
    for (auto outcome : kOutcomes) calls_[{direction, outcome}] = 0;
  for (const auto& tool : known_tools_) {
    tool_calls_[{tool, true}] = 0;
    tool_calls_[{tool, false}] = 0;
  }
}

void Metrics::call_ended(CallDirection direction, CallOutcome outcome) { ++calls_[{direction, outcome}]; }

void Metrics::realtime_error(std::string_view code) {
  std::string label = code.empty() ? "unknown" : std::string(code);
  if (!realtime_errors_.count(label) && realtime_errors_.size() >= kMaxErrorCodes) label = kOtherErrorCode;
  ++realtime_errors_[label];
}

void Metrics::tool_call(std::string_view tool, bool ok) {
  const bool known = std::find(known_tools_.begin(), known_tools_.end(), tool) != known_tools_.end();
  ++tool_calls_[{known ? std::string(tool) : kUnknownTool, ok}];
}

std::string Metrics::render(const LiveState& live) const {
  std::string out;
  family(out, "voicebridge_active_calls", "gauge", "Calls in progress, from the connect webhook to their end.");
  sample(out, "voicebridge_active_calls", {{"direction", "inbound"}}, static_cast<double>(live.active_inbound));
  sample(out, "voicebridge_active_calls", {{"direction", "outbound"}}, static_cast<double>(live.active_outbound));

  family(out, "voicebridge_max_calls", "gauge",
         "MAX_CONCURRENT_CALLS: calls this process takes at once, both directions.");
  sample(out, "voicebridge_max_calls", {}, live.max_calls);

  family(out, "voicebridge_calls_total", "counter",
         "Calls ended, by direction and outcome (completed, rejected by us, failed after we tried).");
  for (const auto& [key, count] : calls_)
    sample(out, "voicebridge_calls_total", {{"direction", to_string(key.first)}, {"outcome", to_string(key.second)}},
           static_cast<double>(count));

  family(out, "voicebridge_capacity_rejections_total", "counter",
         "Calls rejected because MAX_CONCURRENT_CALLS calls were up.");
  sample(out, "voicebridge_capacity_rejections_total", {}, static_cast<double>(capacity_rejections_));

  family(out, "voicebridge_call_setup_seconds", "histogram",
         "Time from the connect webhook to the accept sent to Meta, of calls Meta accepted.");
  setup_seconds_.render(out, "voicebridge_call_setup_seconds");

  family(out, "voicebridge_realtime_errors_total", "counter",
         "Error events of the OpenAI Realtime API, by code (at most 20 codes, then \"other\").");
  for (const auto& [code, count] : realtime_errors_)
    sample(out, "voicebridge_realtime_errors_total", {{"code", code}}, static_cast<double>(count));

  MediaTotals media = finished_media_;
  media += live.live_media;
  family(out, "voicebridge_audio_frames_total", "counter",
         "20 ms audio frames sent to the AI (in) and played from the AI to callers (out).");
  sample(out, "voicebridge_audio_frames_total", {{"direction", "in"}}, static_cast<double>(media.frames_in));
  sample(out, "voicebridge_audio_frames_total", {{"direction", "out"}}, static_cast<double>(media.frames_out));

  family(out, "voicebridge_barge_ins_total", "counter", "Times a caller interrupted the AI while it spoke.");
  sample(out, "voicebridge_barge_ins_total", {}, static_cast<double>(media.barge_ins));

  family(out, "voicebridge_tool_calls_total", "counter", "Tool calls of the AI, by tool and result (ok, error).");
  for (const auto& [key, count] : tool_calls_)
    sample(out, "voicebridge_tool_calls_total", {{"tool", key.first}, {"result", key.second ? "ok" : "error"}},
           static_cast<double>(count));

  if (live.database_up) {
    family(out, "voicebridge_database_up", "gauge",
           "1 while a database connection works and the migrations are applied; absent without DATABASE_URL.");
    sample(out, "voicebridge_database_up", {}, *live.database_up ? 1 : 0);
  }
  family(out, "voicebridge_database_errors_total", "counter",
         "Database queries that did not succeed, failed connection attempts and lost connections.");
  sample(out, "voicebridge_database_errors_total", {}, static_cast<double>(live.database_errors));

  family(out, "voicebridge_webhooks_total", "counter", "POST /webhook requests received, whatever their outcome.");
  sample(out, "voicebridge_webhooks_total", {}, static_cast<double>(live.webhooks));
  family(out, "voicebridge_webhook_signature_failures_total", "counter",
         "Webhooks refused (401) for a missing or wrong X-Hub-Signature-256.");
  sample(out, "voicebridge_webhook_signature_failures_total", {}, static_cast<double>(live.signature_failures));

  family(out, "voicebridge_draining", "gauge", "1 after SIGTERM/SIGINT while active calls are drained.");
  sample(out, "voicebridge_draining", {}, live.draining ? 1 : 0);
  return out;
}

}  // namespace vb
