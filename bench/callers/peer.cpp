#include "peer.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <unistd.h>

#include "clock.h"
#include "rtp.h"
#include "stun.h"

namespace callers {
namespace {

constexpr size_t kMaxDatagram = 2048;
constexpr unsigned kReceiveBatch = 8;  // datagrams per recvmmsg

// Buffers for every peer (single thread; a batch is done with before the next).
struct ReceiveBatch {
  uint8_t data[kReceiveBatch][kMaxDatagram];
  sockaddr_storage sources[kReceiveBatch];
  iovec iov[kReceiveBatch];
  alignas(cmsghdr) char control[kReceiveBatch][CMSG_SPACE(sizeof(timespec))];
  mmsghdr headers[kReceiveBatch];
};
ReceiveBatch g_receive;
uint8_t g_send_packet[kRtpHeaderSize + Payloads::kMaxPayload + SrtpSession::kTagSize];

// The kernel's receive time (SO_TIMESTAMPNS, CLOCK_REALTIME) on CLOCK_MONOTONIC:
// exact arrival times although sockets are read in batches.
int64_t arrival_ns(const msghdr &header, int64_t realtime_minus_monotonic_ns) {
  for (cmsghdr *c = CMSG_FIRSTHDR(&header); c; c = CMSG_NXTHDR(const_cast<msghdr *>(&header), c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      timespec stamp{};
      memcpy(&stamp, CMSG_DATA(c), sizeof stamp);
      return int64_t{stamp.tv_sec} * kNsPerSecond + stamp.tv_nsec - realtime_minus_monotonic_ns;
    }
  }
  return monotonic_ns();
}

template <typename T>
T random_value() {
  T value{};
  RAND_bytes(reinterpret_cast<unsigned char *>(&value), sizeof value);
  return value;
}

std::string address_text(const sockaddr_storage &address) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    const auto &v4 = reinterpret_cast<const sockaddr_in &>(address);
    inet_ntop(AF_INET, &v4.sin_addr, host, sizeof host);
    port = ntohs(v4.sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto &v6 = reinterpret_cast<const sockaddr_in6 &>(address);
    inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof host);
    port = ntohs(v6.sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

bool same_address(const sockaddr_storage &a, const sockaddr_storage &b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto &x = reinterpret_cast<const sockaddr_in &>(a), &y = reinterpret_cast<const sockaddr_in &>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  const auto &x = reinterpret_cast<const sockaddr_in6 &>(a), &y = reinterpret_cast<const sockaddr_in6 &>(b);
  return x.sin6_port == y.sin6_port && memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
}

// The payload of a decrypted RTP packet (CSRCs, extension and padding
// excluded); false if the packet is inconsistent.
bool rtp_payload(const uint8_t *packet, size_t size, size_t &offset, size_t &payload_size) {
  offset = rtp_header_size(packet, size);
  const size_t padding = (packet[0] & 0x20) && size > offset ? packet[size - 1] : 0;
  if (offset == 0 || size < offset + padding) return false;
  payload_size = size - offset - padding;
  return true;
}

}  // namespace

std::unique_ptr<Peer> Peer::create(int64_t id, PeerEnvironment &environment, std::string &error) {
  sockaddr_in local{};
  local.sin_family = AF_INET;
  if (inet_pton(AF_INET, environment.local_ip.c_str(), &local.sin_addr) != 1) {
    error = "bad local IP " + environment.local_ip;
    return nullptr;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + strerror(errno);
    return nullptr;
  }
  socklen_t size = sizeof local;
  const int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) != 0 ||
      bind(fd, reinterpret_cast<sockaddr *>(&local), sizeof local) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&local), &size) != 0) {
    error = "socket setup on " + environment.local_ip + ": " + strerror(errno);
    close(fd);
    return nullptr;
  }
  std::unique_ptr<Peer> peer(new Peer(id, environment, fd, ntohs(local.sin_port)));
  if (!peer->dtls_.error().empty()) {
    error = peer->dtls_.error();
    return nullptr;
  }
  return peer;
}

Peer::Peer(int64_t id, PeerEnvironment &environment, int fd, uint16_t port)
    : id_(id),
      environment_(environment),
      fd_(fd),
      ice_ufrag_(random_ice_string(16)),
      ice_pwd_(random_ice_string(24)),
      dtls_(environment.dtls, *this),
      ssrc_(random_value<uint32_t>()),
      sequence_(random_value<uint16_t>()),
      timestamp_(random_value<uint32_t>()),
      warnings_(kNsPerSecond) {
  OfferParams params;
  params.local_ip = environment.local_ip;
  params.port = port;
  params.ice_ufrag = ice_ufrag_;
  params.ice_pwd = ice_pwd_;
  params.fingerprint = environment.dtls.fingerprint();
  params.ssrc = ssrc_;
  params.cname = "callers" + random_ice_string(8);
  params.session_id = random_value<uint64_t>() >> 1;
  offer_ = build_offer(params);
}

Peer::~Peer() { close(fd_); }

PeerOutcome Peer::apply_answer(std::string_view sdp) {
  if (answer_) {
    log_line("peer %lld: a second answer; keeping the first", static_cast<long long>(id_));
    return {};
  }
  RemoteDescription answer;
  if (std::string error = parse_answer(sdp, answer); !error.empty()) return PeerOutcome::failed(error);
  std::string candidates;
  for (const std::string &candidate : answer.candidates) candidates += " [" + candidate + "]";
  log_line("peer %lld: answer with ufrag %s, %zu candidate(s):%s", static_cast<long long>(id_),
           answer.ice_ufrag.c_str(), answer.candidates.size(), candidates.c_str());
  answer_ = std::move(answer);
  return try_connect();  // the handshake may have finished before the answer came
}

PeerOutcome Peer::receive(int64_t realtime_minus_monotonic_ns) {
  ReceiveBatch &batch = g_receive;
  PeerOutcome result;  // `connected` is reported after the rest of the batch
  for (;;) {
    for (unsigned i = 0; i < kReceiveBatch; ++i) {
      batch.iov[i] = {batch.data[i], kMaxDatagram};
      msghdr &header = batch.headers[i].msg_hdr;
      header = {};
      header.msg_name = &batch.sources[i];
      header.msg_namelen = sizeof batch.sources[i];
      header.msg_iov = &batch.iov[i];
      header.msg_iovlen = 1;
      header.msg_control = batch.control[i];
      header.msg_controllen = sizeof batch.control[i];
    }
    const int count = recvmmsg(fd_, batch.headers, kReceiveBatch, MSG_DONTWAIT, nullptr);
    if (count < 0) {
      if (errno == EAGAIN || errno == EINTR) return result;
      return PeerOutcome::failed(std::string("recvmmsg: ") + strerror(errno));
    }
    for (int i = 0; i < count; ++i) {
      const msghdr &header = batch.headers[i].msg_hdr;
      PeerOutcome outcome = on_datagram(batch.data[i], batch.headers[i].msg_len, batch.sources[i],
                                        header.msg_namelen, arrival_ns(header, realtime_minus_monotonic_ns));
      if (outcome.kind == PeerOutcome::Kind::failed) return outcome;
      if (outcome.kind == PeerOutcome::Kind::connected) result = std::move(outcome);
    }
    if (count < static_cast<int>(kReceiveBatch)) return result;
  }
}

PeerOutcome Peer::on_datagram(uint8_t *packet, size_t size, const sockaddr_storage &source, socklen_t source_size,
                              int64_t arrival_ns) {
  const uint8_t first = size > 0 ? packet[0] : 255;
  // RFC 7983 demultiplexing on the first byte.
  if (first <= 3) return on_stun(packet, size, source, source_size);
  if (first >= 20 && first <= 63) return on_dtls(packet, size, source);
  if (first >= 128 && first <= 191) {
    if (size >= kRtpHeaderSize && connected_) on_rtp(packet, size, arrival_ns);
    return {};
  }
  log_limited(arrival_ns, "ignoring a %zu-byte datagram starting with %u from %s", size, first,
              address_text(source).c_str());
  return {};
}

PeerOutcome Peer::on_stun(const uint8_t *packet, size_t size, const sockaddr_storage &source,
                          socklen_t source_size) {
  const IceCredentials credentials{ice_ufrag_, ice_pwd_, answer_ ? std::string_view(answer_->ice_ufrag) : ""};
  const StunCheck check = check_binding_request(packet, size, credentials);
  if (check.verdict == StunVerdict::not_a_request) return {};
  if (check.verdict == StunVerdict::invalid) {
    log_limited(monotonic_ns(), "bad STUN check from %s: %s", address_text(source).c_str(), check.error);
    return {};
  }
  // The first valid check gives the media address; a nomination from another
  // address (the controlling agent chose that pair) replaces it once.
  const bool nominates_other = check.use_candidate && !nominated_ && media_address_size_ != 0 &&
                               !same_address(source, media_address_);
  if (media_address_size_ == 0 || nominates_other) {
    media_address_ = source;
    media_address_size_ = source_size;
    log_line("peer %lld: media address %s (%s)", static_cast<long long>(id_), address_text(source).c_str(),
             nominates_other ? "nominated" : check.use_candidate ? "first valid check, USE-CANDIDATE"
                                                                 : "first valid check");
  }
  nominated_ = nominated_ || check.use_candidate;
  uint8_t response[kStunResponseMax];
  const size_t response_size = build_binding_success(packet, source, ice_pwd_, response);
  if (sendto(fd_, response, response_size, 0, reinterpret_cast<const sockaddr *>(&source), source_size) < 0)
    log_limited(monotonic_ns(), "sendto (STUN response): %s", strerror(errno));
  return {};
}

PeerOutcome Peer::on_dtls(const uint8_t *packet, size_t size, const sockaddr_storage &source) {
  if (media_address_size_ == 0 || !same_address(source, media_address_)) {
    log_limited(monotonic_ns(), "ignoring DTLS from %s: not the media address (no valid STUN check from it first)",
                address_text(source).c_str());
    return {};
  }
  switch (dtls_.feed(packet, size)) {
    case DtlsSession::Progress::failed: return PeerOutcome::failed(dtls_.error());
    case DtlsSession::Progress::in_progress: return {};
    case DtlsSession::Progress::done: break;
  }
  if (dtls_done_) return {};
  dtls_done_ = true;
  return try_connect();
}

PeerOutcome Peer::on_dtls_timeout() {
  if (dtls_.handle_timeout() == DtlsSession::Progress::failed) return PeerOutcome::failed(dtls_.error());
  return {};
}

PeerOutcome Peer::try_connect() {
  if (!dtls_done_ || !answer_ || connected_) return {};
  Sha256Fingerprint actual{};
  if (!dtls_.peer_fingerprint(actual)) return PeerOutcome::failed("the DTLS client sent no certificate");
  if (actual != answer_->fingerprint) {
    return PeerOutcome::failed("fingerprint mismatch: the DTLS client's certificate is " +
                               format_fingerprint(actual.data(), actual.size()) + ", the answer says " +
                               format_fingerprint(answer_->fingerprint.data(), answer_->fingerprint.size()));
  }
  SrtpKeys keys{};
  std::string error;
  const bool started = dtls_.export_srtp_keys(keys, error) && srtp_.start(keys, error);
  OPENSSL_cleanse(&keys, sizeof keys);
  if (!started) return PeerOutcome::failed(error);
  connected_ = true;
  return {PeerOutcome::Kind::connected, {}};
}

void Peer::on_rtp(uint8_t *packet, size_t size, int64_t now_ns) {
  const uint8_t second = packet[1];
  if (second >= 192 && second <= 223) return;  // RTCP (rtcp-mux): not counted
  size_t length = size;
  if (!srtp_.unprotect(packet, length)) {
    log_limited(now_ns, "SRTP unprotect failed for a %zu-byte packet (bad tag, replayed or malformed)", size);
    return;
  }
  size_t offset = 0, payload = 0;
  if (!rtp_payload(packet, length, offset, payload)) {
    log_limited(now_ns, "malformed RTP header");
    return;
  }
  const uint16_t sequence = static_cast<uint16_t>(packet[2] << 8 | packet[3]);
  if (received_ == 0) {
    first_ns_ = now_ns;
  } else if (now_ns - last_ns_ > max_gap_ns_) {
    max_gap_ns_ = now_ns - last_ns_;
    max_gap_end_ns_ = now_ns;
    max_gap_seq_step_ = static_cast<uint16_t>(sequence - last_sequence_);
  }
  ++received_;
  last_ns_ = now_ns;
  last_sequence_ = sequence;
  // Quiet: a small packet (Opus of digital silence), or the very packet
  // before it again (the server's voiceopusenc repeats one cached packet for
  // silence, 36 bytes at 20 kb/s with in-band FEC).
  const uint8_t *data = packet + offset;
  const bool repeated = payload == previous_payload_size_ && memcmp(data, previous_payload_, payload) == 0;
  if (payload < kOnsetPayloadSize || repeated) {
    ++quiet_run_;
  } else {
    if (quiet_run_ >= kOnsetQuietPackets) environment_.events.onset(id_, to_seconds(now_ns));
    quiet_run_ = 0;
  }
  previous_payload_size_ = payload <= sizeof previous_payload_ ? payload : SIZE_MAX;
  if (payload <= sizeof previous_payload_) memcpy(previous_payload_, data, payload);
}

PeerOutcome Peer::send_next_frame(int64_t now_ns) {
  const Payloads &payloads = environment_.payloads;
  const size_t payload_size = payloads.size(next_frame_);
  uint8_t *packet = g_send_packet;
  packet[0] = 0x80;  // version 2
  packet[1] = static_cast<uint8_t>((first_packet_ ? 0x80 : 0) | kOpusPayloadType);
  write16(packet + 2, sequence_);
  write32(packet + 4, timestamp_);
  write32(packet + 8, ssrc_);
  memcpy(packet + kRtpHeaderSize, payloads.data(next_frame_), payload_size);
  size_t length = kRtpHeaderSize + payload_size;
  if (!srtp_.protect(packet, length)) {
    log_limited(now_ns, "SRTP protect failed");
  } else if (sendto(fd_, packet, length, 0, reinterpret_cast<const sockaddr *>(&media_address_),
                    media_address_size_) < 0) {
    if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
      return PeerOutcome::failed(std::string("sendto: ") + strerror(errno));
    log_limited(now_ns, "sendto: %s (packet dropped)", strerror(errno));
  } else if (next_frame_ == 0) {
    environment_.events.tone(id_, to_seconds(monotonic_ns()));
  }
  first_packet_ = false;
  ++sequence_;
  timestamp_ += kSamplesPerFrame;
  next_frame_ = (next_frame_ + 1) % payloads.frames();
  return {};
}

void Peer::send_datagram(const uint8_t *data, size_t size) {
  if (sendto(fd_, data, size, 0, reinterpret_cast<const sockaddr *>(&media_address_), media_address_size_) < 0)
    log_limited(monotonic_ns(), "sendto (DTLS): %s", strerror(errno));
}

WindowCounters Peer::take_window() {
  WindowCounters counters;
  counters.id = id_;
  counters.received = received_;
  counters.max_gap_ms = static_cast<double>(max_gap_ns_) / kNsPerMs;
  if (max_gap_ns_ > 0) counters.max_gap_end_t = to_seconds(max_gap_end_ns_);
  counters.max_gap_seq_step = max_gap_seq_step_;
  if (received_ > 0) {
    counters.first_t = to_seconds(first_ns_);
    counters.last_t = to_seconds(last_ns_);
  }
  received_ = 0;
  max_gap_ns_ = 0;
  max_gap_seq_step_ = 0;
  return counters;
}

void Peer::log_limited(int64_t now_ns, const char *format, ...) {
  unsigned suppressed = 0;
  if (!warnings_.allow(now_ns, suppressed)) return;
  char text[512];
  va_list args;
  va_start(args, format);
  vsnprintf(text, sizeof text, format, args);
  va_end(args);
  if (suppressed > 0)
    log_line("peer %lld: %s (%u similar lines suppressed)", static_cast<long long>(id_), text, suppressed);
  else
    log_line("peer %lld: %s", static_cast<long long>(id_), text);
}

}  // namespace callers
