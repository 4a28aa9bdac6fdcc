// libsrtp2's AES-128 counter mode and HMAC-SHA1 on OpenSSL, for the whole
// process.
//
// webrtcbin encrypts and decrypts through GStreamer's srtpenc/srtpdec, which
// use libsrtp2. Debian builds libsrtp2 on NSS, which creates and destroys a
// PKCS#11 context for every packet (~7 us of CPU per packet, 9 % of the
// server's CPU at 50 calls). libsrtp2's crypto kernel lets a program replace
// the implementation behind a cipher or MAC id; ours keep the AES key schedule
// and the HMAC pads from one packet to the next and allocate nothing per
// packet. The SRTP protocol (key derivation, replay, rollover) stays libsrtp2's.
#pragma once

#include <string>

namespace vb {

// Loads GStreamer's srtp plugin (its initialisation sets up libsrtp2's
// kernel) and replaces the kernel's SRTP_AES_ICM_128 and SRTP_HMAC_SHA1, the
// two that SRTP_AES128_CM_SHA1_80, the only profile webrtcbin's DTLS offers,
// uses. libsrtp2 checks each replacement against our test vectors and against
// those of the implementation it replaces before taking it.
//
// Call at start-up, before any SRTP session exists; later calls return the
// first call's result. False with `error` if the plugin is missing or a
// replacement was refused: libsrtp2 then keeps its own (correct, slower) ones.
bool use_openssl_srtp_crypto(std::string* error);

}  // namespace vb
