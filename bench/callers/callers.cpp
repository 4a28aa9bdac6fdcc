#include "callers.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "clock.h"

namespace callers {
namespace {

constexpr uint64_t kStdinKey = 1;
constexpr uint64_t kSendTimerKey = 2;
constexpr uint64_t kFirstPeerSerial = 16;
constexpr size_t kMaxCommandLine = 4 << 20;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval &t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

bool watch(int epoll_fd, int fd, uint64_t key) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = key;
  return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

}  // namespace

Callers::Callers(PeerEnvironment &environment)
    : environment_(environment), next_serial_(kFirstPeerSerial), late_log_(kNsPerSecond) {}

Callers::~Callers() {
  slots_.clear();  // closes the peers' sockets before the epoll instance
  if (send_timer_fd_ >= 0) close(send_timer_fd_);
  if (media_epoll_fd_ >= 0) close(media_epoll_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

int Callers::run() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  media_epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  send_timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  const int stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
  if (epoll_fd_ < 0 || media_epoll_fd_ < 0 || send_timer_fd_ < 0 || stdin_flags < 0 ||
      fcntl(STDIN_FILENO, F_SETFL, stdin_flags | O_NONBLOCK) != 0 || !watch(epoll_fd_, STDIN_FILENO, kStdinKey) ||
      !watch(epoll_fd_, send_timer_fd_, kSendTimerKey)) {
    log_line("setting up the event loop: %s (stdin must be a pipe or a socket)", strerror(errno));
    return 1;
  }
  epoll_event events[256];
  while (running_ && environment_.events.ok()) {
    const int count = epoll_wait(epoll_fd_, events, 256, dtls_wait_ms());
    if (count < 0) {
      if (errno == EINTR) continue;
      log_line("epoll_wait: %s", strerror(errno));
      return 1;
    }
    for (int i = 0; i < count && running_; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == kStdinKey) on_stdin();
      else if (key == kSendTimerKey) on_send_timer();
      else on_peer_readable(key);
    }
    if (!handshaking_.empty()) on_dtls_timeouts();
    drain_media();
  }
  slots_.clear();
  return 0;
}

// ---- commands ---------------------------------------------------------------

void Callers::on_stdin() {
  char chunk[65536];
  const ssize_t size = read(STDIN_FILENO, chunk, sizeof chunk);
  if (size == 0) {
    log_line("stdin closed: quitting");
    running_ = false;
    return;
  }
  if (size < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    log_line("stdin: %s: quitting", strerror(errno));
    running_ = false;
    return;
  }
  stdin_buffer_.append(chunk, static_cast<size_t>(size));
  size_t start = 0;
  for (size_t end; running_ && (end = stdin_buffer_.find('\n', start)) != std::string::npos; start = end + 1)
    on_command(std::string_view(stdin_buffer_).substr(start, end - start));
  stdin_buffer_.erase(0, start);
  if (stdin_buffer_.size() > kMaxCommandLine) {
    log_line("a command line longer than %zu bytes: dropped", kMaxCommandLine);
    stdin_buffer_.clear();
  }
}

void Callers::on_command(std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) error = nullptr;
  if (!json_parser_load_from_data(parser, line.data(), static_cast<gssize>(line.size()), &error)) {
    log_line("bad command (not JSON: %s): %.200s", error->message, std::string(line).c_str());
    return;
  }
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *command = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
  const char *name = command ? json_object_get_string_member_with_default(command, "cmd", nullptr) : nullptr;
  if (!name) {
    log_line("bad command (no \"cmd\" string): %.200s", std::string(line).c_str());
    return;
  }
  const std::string_view cmd = name;
  if (cmd == "window") return report_window();
  if (cmd == "quit") {
    log_line("quit");
    running_ = false;
    return;
  }
  JsonNode *id_node = json_object_get_member(command, "id");
  if (!id_node || !JSON_NODE_HOLDS_VALUE(id_node) || json_node_get_value_type(id_node) != G_TYPE_INT64) {
    log_line("bad command (\"%s\" needs an integer \"id\"): %.200s", name, std::string(line).c_str());
    return;
  }
  const int64_t id = json_node_get_int(id_node);
  if (cmd == "offer") return create_peer(id);
  if (cmd == "hangup") return hang_up(id);
  if (cmd == "answer") {
    const char *sdp = json_object_get_string_member_with_default(command, "sdp", nullptr);
    if (!sdp) {
      log_line("bad command (\"answer\" needs an \"sdp\" string) for peer %lld", static_cast<long long>(id));
      return;
    }
    return answer_peer(id, sdp);
  }
  log_line("unknown command \"%s\"", name);
}

void Callers::create_peer(int64_t id) {
  if (serial_by_id_.count(id)) {
    log_line("offer: peer %lld exists already; ignored", static_cast<long long>(id));
    return;
  }
  std::string error;
  std::unique_ptr<Peer> peer = Peer::create(id, environment_, error);
  const uint64_t serial = next_serial_++;
  if (peer && !watch(epoll_fd_, peer->fd(), serial)) error = std::string("epoll_ctl: ") + strerror(errno);
  if (!peer || !error.empty()) {
    log_line("peer %lld failed: %s", static_cast<long long>(id), error.c_str());
    environment_.events.failed(id, error);
    return;
  }
  environment_.events.offer(id, peer->offer());
  slots_[serial].peer = std::move(peer);
  serial_by_id_[id] = serial;
  handshaking_.insert(serial);
}

void Callers::answer_peer(int64_t id, std::string_view sdp) {
  const auto found = serial_by_id_.find(id);
  if (found == serial_by_id_.end()) {
    log_line("answer: no peer %lld; ignored", static_cast<long long>(id));
    return;
  }
  handle(found->second, slots_.at(found->second).peer->apply_answer(sdp));
}

void Callers::hang_up(int64_t id) {
  const auto found = serial_by_id_.find(id);
  if (found == serial_by_id_.end()) {
    log_line("hangup: no peer %lld; ignored", static_cast<long long>(id));
    return;
  }
  log_line("peer %lld: hung up", static_cast<long long>(id));
  close_peer(found->second);
}

void Callers::report_window() {
  std::vector<WindowCounters> peers;
  peers.reserve(serial_by_id_.size());
  for (const auto &[id, serial] : serial_by_id_) peers.push_back(slots_.at(serial).peer->take_window());
  environment_.events.window(to_seconds(monotonic_ns()), cpu_seconds(), peers);
}

// ---- peers ------------------------------------------------------------------

void Callers::on_peer_readable(uint64_t serial) {
  const auto found = slots_.find(serial);
  if (found != slots_.end())  // else closed earlier in this batch
    handle(serial, found->second.peer->receive(realtime_minus_monotonic_ns()));
}

void Callers::drain_media() {
  const int64_t realtime_offset = realtime_minus_monotonic_ns();
  epoll_event events[256];
  int count = 0;
  do {
    count = epoll_wait(media_epoll_fd_, events, 256, 0);
    for (int i = 0; i < count; ++i) {
      const auto found = slots_.find(events[i].data.u64);
      if (found != slots_.end()) handle(found->first, found->second.peer->receive(realtime_offset));
    }
  } while (count == 256);
}

void Callers::handle(uint64_t serial, PeerOutcome outcome) {
  Slot &slot = slots_.at(serial);
  const long long id = static_cast<long long>(slot.peer->id());
  switch (outcome.kind) {
    case PeerOutcome::Kind::nothing: return;
    case PeerOutcome::Kind::failed:
      log_line("peer %lld failed: %s", id, outcome.reason.c_str());
      environment_.events.failed(slot.peer->id(), outcome.reason);
      close_peer(serial);
      return;
    case PeerOutcome::Kind::connected: {
      const int64_t now = monotonic_ns();
      log_line("peer %lld connected (%s)", id, slot.peer->dtls_description().c_str());
      environment_.events.connected(slot.peer->id(), to_seconds(now));
      handshaking_.erase(serial);
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, slot.peer->fd(), nullptr) != 0 ||
          !watch(media_epoll_fd_, slot.peer->fd(), serial))
        log_line("peer %lld: moving its socket to the media set: %s", id, strerror(errno));
      slot.next_send_ns = now;  // its own phase: from now on every 20 ms
      schedule_.push({now, serial});
      if (armed_ns_ == 0 || now < armed_ns_) arm_send_timer();
      return;
    }
  }
}

void Callers::close_peer(uint64_t serial) {
  const auto found = slots_.find(serial);
  if (found == slots_.end()) return;
  serial_by_id_.erase(found->second.peer->id());
  handshaking_.erase(serial);
  slots_.erase(found);  // closes the socket, which also leaves epoll; stale schedule entries are skipped
}

// ---- sending ----------------------------------------------------------------

void Callers::on_send_timer() {
  uint64_t expirations = 0;
  if (read(send_timer_fd_, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
    log_line("reading the send timer: %s", strerror(errno));
  armed_ns_ = 0;
  const int64_t now = monotonic_ns();
  const int64_t horizon = now + kCoalesceNs;
  std::vector<std::pair<uint64_t, PeerOutcome>> failures;
  while (!schedule_.empty() && schedule_.top().ns <= horizon) {
    const Deadline due = schedule_.top();
    schedule_.pop();
    const auto found = slots_.find(due.serial);
    if (found == slots_.end() || found->second.next_send_ns != due.ns) continue;  // closed peer
    Slot &slot = found->second;
    int64_t deadline = due.ns;
    PeerOutcome outcome;
    for (int burst = 0; deadline <= horizon && burst < kMaxBurst; ++burst) {
      outcome = slot.peer->send_next_frame(now);
      deadline += kFramePeriodNs;
      if (outcome.kind == PeerOutcome::Kind::failed) break;
    }
    if (outcome.kind == PeerOutcome::Kind::failed) {
      failures.emplace_back(due.serial, std::move(outcome));
      continue;
    }
    int skipped = 0;
    for (; deadline <= now; deadline += kFramePeriodNs, ++skipped) slot.peer->skip_slot();
    unsigned suppressed = 0;
    if (skipped > 0 && late_log_.allow(now, suppressed)) {
      log_line("peer %lld: %d ms late, %d frame slot(s) skipped (%u similar lines suppressed)",
               static_cast<long long>(slot.peer->id()), static_cast<int>((now - due.ns) / kNsPerMs), skipped,
               suppressed);
    }
    slot.next_send_ns = deadline;
    schedule_.push({deadline, due.serial});
  }
  for (auto &[serial, outcome] : failures) handle(serial, std::move(outcome));
  arm_send_timer();
}

void Callers::arm_send_timer() {
  // Skip entries of closed peers so the timer is not armed for nothing.
  while (!schedule_.empty()) {
    const auto found = slots_.find(schedule_.top().serial);
    if (found != slots_.end() && found->second.next_send_ns == schedule_.top().ns) break;
    schedule_.pop();
  }
  itimerspec when{};
  armed_ns_ = schedule_.empty() ? 0 : schedule_.top().ns;
  when.it_value.tv_sec = armed_ns_ / kNsPerSecond;
  when.it_value.tv_nsec = armed_ns_ % kNsPerSecond;
  if (timerfd_settime(send_timer_fd_, TFD_TIMER_ABSTIME, &when, nullptr) != 0)
    log_line("arming the send timer: %s", strerror(errno));
}

// ---- DTLS retransmissions -----------------------------------------------------

int Callers::dtls_wait_ms() {
  int64_t soonest = -1;
  for (uint64_t serial : handshaking_) {
    if (const auto left = slots_.at(serial).peer->dtls_timeout_ns(); left && (soonest < 0 || *left < soonest))
      soonest = *left;
  }
  return soonest < 0 ? -1 : static_cast<int>((soonest + kNsPerMs - 1) / kNsPerMs);
}

void Callers::on_dtls_timeouts() {
  std::vector<std::pair<uint64_t, PeerOutcome>> outcomes;
  for (uint64_t serial : handshaking_) {
    Peer &peer = *slots_.at(serial).peer;
    if (const auto left = peer.dtls_timeout_ns(); left && *left == 0)
      outcomes.emplace_back(serial, peer.on_dtls_timeout());
  }
  for (auto &[serial, outcome] : outcomes) handle(serial, std::move(outcome));
}

}  // namespace callers
