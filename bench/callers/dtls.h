// DTLS for DTLS-SRTP (RFC 5763/5764) with OpenSSL: one self-signed ECDSA
// P-256 certificate per process, one session per peer, whose exporter gives
// the SRTP keys. The callers are DTLS servers; the echo test peer is a client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <openssl/ssl.h>

#include "sdp.h"
#include "srtp.h"

namespace callers {

struct SslContextFree { void operator()(SSL_CTX *c) const { SSL_CTX_free(c); } };
struct SslFree { void operator()(SSL *s) const { SSL_free(s); } };

enum class DtlsRole { server, client };

class DtlsContext {
 public:
  // Makes the certificate and the SSL_CTX (SRTP_AES128_CM_SHA1_80, the peer's
  // certificate required). Returns null with `error` set on failure.
  static std::unique_ptr<DtlsContext> create(DtlsRole role, std::string &error);

  SSL_CTX *get() const { return context_.get(); }
  DtlsRole role() const { return role_; }
  const std::string &fingerprint() const { return fingerprint_; }  // "AA:BB:..."

 private:
  std::unique_ptr<SSL_CTX, SslContextFree> context_;
  DtlsRole role_ = DtlsRole::server;
  std::string fingerprint_;
};

// Receives the DTLS session's outgoing datagrams (one record flight part per call).
class DatagramSink {
 public:
  virtual void send_datagram(const uint8_t *data, size_t size) = 0;

 protected:
  ~DatagramSink() = default;
};

class DtlsSession {
 public:
  enum class Progress { in_progress, done, failed };

  DtlsSession(const DtlsContext &context, DatagramSink &sink);

  // A client sends its ClientHello; a server waits for one.
  Progress start() { return advance(); }

  // Feeds one received datagram. Before the handshake is done it advances the
  // handshake; after, it reads alerts (a close_notify or a fatal alert fails).
  Progress feed(const uint8_t *datagram, size_t size);

  // Time left until the next retransmission, if a retransmission timer runs.
  std::optional<int64_t> timeout_ns();
  Progress handle_timeout();

  // The client certificate's sha-256 digest and the SRTP keys; only after done.
  bool peer_fingerprint(Sha256Fingerprint &out) const;
  bool export_srtp_keys(SrtpKeys &keys, std::string &error) const;

  // "DTLSv1.2, <cipher>, <SRTP profile>" for logs, after done.
  std::string description() const;

  const std::string &error() const { return error_; }

 private:
  Progress advance();
  Progress fail(const char *what);

  std::unique_ptr<SSL, SslFree> ssl_;
  DtlsRole role_;
  BIO *incoming_ = nullptr;  // owned by ssl_
  bool done_ = false;
  std::string error_;
};

}  // namespace callers
