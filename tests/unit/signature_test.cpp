#include <gtest/gtest.h>

#include <glib.h>

#include <string>

#include "whatsapp/signature.h"

namespace vb {
namespace {

constexpr const char* kSecret = "app-secret-123";
const std::string kBody = R"({"object":"whatsapp_business_account","entry":[]})";

std::string header_for(const std::string& secret, const std::string& body) {
  g_autofree char* hex = g_compute_hmac_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar*>(secret.data()),
                                                 secret.size(), reinterpret_cast<const guchar*>(body.data()),
                                                 body.size());
  return std::string("sha256=") + hex;
}

TEST(Signature, KnownVector) {
  // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
  EXPECT_TRUE(verify_webhook_signature(
      "Jefe", "what do ya want for nothing?",
      "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
}

TEST(Signature, GoodSignature) {
  EXPECT_TRUE(verify_webhook_signature(kSecret, kBody, header_for(kSecret, kBody).c_str()));
}

TEST(Signature, UpperCaseHexIsAccepted) {
  std::string header = header_for(kSecret, kBody);
  for (size_t i = 7; i < header.size(); ++i) header[i] = g_ascii_toupper(header[i]);
  EXPECT_TRUE(verify_webhook_signature(kSecret, kBody, header.c_str()));
}

TEST(Signature, BadSignatures) {
  std::string good = header_for(kSecret, kBody);
  EXPECT_FALSE(verify_webhook_signature("other-secret", kBody, good.c_str()));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody + " ", good.c_str()));  // raw bytes, not re-serialized JSON
  std::string flipped = good;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, flipped.c_str()));
  std::string first_flipped = good;
  first_flipped[7] = first_flipped[7] == '0' ? '1' : '0';
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, first_flipped.c_str()));
  std::string not_hex = good;
  not_hex[10] = 'g';
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, not_hex.c_str()));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, (good + "00").c_str()));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, good.substr(0, good.size() - 2).c_str()));
}

TEST(Signature, MissingEmptyOrWrongPrefix) {
  std::string good = header_for(kSecret, kBody);
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, nullptr));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, ""));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, "sha256="));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, good.substr(7).c_str()));           // bare hex
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, ("sha1=" + good.substr(7)).c_str()));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, ("SHA256=" + good.substr(7)).c_str()));
  EXPECT_FALSE(verify_webhook_signature(kSecret, kBody, (" " + good).c_str()));
}

TEST(Signature, EmptySecretNeverVerifies) {
  EXPECT_FALSE(verify_webhook_signature("", kBody, header_for("", kBody).c_str()));
}

TEST(Signature, EmptyBodyCanBeSigned) {
  EXPECT_TRUE(verify_webhook_signature(kSecret, "", header_for(kSecret, "").c_str()));
}

TEST(ConstantTimeEquals, Basics) {
  EXPECT_TRUE(constant_time_equals("token", "token"));
  EXPECT_FALSE(constant_time_equals("token", "tokem"));
  EXPECT_FALSE(constant_time_equals("token", "token2"));
  EXPECT_FALSE(constant_time_equals("token", "tok"));
  EXPECT_FALSE(constant_time_equals("token", ""));
  EXPECT_FALSE(constant_time_equals("", ""));  // an unset secret matches nothing
  EXPECT_FALSE(constant_time_equals("ab", "abab"));
}

}  // namespace
}  // namespace vb
