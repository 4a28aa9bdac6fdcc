#include "events.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "log.h"

namespace callers {

void EventWriter::offer(int64_t id, std::string_view sdp) { description("offer", id, sdp); }
void EventWriter::answer(int64_t id, std::string_view sdp) { description("answer", id, sdp); }

void EventWriter::description(const char *event, int64_t id, std::string_view sdp) {
  line_ = "{\"event\":\"";
  line_ += event;
  line_ += "\",\"id\":" + std::to_string(id) + ",\"sdp\":";
  append_string(sdp);
  line_ += '}';
  flush_line();
}

void EventWriter::connected(int64_t id, double t) { timed("connected", id, t); }
void EventWriter::tone(int64_t id, double t) { timed("tone", id, t); }
void EventWriter::onset(int64_t id, double t) { timed("onset", id, t); }

void EventWriter::failed(int64_t id, std::string_view reason) {
  line_ = "{\"event\":\"failed\",\"id\":" + std::to_string(id) + ",\"reason\":";
  append_string(reason);
  line_ += '}';
  flush_line();
}

void EventWriter::window(double t, double cpu_s, const std::vector<WindowCounters> &peers) {
  line_ = "{\"event\":\"window\",\"t\":";
  append_number(t, "%.6f");
  line_ += ",\"cpu_s\":";
  append_number(cpu_s, "%.6f");
  line_ += ",\"peers\":[";
  bool first = true;
  for (const WindowCounters &peer : peers) {
    line_ += first ? "{\"id\":" : ",{\"id\":";
    first = false;
    line_ += std::to_string(peer.id);
    line_ += ",\"received\":" + std::to_string(peer.received);
    line_ += ",\"max_gap_ms\":";
    append_number(peer.max_gap_ms, "%.3f");
    line_ += ",\"max_gap_end_t\":";
    if (peer.max_gap_end_t) append_number(*peer.max_gap_end_t, "%.6f"); else line_ += "null";
    line_ += ",\"max_gap_seq_step\":" + std::to_string(peer.max_gap_seq_step);
    line_ += ",\"first_t\":";
    if (peer.first_t) append_number(*peer.first_t, "%.6f"); else line_ += "null";
    line_ += ",\"last_t\":";
    if (peer.last_t) append_number(*peer.last_t, "%.6f"); else line_ += "null";
    line_ += '}';
  }
  line_ += "]}";
  flush_line();
}

void EventWriter::timed(const char *event, int64_t id, double t) {
  line_ = "{\"event\":\"";
  line_ += event;
  line_ += "\",\"id\":" + std::to_string(id) + ",\"t\":";
  append_number(t, "%.6f");
  line_ += '}';
  flush_line();
}

void EventWriter::append_string(std::string_view text) {
  line_ += '"';
  for (char c : text) {
    switch (c) {
      case '"': line_ += "\\\""; break;
      case '\\': line_ += "\\\\"; break;
      case '\n': line_ += "\\n"; break;
      case '\r': line_ += "\\r"; break;
      case '\t': line_ += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          snprintf(escaped, sizeof escaped, "\\u%04x", c);
          line_ += escaped;
        } else {
          line_ += c;
        }
    }
  }
  line_ += '"';
}

void EventWriter::append_number(double value, const char *format) {
  char text[40];
  snprintf(text, sizeof text, format, value);
  line_ += text;
}

void EventWriter::flush_line() {
  line_ += '\n';
  size_t written = 0;
  while (ok_ && written < line_.size()) {
    ssize_t n = write(STDOUT_FILENO, line_.data() + written, line_.size() - written);
    if (n >= 0) {
      written += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      log_line("stdout: %s; stopping", strerror(errno));
      ok_ = false;
    }
  }
}

}  // namespace callers
