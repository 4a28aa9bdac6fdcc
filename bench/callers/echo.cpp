// voicebridge-bench-callers-echo: a cheap stand-in for the server's side, to
// measure voicebridge-bench-callers at N = 50..100 on a machine where as many
// webrtcbin answerers would not fit (2-4 % of a core each). Test tool only.
//
// Per offer (the callers' offer event, forwarded by bench/callers_check.py):
// a full ICE agent in the controlling role (Binding Requests with
// USE-CANDIDATE to the offer's first UDP candidate), the DTLS client, SRTP, and
// every RTP packet it receives sent straight back, re-encrypted, with its own
// SSRC. Like webrtcbin it reads each packet as it arrives (no batching).
//
// stdin:  {"cmd":"offer","id":K,"sdp":"..."} | {"cmd":"quit"}
// stdout: {"event":"answer","id":K,"sdp":"..."} | connected | failed (as the callers')

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sstream>
#include <string>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "clock.h"
#include "dtls.h"
#include "events.h"
#include "log.h"
#include "sdp.h"
#include "srtp.h"
#include "stun.h"

namespace callers {
namespace {

constexpr int64_t kTickNs = 50 * kNsPerMs;        // STUN retransmissions and DTLS timers
constexpr int64_t kIceTimeoutNs = 10 * kNsPerSecond;
constexpr size_t kMaxDatagram = 2048;

uint8_t g_packet[kMaxDatagram + SrtpSession::kTagSize];

// The first UDP candidate's address ("candidate:F C udp PRIO IP PORT typ ...").
bool first_udp_candidate(const RemoteDescription &offer, sockaddr_in &address) {
  for (const std::string &line : offer.candidates) {
    std::istringstream fields(line);
    std::string foundation, component, transport, priority, ip;
    unsigned port = 0;
    if (!(fields >> foundation >> component >> transport >> priority >> ip >> port)) continue;
    if (strcasecmp(transport.c_str(), "udp") != 0 || port == 0 || port > 65535) continue;
    address = {};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip.c_str(), &address.sin_addr) == 1) return true;
  }
  return false;
}

class EchoPeer final : private DatagramSink {
 public:
  EchoPeer(int64_t id, const DtlsContext &dtls, int fd) : id_(id), fd_(fd), dtls_(dtls, *this) {}
  ~EchoPeer() { close(fd_); }

  int64_t id() const { return id_; }
  int fd() const { return fd_; }
  bool connected() const { return connected_; }

  // Parses the offer and builds the answer; an error text on failure.
  std::string accept_offer(std::string_view sdp, const std::string &local_ip, const std::string &fingerprint,
                           std::string &answer) {
    if (std::string error = parse_description(sdp, offer_); !error.empty()) return "bad offer: " + error;
    if (!first_udp_candidate(offer_, remote_)) return "the offer has no IPv4 UDP candidate";
    sockaddr_in local{};
    socklen_t size = sizeof local;
    getsockname(fd_, reinterpret_cast<sockaddr *>(&local), &size);
    ufrag_ = random_ice_string(16);
    pwd_ = random_ice_string(24);
    RAND_bytes(transaction_id_, sizeof transaction_id_);
    RAND_bytes(reinterpret_cast<unsigned char *>(&tie_breaker_), sizeof tie_breaker_);
    const std::string port = std::to_string(ntohs(local.sin_port));
    answer = "v=0\r\no=- " + std::to_string(id_) + " 2 IN IP4 " + local_ip +
             "\r\ns=-\r\nt=0 0\r\na=group:BUNDLE audio\r\nm=audio " + port +
             " UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 " + local_ip + "\r\na=ice-ufrag:" + ufrag_ + "\r\na=ice-pwd:" +
             pwd_ + "\r\na=fingerprint:sha-256 " + fingerprint +
             "\r\na=setup:active\r\na=mid:audio\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
             "a=candidate:1 1 UDP 2015363327 " + local_ip + " " + port + " typ host\r\n";
    started_ns_ = monotonic_ns();
    send_check();
    return {};
  }

  // Handles every queued datagram; an error text if the peer failed,
  // "connected" once it connects.
  std::string receive() {
    for (;;) {
      const ssize_t size = recv(fd_, g_packet, kMaxDatagram, MSG_DONTWAIT);
      if (size < 0) return errno == EAGAIN || errno == EINTR ? "" : std::string("recv: ") + strerror(errno);
      if (std::string outcome = on_datagram(static_cast<size_t>(size)); !outcome.empty()) return outcome;
    }
  }

  // Retransmissions; an error text on failure.
  std::string on_tick(int64_t now_ns) {
    if (!ice_done_) {
      if (now_ns - started_ns_ > kIceTimeoutNs) return "no STUN Binding Success within 10 s";
      send_check();
    } else if (!connected_) {
      if (const auto left = dtls_.timeout_ns(); left && *left == 0 &&
                                                 dtls_.handle_timeout() == DtlsSession::Progress::failed)
        return dtls_.error();
    }
    return {};
  }

 private:
  void send_check() {
    uint8_t request[kStunRequestMax];
    const size_t size = build_binding_request(transaction_id_, offer_.ice_ufrag + ":" + ufrag_, offer_.ice_pwd,
                                              tie_breaker_, 0x6E0001FF, request);
    send_datagram(request, size);
  }

  std::string on_datagram(size_t size) {
    const uint8_t first = size > 0 ? g_packet[0] : 255;
    if (first <= 3) {
      if (!ice_done_ && is_binding_success(g_packet, size, transaction_id_, offer_.ice_pwd)) {
        ice_done_ = true;
        if (dtls_.start() == DtlsSession::Progress::failed) return dtls_.error();
      }
      return {};
    }
    if (first >= 20 && first <= 63) {
      if (connected_) return {};
      switch (dtls_.feed(g_packet, size)) {
        case DtlsSession::Progress::failed: return dtls_.error();
        case DtlsSession::Progress::in_progress: return {};
        case DtlsSession::Progress::done: return on_handshake_done();
      }
    }
    if (first >= 128 && first <= 191 && connected_ && !(g_packet[1] >= 192 && g_packet[1] <= 223)) echo(size);
    return {};
  }

  std::string on_handshake_done() {
    Sha256Fingerprint actual{};
    if (!dtls_.peer_fingerprint(actual) || actual != offer_.fingerprint)
      return "the DTLS server's certificate does not match the offer's fingerprint";
    SrtpKeys keys{};
    std::string error;
    if (!dtls_.export_srtp_keys(keys, error) || !srtp_.start(keys, error)) return error;
    connected_ = true;
    return "connected";
  }

  void echo(size_t size) {
    if (!srtp_.unprotect(g_packet, size)) return;
    g_packet[11] ^= 1;  // an SSRC of our own
    if (srtp_.protect(g_packet, size)) send_datagram(g_packet, size);
  }

  void send_datagram(const uint8_t *data, size_t size) override {
    if (sendto(fd_, data, size, 0, reinterpret_cast<const sockaddr *>(&remote_), sizeof remote_) < 0 &&
        errno != EAGAIN)
      log_line("echo %lld: sendto: %s", static_cast<long long>(id_), strerror(errno));
  }

  const int64_t id_;
  const int fd_;
  RemoteDescription offer_;
  sockaddr_in remote_{};
  std::string ufrag_, pwd_;
  uint8_t transaction_id_[12]{};
  uint64_t tie_breaker_ = 0;
  int64_t started_ns_ = 0;
  bool ice_done_ = false;
  DtlsSession dtls_;
  SrtpSession srtp_;
  bool connected_ = false;
};

class Echo {
 public:
  Echo(const DtlsContext &dtls, std::string local_ip, EventWriter &events)
      : dtls_(dtls), local_ip_(std::move(local_ip)), events_(events) {}

  int run() {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    tick_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    const itimerspec every{{0, kTickNs}, {0, kTickNs}};
    if (epoll_ < 0 || tick_ < 0 || timerfd_settime(tick_, 0, &every, nullptr) != 0 ||
        fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK) != 0 || !watch(STDIN_FILENO, -1) ||
        !watch(tick_, -2)) {
      log_line("echo: setting up the event loop: %s", strerror(errno));
      return 1;
    }
    epoll_event events[256];
    while (running_ && events_.ok()) {
      const int count = epoll_wait(epoll_, events, 256, -1);
      for (int i = 0; i < count && running_; ++i) {
        const int64_t key = static_cast<int64_t>(events[i].data.u64);
        if (key == -1) on_stdin();
        else if (key == -2) on_tick();
        else if (const auto found = peers_.find(key); found != peers_.end())
          handle(*found->second, found->second->receive());
      }
    }
    peers_.clear();
    close(tick_);
    close(epoll_);
    return 0;
  }

 private:
  bool watch(int fd, int64_t key) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = static_cast<uint64_t>(key);
    return epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event) == 0;
  }

  void on_stdin() {
    char chunk[65536];
    const ssize_t size = read(STDIN_FILENO, chunk, sizeof chunk);
    if (size <= 0) {
      if (size < 0 && (errno == EAGAIN || errno == EINTR)) return;
      running_ = false;
      return;
    }
    buffer_.append(chunk, static_cast<size_t>(size));
    size_t start = 0;
    for (size_t end; (end = buffer_.find('\n', start)) != std::string::npos; start = end + 1)
      on_command(buffer_.substr(start, end - start));
    buffer_.erase(0, start);
  }

  void on_command(const std::string &line) {
    g_autoptr(JsonParser) parser = json_parser_new();
    if (!json_parser_load_from_data(parser, line.c_str(), -1, nullptr) || !json_parser_get_root(parser) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
      log_line("echo: bad command: %.200s", line.c_str());
      return;
    }
    JsonObject *command = json_node_get_object(json_parser_get_root(parser));
    const std::string cmd = json_object_get_string_member_with_default(command, "cmd", "");
    if (cmd == "quit") {
      running_ = false;
      return;
    }
    const char *sdp = json_object_get_string_member_with_default(command, "sdp", nullptr);
    if (cmd != "offer" || !sdp || !json_object_has_member(command, "id")) {
      log_line("echo: bad command: %.200s", line.c_str());
      return;
    }
    create_peer(json_object_get_int_member(command, "id"), sdp);
  }

  void create_peer(int64_t id, std::string_view offer) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, local_ip_.c_str(), &local.sin_addr);
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&local), sizeof local) != 0) {
      if (fd >= 0) close(fd);
      events_.failed(id, std::string("socket: ") + strerror(errno));
      return;
    }
    auto peer = std::make_unique<EchoPeer>(id, dtls_, fd);
    std::string answer;
    if (std::string error = peer->accept_offer(offer, local_ip_, dtls_.fingerprint(), answer); !error.empty()) {
      events_.failed(id, error);
      return;
    }
    if (peers_.count(id) || !watch(fd, id)) {
      events_.failed(id, "duplicate id or epoll_ctl failure");
      return;
    }
    events_.answer(id, answer);
    peers_[id] = std::move(peer);
  }

  void on_tick() {
    uint64_t expirations = 0;
    if (read(tick_, &expirations, sizeof expirations) < 0) return;
    const int64_t now = monotonic_ns();
    std::vector<std::pair<EchoPeer *, std::string>> outcomes;
    for (auto &[id, peer] : peers_)
      if (!peer->connected()) outcomes.emplace_back(peer.get(), peer->on_tick(now));
    for (auto &[peer, outcome] : outcomes) handle(*peer, outcome);
  }

  void handle(EchoPeer &peer, const std::string &outcome) {
    if (outcome.empty()) return;
    if (outcome == "connected") {
      events_.connected(peer.id(), to_seconds(monotonic_ns()));
      return;
    }
    log_line("echo %lld failed: %s", static_cast<long long>(peer.id()), outcome.c_str());
    events_.failed(peer.id(), outcome);
    peers_.erase(peer.id());
  }

  const DtlsContext &dtls_;
  const std::string local_ip_;
  EventWriter &events_;
  int epoll_ = -1, tick_ = -1;
  bool running_ = true;
  std::string buffer_;
  std::map<int64_t, std::unique_ptr<EchoPeer>> peers_;
};

}  // namespace
}  // namespace callers

int main(int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "--local-ip") != 0) {
    fprintf(stderr, "usage: voicebridge-bench-callers-echo --local-ip IPV4  (offers on stdin, answers on stdout)\n");
    return 2;
  }
  in_addr address{};
  if (inet_pton(AF_INET, argv[2], &address) != 1) {
    fprintf(stderr, "voicebridge-bench-callers-echo: not an IPv4 address: %s\n", argv[2]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  std::string error;
  const auto dtls = callers::DtlsContext::create(callers::DtlsRole::client, error);
  if (!dtls) {
    callers::log_line("echo: %s", error.c_str());
    return 1;
  }
  callers::EventWriter events;
  callers::Echo echo(*dtls, argv[2], events);
  return echo.run();
}
