#include "dtls.h"

#include <cstring>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

namespace callers {
namespace {

constexpr const char *kSrtpProfile = "SRTP_AES128_CM_SHA1_80";
// Below every path MTU we may meet; an ECDSA flight fits in one datagram.
constexpr long kDtlsMtu = 1200;

struct PkeyFree { void operator()(EVP_PKEY *k) const { EVP_PKEY_free(k); } };
struct X509Free { void operator()(X509 *x) const { X509_free(x); } };
struct BioMethodFree { void operator()(BIO_METHOD *m) const { BIO_meth_free(m); } };

std::string openssl_error(const char *what) {
  std::string text = what;
  const unsigned long code = ERR_get_error();
  if (code != 0) {
    char reason[256];
    ERR_error_string_n(code, reason, sizeof reason);
    text += ": ";
    text += reason;
  }
  ERR_clear_error();
  return text;
}

// A write-only BIO that hands each write (one DTLS datagram) to a DatagramSink,
// so datagram boundaries survive (a memory BIO would concatenate them).
int sink_write(BIO *bio, const char *data, int size) {
  static_cast<DatagramSink *>(BIO_get_data(bio))->send_datagram(reinterpret_cast<const uint8_t *>(data),
                                                                static_cast<size_t>(size));
  return size;
}

long sink_ctrl(BIO *, int command, long, void *) {
  switch (command) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU: return kDtlsMtu;
    default: return 0;  // nothing pending, no MTU overhead, timers unused
  }
}

int sink_create(BIO *bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD *datagram_sink_method() {
  static const std::unique_ptr<BIO_METHOD, BioMethodFree> method = [] {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "callers datagram sink");
    BIO_meth_set_write(m, sink_write);
    BIO_meth_set_ctrl(m, sink_ctrl);
    BIO_meth_set_create(m, sink_create);
    return std::unique_ptr<BIO_METHOD, BioMethodFree>(m);
  }();
  return method.get();
}

// The fingerprint in the SDP is what authenticates the peer: accept the
// self-signed chain here and compare digests once the handshake is done.
int accept_any_certificate(int, X509_STORE_CTX *) { return 1; }

std::unique_ptr<X509, X509Free> self_signed_certificate(EVP_PKEY *key) {
  std::unique_ptr<X509, X509Free> cert(X509_new());
  uint32_t serial = 0;
  if (!cert || RAND_bytes(reinterpret_cast<unsigned char *>(&serial), sizeof serial) != 1) return nullptr;
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial & 0x7fffffff);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -24 * 3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30 * 24 * 3600);
  X509_NAME *name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char *>("voicebridge-bench-callers"), -1, -1, 0);
  if (X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), key) != 1 ||
      X509_sign(cert.get(), key, EVP_sha256()) == 0)
    return nullptr;
  return cert;
}

}  // namespace

std::unique_ptr<DtlsContext> DtlsContext::create(DtlsRole role, std::string &error) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  if (!key) {
    error = openssl_error("generating the P-256 key");
    return nullptr;
  }
  auto cert = self_signed_certificate(key.get());
  if (!cert) {
    error = openssl_error("making the self-signed certificate");
    return nullptr;
  }
  auto context = std::make_unique<DtlsContext>();
  context->role_ = role;
  context->context_.reset(SSL_CTX_new(role == DtlsRole::server ? DTLS_server_method() : DTLS_client_method()));
  SSL_CTX *ctx = context->context_.get();
  if (!ctx || SSL_CTX_use_certificate(ctx, cert.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    error = openssl_error("setting up the DTLS context");
    return nullptr;
  }
  // Note: SSL_CTX_set_tlsext_use_srtp returns 0 on success.
  if (SSL_CTX_set_tlsext_use_srtp(ctx, kSrtpProfile) != 0) {
    error = openssl_error("enabling use_srtp");
    return nullptr;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any_certificate);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU);

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  X509_digest(cert.get(), EVP_sha256(), digest, &digest_size);
  context->fingerprint_ = format_fingerprint(digest, digest_size);
  return context;
}

DtlsSession::DtlsSession(const DtlsContext &context, DatagramSink &sink)
    : ssl_(SSL_new(context.get())), role_(context.role()) {
  BIO *outgoing = BIO_new(datagram_sink_method());
  incoming_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !outgoing || !incoming_) {
    BIO_free(outgoing);
    BIO_free(incoming_);
    incoming_ = nullptr;
    ssl_.reset();
    error_ = openssl_error("creating the DTLS session");
    return;
  }
  BIO_set_data(outgoing, &sink);
  BIO_set_mem_eof_return(incoming_, -1);  // empty means "retry", not EOF
  SSL_set_bio(ssl_.get(), incoming_, outgoing);
  SSL_set_mtu(ssl_.get(), kDtlsMtu);
  if (role_ == DtlsRole::server) SSL_set_accept_state(ssl_.get());
  else SSL_set_connect_state(ssl_.get());
}

DtlsSession::Progress DtlsSession::feed(const uint8_t *datagram, size_t size) {
  if (!ssl_) return Progress::failed;
  ERR_clear_error();
  BIO_write(incoming_, datagram, static_cast<int>(size));
  Progress progress = Progress::done;
  if (!done_) {
    progress = advance();
  } else {
    unsigned char ignored[512];  // no application data is expected (no data channel)
    const int result = SSL_read(ssl_.get(), ignored, sizeof ignored);
    const int reason = result > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), result);
    if (reason == SSL_ERROR_ZERO_RETURN) progress = fail("the server closed DTLS (close_notify)");
    else if (reason == SSL_ERROR_SSL || reason == SSL_ERROR_SYSCALL) progress = fail("DTLS error after the handshake");
  }
  (void)BIO_reset(incoming_);  // one datagram at a time: drop what OpenSSL did not consume
  return progress;
}

DtlsSession::Progress DtlsSession::advance() {
  const int result = SSL_do_handshake(ssl_.get());
  if (result == 1) {
    done_ = true;
    return Progress::done;
  }
  const int reason = SSL_get_error(ssl_.get(), result);
  if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) return Progress::in_progress;
  return fail("DTLS handshake failed");
}

DtlsSession::Progress DtlsSession::fail(const char *what) {
  error_ = openssl_error(what);
  return Progress::failed;
}

std::optional<int64_t> DtlsSession::timeout_ns() {
  timeval left{};
  if (!ssl_ || done_ || DTLSv1_get_timeout(ssl_.get(), &left) != 1) return std::nullopt;
  return int64_t{left.tv_sec} * 1'000'000'000 + int64_t{left.tv_usec} * 1000;
}

DtlsSession::Progress DtlsSession::handle_timeout() {
  ERR_clear_error();
  if (DTLSv1_handle_timeout(ssl_.get()) < 0) return fail("DTLS handshake timed out (retransmissions exhausted)");
  return Progress::in_progress;
}

std::string DtlsSession::description() const {
  const SRTP_PROTECTION_PROFILE *profile = SSL_get_selected_srtp_profile(ssl_.get());
  return std::string(SSL_get_version(ssl_.get())) + ", " + SSL_get_cipher_name(ssl_.get()) + ", " +
         (profile ? profile->name : "no SRTP profile");
}

bool DtlsSession::peer_fingerprint(Sha256Fingerprint &out) const {
  X509 *cert = SSL_get0_peer_certificate(ssl_.get());
  unsigned int size = 0;
  return cert && X509_digest(cert, EVP_sha256(), out.data(), &size) == 1 && size == out.size();
}

bool DtlsSession::export_srtp_keys(SrtpKeys &keys, std::string &error) const {
  const SRTP_PROTECTION_PROFILE *profile = SSL_get_selected_srtp_profile(ssl_.get());
  if (!profile || profile->id != SRTP_AES128_CM_SHA1_80) {
    error = "DTLS negotiated no SRTP_AES128_CM_SHA1_80 protection profile";
    return false;
  }
  // RFC 5764 §4.2: client key, server key, client salt, server salt.
  constexpr size_t kKey = SrtpKeys::kKeySize, kSalt = SrtpKeys::kSaltSize;
  uint8_t material[2 * (kKey + kSalt)];
  static constexpr char kLabel[] = "EXTRACTOR-dtls_srtp";
  if (SSL_export_keying_material(ssl_.get(), material, sizeof material, kLabel, sizeof kLabel - 1, nullptr, 0, 0) !=
      1) {
    error = openssl_error("exporting the SRTP keys");
    return false;
  }
  const bool server = role_ == DtlsRole::server;
  uint8_t *client = server ? keys.inbound : keys.outbound, *server_keys = server ? keys.outbound : keys.inbound;
  memcpy(client, material, kKey);
  memcpy(server_keys, material + kKey, kKey);
  memcpy(client + kKey, material + 2 * kKey, kSalt);
  memcpy(server_keys + kKey, material + 2 * kKey + kSalt, kSalt);
  OPENSSL_cleanse(material, sizeof material);
  return true;
}

}  // namespace callers
