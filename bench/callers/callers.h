// The event loop: stdin commands, the peers' sockets, the 20 ms send schedule
// and the DTLS retransmission timers, all on one thread with epoll.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "log.h"
#include "peer.h"

namespace callers {

class Callers {
 public:
  explicit Callers(PeerEnvironment &environment);
  ~Callers();
  Callers(const Callers &) = delete;
  Callers &operator=(const Callers &) = delete;

  // Runs until stdin ends, `quit`, or stdout goes away. Returns the exit code.
  int run();

 private:
  static constexpr int64_t kFramePeriodNs = 20'000'000;
  static constexpr int kMaxBurst = 2;  // frames one peer may send in one wake-up when late
  // A wake-up also serves the deadlines of the next 2 ms: at most 10 wake-ups
  // per 20 ms whatever the number of peers (each wake-up costs far more than a
  // packet), for at most 2 ms of send jitter.
  static constexpr int64_t kCoalesceNs = 2'000'000;

  struct Slot {
    std::unique_ptr<Peer> peer;
    int64_t next_send_ns = 0;  // valid once connected
  };
  struct Deadline {
    int64_t ns;
    uint64_t serial;
    bool operator>(const Deadline &other) const { return ns > other.ns; }
  };

  void on_stdin();
  void on_command(std::string_view line);
  void create_peer(int64_t id);
  void answer_peer(int64_t id, std::string_view sdp);
  void hang_up(int64_t id);
  void report_window();

  void on_peer_readable(uint64_t serial);
  void drain_media();
  void handle(uint64_t serial, PeerOutcome outcome);
  void close_peer(uint64_t serial);

  void on_send_timer();
  void arm_send_timer();
  int dtls_wait_ms();
  void on_dtls_timeouts();

  PeerEnvironment &environment_;
  // Sockets of peers still connecting wake the loop; connected peers' sockets
  // sit in media_epoll_fd_, drained at every wake-up (the 20 ms send timer
  // guarantees them one at least every 20 ms), their packets stamped by the kernel.
  int epoll_fd_ = -1;
  int media_epoll_fd_ = -1;
  int send_timer_fd_ = -1;
  int64_t armed_ns_ = 0;  // 0: the send timer is disarmed
  std::string stdin_buffer_;
  bool running_ = true;

  uint64_t next_serial_;
  std::unordered_map<uint64_t, Slot> slots_;      // by serial (epoll data, schedule entries)
  std::map<int64_t, uint64_t> serial_by_id_;       // loadgen's ids, ordered for `window`
  std::set<uint64_t> handshaking_;                 // not yet connected: DTLS timers to watch
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> schedule_;
  RateLimitedLog late_log_;
};

}  // namespace callers
