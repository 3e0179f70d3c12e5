#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nudge/sdk/jwt.hpp"

namespace nudge {
namespace {

// Tokens are built here independently of jwt.cpp: base64url by hand, HMAC
// straight from OpenSSL.
std::string b64url(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const auto n = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                   static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (bytes.size() - i == 1) {
    const auto n = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
  } else if (bytes.size() - i == 2) {
    const auto n = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
  }
  return out;
}

std::string hs256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac, &size);
  return std::string(reinterpret_cast<const char*>(mac), size);
}

const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";
constexpr std::int64_t kNow = 1'800'000'000'000;  // ms
constexpr std::int64_t kNowS = kNow / 1000;

std::string sign(std::string_view header_json, std::string_view claims_json, std::string_view key = kSecret) {
  const std::string signing_input = b64url(header_json) + "." + b64url(claims_json);
  return signing_input + "." + b64url(hs256(key, signing_input));
}

std::string hs_header() { return R"({"alg":"HS256","typ":"JWT"})"; }
std::string claims(std::int64_t exp, std::string extra = "") {
  return R"({"sub":"alice","exp":)" + std::to_string(exp) + extra + "}";
}

JwtVerifier verifier(std::int64_t leeway_ms = 0, std::string issuer = "", std::string audience = "") {
  return JwtVerifier(JwtPolicy{kSecret, leeway_ms, std::move(issuer), std::move(audience), "sub"});
}

TEST(Jwt, AcceptsAGoodTokenAndNamesItsHolder) {
  const auto result = verifier().verify(sign(hs_header(), claims(kNowS + 60)), kNow);
  ASSERT_TRUE(result.ok()) << to_string(result.error());
  EXPECT_EQ(result.identity().name, "alice");
  EXPECT_EQ(result.identity().expires_at_ms, (kNowS + 60) * 1000);
}

TEST(Jwt, VerifiesTheRfc7515HmacExample) {
  // RFC 7515 appendix A.1, verbatim: a 64-byte key, identity taken from `iss`.
  const std::string key =
      *base64url_decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
  const std::string token =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
      "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
      "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  const JwtVerifier v(JwtPolicy{key, 0, "joe", "", "iss"});
  const auto before = v.verify(token, 1300819379'000);
  ASSERT_TRUE(before.ok()) << to_string(before.error());
  EXPECT_EQ(before.identity().name, "joe");
  EXPECT_EQ(v.verify(token, 1300819380'000).error(), JwtError::expired);  // exp is exclusive
}

TEST(Jwt, RefusesAnExpiredTokenWithinTheLeewayOnly) {
  const auto token = sign(hs_header(), claims(kNowS - 3));  // expired 3 s ago
  EXPECT_EQ(verifier().verify(token, kNow).error(), JwtError::expired);
  EXPECT_EQ(verifier(2000).verify(token, kNow).error(), JwtError::expired);
  EXPECT_TRUE(verifier(5000).verify(token, kNow).ok());
}

TEST(Jwt, HonoursNotBeforeWithTheLeeway) {
  const auto token = sign(hs_header(), claims(kNowS + 600, ",\"nbf\":" + std::to_string(kNowS + 10)));
  EXPECT_EQ(verifier().verify(token, kNow).error(), JwtError::not_yet_valid);
  EXPECT_EQ(verifier(5000).verify(token, kNow).error(), JwtError::not_yet_valid);
  EXPECT_TRUE(verifier(10000).verify(token, kNow).ok());
  EXPECT_TRUE(verifier().verify(token, kNow + 10000).ok());
  // nbf of the wrong type is malformed, not ignored.
  EXPECT_EQ(verifier().verify(sign(hs_header(), claims(kNowS + 600, R"(,"nbf":"soon")")), kNow).error(),
            JwtError::malformed);
}

TEST(Jwt, RequiresExp) {
  EXPECT_EQ(verifier().verify(sign(hs_header(), R"({"sub":"alice"})"), kNow).error(), JwtError::missing_expiry);
  EXPECT_EQ(verifier().verify(sign(hs_header(), R"({"sub":"alice","exp":"tomorrow"})"), kNow).error(),
            JwtError::missing_expiry);
}

TEST(Jwt, RefusesABadSignature) {
  const auto good = sign(hs_header(), claims(kNowS + 60));
  EXPECT_EQ(
      verifier().verify(sign(hs_header(), claims(kNowS + 60), "another-secret-of-more-than-32-bytes!"), kNow).error(),
      JwtError::bad_signature);
  // Claims changed after signing.
  const auto dot1 = good.find('.');
  const auto dot2 = good.find('.', dot1 + 1);
  const auto forged = good.substr(0, dot1 + 1) +
                      b64url(R"({"sub":"mallory","exp":)" + std::to_string(kNowS + 60) + "}") + good.substr(dot2);
  EXPECT_EQ(verifier().verify(forged, kNow).error(), JwtError::bad_signature);
  // A truncated signature, and none at all.
  EXPECT_EQ(verifier().verify(good.substr(0, good.size() - 3), kNow).error(), JwtError::bad_signature);
  EXPECT_EQ(verifier().verify(good.substr(0, dot2 + 1), kNow).error(), JwtError::bad_signature);
}

TEST(Jwt, RefusesAlgNoneAndEveryOtherAlgorithm) {
  // The classic: alg none with an empty signature.
  const std::string none = b64url(R"({"alg":"none","typ":"JWT"})") + "." + b64url(claims(kNowS + 60)) + ".";
  EXPECT_EQ(verifier().verify(none, kNow).error(), JwtError::bad_algorithm);
  // Even correctly MACed with the secret, only HS256 is accepted.
  for (const char* alg : {"none", "None", "RS256", "HS384", "HS512", "ES256", "hs256"})
    EXPECT_EQ(verifier().verify(sign(std::string(R"({"alg":")") + alg + "\"}", claims(kNowS + 60)), kNow).error(),
              JwtError::bad_algorithm)
        << alg;
  EXPECT_EQ(verifier().verify(sign(R"({"typ":"JWT"})", claims(kNowS + 60)), kNow).error(), JwtError::bad_algorithm);
  EXPECT_EQ(verifier().verify("e30.e30.e30", kNow).error(), JwtError::bad_algorithm);  // {} names no alg
  EXPECT_EQ(verifier().verify(sign(R"({"alg":["HS256"]})", claims(kNowS + 60)), kNow).error(), JwtError::bad_algorithm);
  // A critical extension we cannot honour.
  EXPECT_EQ(verifier().verify(sign(R"({"alg":"HS256","crit":["exp"]})", claims(kNowS + 60)), kNow).error(),
            JwtError::bad_algorithm);
}

TEST(Jwt, RefusesMalformedTokens) {
  const auto v = verifier();
  EXPECT_EQ(v.verify("", kNow).error(), JwtError::missing);
  for (const std::string bad : {"abc", "a.b", "a.b.c.d", "..", "!!!.e30.sig"})
    EXPECT_EQ(v.verify(bad, kNow).error(), JwtError::malformed) << bad;
  // Base64 with padding or the standard alphabet is not base64url.
  EXPECT_EQ(v.verify(b64url(hs_header()) + "=." + b64url(claims(kNowS + 60)) + ".x", kNow).error(),
            JwtError::malformed);
  // Not JSON, not an object, invalid UTF-8, duplicate names.
  EXPECT_EQ(v.verify(sign("{alg:HS256}", claims(kNowS + 60)), kNow).error(), JwtError::malformed);
  EXPECT_EQ(v.verify(sign(hs_header(), "[1,2]"), kNow).error(), JwtError::malformed);
  EXPECT_EQ(v.verify(sign(hs_header(), "{\"sub\":\"\xff\",\"exp\":9999999999}"), kNow).error(), JwtError::malformed);
  EXPECT_EQ(v.verify(sign(R"({"alg":"HS256","alg":"none"})", claims(kNowS + 60)), kNow).error(), JwtError::malformed);
  EXPECT_EQ(v.verify(sign(hs_header(), R"({"sub":"alice","sub":"bob","exp":9999999999})"), kNow).error(),
            JwtError::malformed);
  // Oversized.
  EXPECT_EQ(
      v.verify(sign(hs_header(), claims(kNowS + 60, ",\"pad\":\"" + std::string(9000, 'x') + "\"")), kNow).error(),
      JwtError::malformed);
}

TEST(Jwt, ChecksIssuerAndAudienceWhenConfigured) {
  const auto token = sign(hs_header(), claims(kNowS + 60, R"(,"iss":"https://auth.example","aud":["a","chat"])"));
  EXPECT_TRUE(verifier(0, "https://auth.example", "chat").verify(token, kNow).ok());
  EXPECT_TRUE(verifier().verify(token, kNow).ok());  // not configured: not checked
  EXPECT_EQ(verifier(0, "https://evil.example").verify(token, kNow).error(), JwtError::wrong_issuer);
  EXPECT_EQ(verifier(0, "", "other").verify(token, kNow).error(), JwtError::wrong_audience);
  const auto string_aud = sign(hs_header(), claims(kNowS + 60, R"(,"aud":"chat")"));
  EXPECT_TRUE(verifier(0, "", "chat").verify(string_aud, kNow).ok());
  EXPECT_EQ(verifier(0, "issuer").verify(string_aud, kNow).error(), JwtError::wrong_issuer);  // no iss at all
  EXPECT_EQ(verifier(0, "", "chat").verify(sign(hs_header(), claims(kNowS + 60)), kNow).error(),
            JwtError::wrong_audience);
}

TEST(Jwt, TheIdentityMustBeAValidName) {
  EXPECT_EQ(verifier().verify(sign(hs_header(), R"({"exp":9999999999})"), kNow).error(), JwtError::bad_identity);
  EXPECT_EQ(verifier().verify(sign(hs_header(), R"({"sub":42,"exp":9999999999})"), kNow).error(),
            JwtError::bad_identity);
  EXPECT_EQ(verifier().verify(sign(hs_header(), R"({"sub":"a\nb","exp":9999999999})"), kNow).error(),
            JwtError::bad_identity);
  EXPECT_EQ(verifier()
                .verify(sign(hs_header(), R"({"sub":")" + std::string(65, 'a') + R"(","exp":9999999999})"), kNow)
                .error(),
            JwtError::bad_identity);
  const JwtVerifier by_email(JwtPolicy{kSecret, 0, "", "", "email"});
  const auto result = by_email.verify(sign(hs_header(), claims(kNowS + 60, R"(,"email":"a@example.com")")), kNow);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.identity().name, "a@example.com");
}

TEST(Jwt, HugeAndFractionalTimesDoNotOverflow) {
  EXPECT_TRUE(verifier().verify(sign(hs_header(), R"({"sub":"a","exp":1e300})"), kNow).ok());
  EXPECT_EQ(verifier().verify(sign(hs_header(), R"({"sub":"a","exp":-1e300})"), kNow).error(), JwtError::expired);
  const auto r = verifier().verify(sign(hs_header(), R"({"sub":"a","exp":1800000000.5})"), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.identity().expires_at_ms, kNow + 500);
}

TEST(Jwt, Base64UrlIsStrict) {
  EXPECT_EQ(base64url_decode(""), "");
  EXPECT_EQ(base64url_decode("YQ"), "a");
  EXPECT_EQ(base64url_decode("YWI"), "ab");
  EXPECT_EQ(base64url_decode("-_8"), "\xfb\xff");
  EXPECT_FALSE(base64url_decode("YQ=="));  // padding
  EXPECT_FALSE(base64url_decode("+/8"));   // standard alphabet
  EXPECT_FALSE(base64url_decode("Y"));     // impossible length
  EXPECT_FALSE(base64url_decode("YR"));    // stray bits: only "YQ" encodes "a"
}

}  // namespace
}  // namespace nudge
