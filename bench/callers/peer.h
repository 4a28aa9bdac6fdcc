// One simulated WhatsApp caller in Meta's role: its own UDP socket, an
// ICE-lite responder, the DTLS server, SRTP, a 20 ms Opus sender and a
// counting (never decoding) receiver.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/types.h>

#include "dtls.h"
#include "events.h"
#include "log.h"
#include "payloads.h"
#include "sdp.h"
#include "srtp.h"

namespace callers {

// What every peer shares.
struct PeerEnvironment {
  const DtlsContext &dtls;
  const Payloads &payloads;
  EventWriter &events;
  std::string local_ip;
};

// What happened to a peer that its owner must act on.
struct PeerOutcome {
  enum class Kind { nothing, connected, failed };
  Kind kind = Kind::nothing;
  std::string reason;  // for failed

  static PeerOutcome failed(std::string why) { return {Kind::failed, std::move(why)}; }
};

class Peer final : private DatagramSink {
 public:
  // Binds the socket on the local IP (ephemeral port) and makes the offer.
  // Returns null with `error` set if the socket cannot be made.
  static std::unique_ptr<Peer> create(int64_t id, PeerEnvironment &environment, std::string &error);
  ~Peer();
  Peer(const Peer &) = delete;
  Peer &operator=(const Peer &) = delete;

  int64_t id() const { return id_; }
  int fd() const { return fd_; }
  const std::string &offer() const { return offer_; }
  std::string dtls_description() const { return dtls_.description(); }

  PeerOutcome apply_answer(std::string_view sdp);
  // Reads and handles every queued datagram. Arrival times come from the
  // kernel's CLOCK_REALTIME stamps; `realtime_minus_monotonic_ns` maps them.
  PeerOutcome receive(int64_t realtime_minus_monotonic_ns);

  // The DTLS retransmission timer while the handshake runs.
  std::optional<int64_t> dtls_timeout_ns() { return connected_ ? std::nullopt : dtls_.timeout_ns(); }
  PeerOutcome on_dtls_timeout();

  // Sends the next payload now; a failed outcome on a socket error.
  PeerOutcome send_next_frame(int64_t now_ns);
  // A 20 ms slot that could not be sent in time: the RTP clock moves on.
  void skip_slot() { timestamp_ += kSamplesPerFrame; }

  // Counters since the previous call (or since connected), then reset.
  WindowCounters take_window();

 private:
  static constexpr uint32_t kSamplesPerFrame = 960;  // 20 ms at 48 kHz
  static constexpr uint8_t kOpusPayloadType = 111;
  static constexpr size_t kOnsetPayloadSize = 20;
  static constexpr unsigned kOnsetQuietPackets = 5;

  Peer(int64_t id, PeerEnvironment &environment, int fd, uint16_t port);

  void send_datagram(const uint8_t *data, size_t size) override;  // DTLS flights
  PeerOutcome on_datagram(uint8_t *packet, size_t size, const sockaddr_storage &source, socklen_t source_size,
                          int64_t arrival_ns);
  PeerOutcome on_stun(const uint8_t *packet, size_t size, const sockaddr_storage &source, socklen_t source_size);
  PeerOutcome on_dtls(const uint8_t *packet, size_t size, const sockaddr_storage &source);
  void on_rtp(uint8_t *packet, size_t size, int64_t now_ns);
  PeerOutcome try_connect();
  [[gnu::format(printf, 3, 4)]] void log_limited(int64_t now_ns, const char *format, ...);

  const int64_t id_;
  PeerEnvironment &environment_;
  const int fd_;
  std::string ice_ufrag_;
  std::string ice_pwd_;
  std::string offer_;
  std::optional<RemoteDescription> answer_;

  sockaddr_storage media_address_{};  // the source of the first valid STUN check
  socklen_t media_address_size_ = 0;
  bool nominated_ = false;  // a USE-CANDIDATE check arrived

  DtlsSession dtls_;
  bool dtls_done_ = false;
  SrtpSession srtp_;
  bool connected_ = false;

  uint32_t ssrc_ = 0;
  uint16_t sequence_ = 0;
  uint32_t timestamp_ = 0;
  size_t next_frame_ = 0;
  bool first_packet_ = true;

  // Receive counters of the current window.
  uint64_t received_ = 0;
  int64_t max_gap_ns_ = 0;
  int64_t max_gap_end_ns_ = 0;
  uint16_t last_sequence_ = 0;
  unsigned max_gap_seq_step_ = 0;
  int64_t first_ns_ = 0;  // 0: nothing yet
  int64_t last_ns_ = 0;
  unsigned quiet_run_ = 0;  // consecutive quiet packets (on_rtp says which are)
  uint8_t previous_payload_[160];  // the last payload if it fits, to spot repeats
  size_t previous_payload_size_ = SIZE_MAX;

  RateLimitedLog warnings_;
};

}  // namespace callers
