// The low-level SHA-1 functions (deprecated in OpenSSL 3, still supported) let
// the HMAC states after the pads be copied by value; EVP_MD_CTX_copy allocates.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "call/srtp_crypto.h"

#include <gst/gst.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <srtp2/auth.h>
#include <srtp2/cipher.h>
#include <srtp2/srtp.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <new>

namespace vb {
namespace {

// ---- AES-128 in counter mode (RFC 3711 §4.1.1) ----

constexpr int kAesKeySize = 16;
constexpr int kSaltSize = 14;
constexpr int kAesKeyWithSaltSize = kAesKeySize + kSaltSize;  // SRTP_AES_ICM_128_KEY_LEN_WSALT

struct CipherContextFree {
  void operator()(EVP_CIPHER_CTX* context) const { EVP_CIPHER_CTX_free(context); }
};

struct AesCounterState {
  std::unique_ptr<EVP_CIPHER_CTX, CipherContextFree> context{EVP_CIPHER_CTX_new()};
  // The salt, in the top 112 bits of the counter block: libsrtp2 passes the
  // packet's part (SSRC, index) as the IV, the block is their XOR.
  uint8_t salt_block[16] = {};

  ~AesCounterState() { OPENSSL_cleanse(salt_block, sizeof salt_block); }
};

AesCounterState* counter_state(void* state) { return static_cast<AesCounterState*>(state); }

extern const srtp_cipher_type_t kAesCounter128;

srtp_err_status_t aes_counter_alloc(srtp_cipher_pointer_t* cipher, int key_len, int /*tag_len*/) {
  if (key_len != kAesKeyWithSaltSize) return srtp_err_status_bad_param;
  std::unique_ptr<AesCounterState> state(new (std::nothrow) AesCounterState);
  std::unique_ptr<srtp_cipher_t> allocated(new (std::nothrow) srtp_cipher_t{});
  if (!state || !state->context || !allocated) return srtp_err_status_alloc_fail;
  allocated->type = &kAesCounter128;
  allocated->key_len = key_len;
  allocated->algorithm = SRTP_AES_ICM_128;
  allocated->state = state.release();
  *cipher = allocated.release();
  return srtp_err_status_ok;
}

srtp_err_status_t aes_counter_dealloc(srtp_cipher_pointer_t cipher) {
  delete counter_state(cipher->state);
  delete cipher;
  return srtp_err_status_ok;
}

// `key` is the AES key followed by the 14-byte salt.
srtp_err_status_t aes_counter_init(void* state, const uint8_t* key) {
  AesCounterState* aes = counter_state(state);
  memcpy(aes->salt_block, key + kAesKeySize, kSaltSize);
  memset(aes->salt_block + kSaltSize, 0, sizeof aes->salt_block - kSaltSize);
  return EVP_EncryptInit_ex(aes->context.get(), EVP_aes_128_ctr(), nullptr, key, nullptr) == 1
             ? srtp_err_status_ok
             : srtp_err_status_init_fail;
}

// Counter mode is its own inverse: the direction does not matter.
srtp_err_status_t aes_counter_set_iv(void* state, uint8_t* iv, srtp_cipher_direction_t /*direction*/) {
  AesCounterState* aes = counter_state(state);
  uint8_t block[16];
  for (size_t i = 0; i < sizeof block; ++i) block[i] = aes->salt_block[i] ^ iv[i];
  return EVP_EncryptInit_ex(aes->context.get(), nullptr, nullptr, nullptr, block) == 1 ? srtp_err_status_ok
                                                                                        : srtp_err_status_cipher_fail;
}

srtp_err_status_t aes_counter_crypt(void* state, uint8_t* buffer, unsigned int* octets) {
  int written = 0;
  return EVP_EncryptUpdate(counter_state(state)->context.get(), buffer, &written, buffer, static_cast<int>(*octets)) ==
                 1
             ? srtp_err_status_ok
             : srtp_err_status_cipher_fail;
}

// RFC 3711 Appendix B.2: session key, session salt, the first two keystream
// blocks for index 0 and SSRC 0.
const uint8_t kAesCounterTestKey[kAesKeyWithSaltSize] = {
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f,
    0x3c, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd};
uint8_t kAesCounterTestIv[16] = {};  // libsrtp2's test-case type wants it mutable
const uint8_t kAesCounterTestPlaintext[32] = {};
const uint8_t kAesCounterTestCiphertext[32] = {
    0xe0, 0x3e, 0xad, 0x09, 0x35, 0xc9, 0x5e, 0x80, 0xe1, 0x66, 0xb1, 0x6d, 0xd9, 0x2b, 0x4e, 0xb4,
    0xd2, 0x35, 0x13, 0x16, 0x2b, 0x02, 0xd0, 0xf7, 0x2a, 0x43, 0xa2, 0xfe, 0x4a, 0x5f, 0x97, 0xab};
const srtp_cipher_test_case_t kAesCounterTest = {
    .key_length_octets = kAesKeyWithSaltSize,
    .key = kAesCounterTestKey,
    .idx = kAesCounterTestIv,
    .plaintext_length_octets = sizeof kAesCounterTestPlaintext,
    .plaintext = kAesCounterTestPlaintext,
    .ciphertext_length_octets = sizeof kAesCounterTestCiphertext,
    .ciphertext = kAesCounterTestCiphertext,
    .aad_length_octets = 0,
    .aad = nullptr,
    .tag_length_octets = 0,
    .next_test_case = nullptr,
};

const srtp_cipher_type_t kAesCounter128 = {
    .alloc = aes_counter_alloc,
    .dealloc = aes_counter_dealloc,
    .init = aes_counter_init,
    .set_aad = nullptr,
    .encrypt = aes_counter_crypt,
    .decrypt = aes_counter_crypt,
    .set_iv = aes_counter_set_iv,
    .get_tag = nullptr,
    .description = "AES-128 counter mode (OpenSSL, voicebridge)",
    .test_data = &kAesCounterTest,
    .id = SRTP_AES_ICM_128,
};

// ---- HMAC-SHA1 (RFC 2104), the SRTP authentication tag ----

constexpr int kSha1BlockSize = 64;

struct HmacSha1State {
  SHA_CTX inner_start{};  // SHA-1 after the inner pad: where every message starts
  SHA_CTX outer_start{};  // SHA-1 after the outer pad
  SHA_CTX message{};      // the message being authenticated

  ~HmacSha1State() { OPENSSL_cleanse(this, sizeof *this); }
};

HmacSha1State* hmac_state(void* state) { return static_cast<HmacSha1State*>(state); }

extern const srtp_auth_type_t kHmacSha1;

srtp_err_status_t hmac_alloc(srtp_auth_pointer_t* auth, int key_len, int out_len) {
  if (key_len < 0 || key_len > SHA_DIGEST_LENGTH || out_len < 0 || out_len > SHA_DIGEST_LENGTH)
    return srtp_err_status_bad_param;
  std::unique_ptr<HmacSha1State> state(new (std::nothrow) HmacSha1State);
  std::unique_ptr<srtp_auth_t> allocated(new (std::nothrow) srtp_auth_t{});
  if (!state || !allocated) return srtp_err_status_alloc_fail;
  allocated->type = &kHmacSha1;
  allocated->out_len = out_len;
  allocated->key_len = key_len;
  allocated->prefix_len = 0;
  allocated->state = state.release();
  *auth = allocated.release();
  return srtp_err_status_ok;
}

srtp_err_status_t hmac_dealloc(srtp_auth_pointer_t auth) {
  delete hmac_state(auth->state);
  delete auth;
  return srtp_err_status_ok;
}

// Absorbs the key XOR `pad` (RFC 2104's ipad or opad) into a fresh SHA-1.
bool start_pad(SHA_CTX& hash, const uint8_t* key, int key_len, uint8_t pad) {
  uint8_t block[kSha1BlockSize];
  memset(block, pad, sizeof block);
  for (int i = 0; i < key_len; ++i) block[i] ^= key[i];
  const bool ok = SHA1_Init(&hash) == 1 && SHA1_Update(&hash, block, sizeof block) == 1;
  OPENSSL_cleanse(block, sizeof block);
  return ok;
}

srtp_err_status_t hmac_init(void* state, const uint8_t* key, int key_len) {
  HmacSha1State* hmac = hmac_state(state);
  if (key_len > kSha1BlockSize || !start_pad(hmac->inner_start, key, key_len, 0x36) ||
      !start_pad(hmac->outer_start, key, key_len, 0x5c))
    return srtp_err_status_auth_fail;
  hmac->message = hmac->inner_start;
  return srtp_err_status_ok;
}

srtp_err_status_t hmac_start(void* state) {
  HmacSha1State* hmac = hmac_state(state);
  hmac->message = hmac->inner_start;
  return srtp_err_status_ok;
}

srtp_err_status_t hmac_update(void* state, const uint8_t* buffer, int octets) {
  return SHA1_Update(&hmac_state(state)->message, buffer, static_cast<size_t>(octets)) == 1
             ? srtp_err_status_ok
             : srtp_err_status_auth_fail;
}

// Adds the last `octets` of the message and writes the first `tag_len` bytes
// of the HMAC.
srtp_err_status_t hmac_compute(void* state, const uint8_t* buffer, int octets, int tag_len, uint8_t* tag) {
  HmacSha1State* hmac = hmac_state(state);
  if (tag_len < 0 || tag_len > SHA_DIGEST_LENGTH) return srtp_err_status_bad_param;
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA_CTX outer = hmac->outer_start;
  const bool ok = SHA1_Update(&hmac->message, buffer, static_cast<size_t>(octets)) == 1 &&
                  SHA1_Final(digest, &hmac->message) == 1 && SHA1_Update(&outer, digest, sizeof digest) == 1 &&
                  SHA1_Final(digest, &outer) == 1;
  if (ok) memcpy(tag, digest, static_cast<size_t>(tag_len));
  OPENSSL_cleanse(digest, sizeof digest);
  return ok ? srtp_err_status_ok : srtp_err_status_auth_fail;
}

// RFC 2202 test case 1.
const uint8_t kHmacTestKey[20] = {0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
                                  0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b};
const uint8_t kHmacTestData[8] = {'H', 'i', ' ', 'T', 'h', 'e', 'r', 'e'};
const uint8_t kHmacTestTag[20] = {0xb6, 0x17, 0x31, 0x86, 0x55, 0x05, 0x72, 0x64, 0xe2, 0x8b,
                                  0xc0, 0xb6, 0xfb, 0x37, 0x8c, 0x8e, 0xf1, 0x46, 0xbe, 0x00};
const srtp_auth_test_case_t kHmacTest = {
    .key_length_octets = sizeof kHmacTestKey,
    .key = kHmacTestKey,
    .data_length_octets = sizeof kHmacTestData,
    .data = kHmacTestData,
    .tag_length_octets = sizeof kHmacTestTag,
    .tag = kHmacTestTag,
    .next_test_case = nullptr,
};

const srtp_auth_type_t kHmacSha1 = {
    .alloc = hmac_alloc,
    .dealloc = hmac_dealloc,
    .init = hmac_init,
    .compute = hmac_compute,
    .update = hmac_update,
    .start = hmac_start,
    .description = "HMAC-SHA1 (OpenSSL, voicebridge)",
    .test_data = &kHmacTest,
    .id = SRTP_HMAC_SHA1,
};

std::string replace_kernel_crypto() {
  // The plugin's initialisation runs srtp_init(); replacing before it would
  // make libsrtp2's own registration of these ids fail.
  g_autoptr(GstPlugin) plugin = gst_plugin_load_by_name("srtp");
  if (!plugin) return "GStreamer's srtp plugin cannot be loaded";
  if (const srtp_err_status_t status = srtp_replace_cipher_type(&kAesCounter128, SRTP_AES_ICM_128);
      status != srtp_err_status_ok)
    return "libsrtp2 refused the OpenSSL AES-128 counter mode (srtp_err_status " + std::to_string(status) + ")";
  if (const srtp_err_status_t status = srtp_replace_auth_type(&kHmacSha1, SRTP_HMAC_SHA1);
      status != srtp_err_status_ok)
    return "libsrtp2 refused the OpenSSL HMAC-SHA1 (srtp_err_status " + std::to_string(status) + ")";
  return "";
}

}  // namespace

bool use_openssl_srtp_crypto(std::string* error) {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] { failure = replace_kernel_crypto(); });
  if (!failure.empty()) *error = failure;
  return failure.empty();
}

}  // namespace vb
