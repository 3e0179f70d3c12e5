#include "nudge/sdk/jwt.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <set>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>

#include "nudge/sdk/text.hpp"

namespace nudge {

namespace {

constexpr std::size_t kSha256Bytes = 32;

int base64url_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/// Parses a JSON object whose member names are all distinct: a claim given
/// twice could be read differently by another verifier, so it is refused.
bool parse_object(const std::string& json, rapidjson::Document& doc) {
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  std::set<std::string_view> names;
  for (const auto& member : doc.GetObject())
    if (!names.emplace(member.name.GetString(), member.name.GetStringLength()).second) return false;
  return true;
}

std::optional<std::string_view> string_member(const rapidjson::Value& object, const char* key) {
  const auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string_view(it->value.GetString(), it->value.GetStringLength());
}

/// A NumericDate (seconds, possibly fractional) in milliseconds, saturated.
std::int64_t to_ms(double seconds) noexcept {
  const double ms = std::floor(seconds * 1000.0);
  constexpr double kMax = static_cast<double>(std::numeric_limits<std::int64_t>::max() / 2);
  if (ms >= kMax) return static_cast<std::int64_t>(kMax);
  if (ms <= -kMax) return -static_cast<std::int64_t>(kMax);
  return static_cast<std::int64_t>(ms);
}

bool audience_matches(const rapidjson::Value& aud, std::string_view wanted) {
  auto equals = [&](const rapidjson::Value& v) {
    return v.IsString() && std::string_view(v.GetString(), v.GetStringLength()) == wanted;
  };
  if (equals(aud)) return true;
  if (!aud.IsArray()) return false;
  for (const auto& v : aud.GetArray())
    if (equals(v)) return true;
  return false;
}

}  // namespace

std::string_view to_string(JwtError error) noexcept {
  switch (error) {
    case JwtError::missing:
      return "token missing";
    case JwtError::malformed:
      return "token malformed";
    case JwtError::bad_algorithm:
      return "token algorithm not accepted (only HS256)";
    case JwtError::bad_signature:
      return "token signature invalid";
    case JwtError::missing_expiry:
      return "token has no exp";
    case JwtError::expired:
      return "token expired";
    case JwtError::not_yet_valid:
      return "token not valid yet";
    case JwtError::wrong_issuer:
      return "token issuer not accepted";
    case JwtError::wrong_audience:
      return "token audience not accepted";
    case JwtError::bad_identity:
      return "token identity claim missing or not a valid name";
  }
  return "token refused";
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t bits = 0;
  int bit_count = 0;
  for (char c : text) {
    const int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out += static_cast<char>((bits >> bit_count) & 0xff);
    }
  }
  // Leftover bits must be zero: each byte string has exactly one encoding.
  if ((bits & ((1u << bit_count) - 1)) != 0) return std::nullopt;
  return out;
}

JwtResult JwtVerifier::verify(std::string_view token, std::int64_t now_ms) const {
  if (token.empty()) return JwtError::missing;
  if (token.size() > kMaxJwtBytes) return JwtError::malformed;
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) return JwtError::malformed;

  // The header first: the algorithm is fixed here, never chosen by the token.
  const auto header_json = base64url_decode(token.substr(0, dot1));
  rapidjson::Document header;
  if (!header_json || !parse_object(*header_json, header)) return JwtError::malformed;
  if (string_member(header, "alg") != std::optional<std::string_view>("HS256") || header.HasMember("crit"))
    return JwtError::bad_algorithm;

  const auto signature = base64url_decode(token.substr(dot2 + 1));
  if (!signature) return JwtError::malformed;
  if (signature->size() != kSha256Bytes || policy_.secret.empty()) return JwtError::bad_signature;
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_size = 0;
  const std::string_view signed_part = token.substr(0, dot2);
  if (!HMAC(EVP_sha256(), policy_.secret.data(), static_cast<int>(policy_.secret.size()),
            reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac.data(), &mac_size) ||
      mac_size != kSha256Bytes)
    return JwtError::bad_signature;
  if (CRYPTO_memcmp(mac.data(), signature->data(), kSha256Bytes) != 0) return JwtError::bad_signature;

  // Signed by the holder of the secret from here on; the claims still decide.
  const auto payload_json = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  rapidjson::Document claims;
  if (!payload_json || !parse_object(*payload_json, claims)) return JwtError::malformed;

  const auto exp = claims.FindMember("exp");
  if (exp == claims.MemberEnd() || !exp->value.IsNumber()) return JwtError::missing_expiry;
  const std::int64_t expires_at_ms = to_ms(exp->value.GetDouble());
  if (now_ms >= expires_at_ms + policy_.leeway_ms) return JwtError::expired;

  if (const auto nbf = claims.FindMember("nbf"); nbf != claims.MemberEnd()) {
    if (!nbf->value.IsNumber()) return JwtError::malformed;
    if (now_ms + policy_.leeway_ms < to_ms(nbf->value.GetDouble())) return JwtError::not_yet_valid;
  }
  if (!policy_.issuer.empty() && string_member(claims, "iss") != std::optional<std::string_view>(policy_.issuer))
    return JwtError::wrong_issuer;
  if (!policy_.audience.empty()) {
    const auto aud = claims.FindMember("aud");
    if (aud == claims.MemberEnd() || !audience_matches(aud->value, policy_.audience)) return JwtError::wrong_audience;
  }
  const auto name = string_member(claims, policy_.identity_claim.c_str());
  if (!name || !is_acceptable_display_name(*name)) return JwtError::bad_identity;
  return JwtIdentity{std::string(*name), expires_at_ms};
}

}  // namespace nudge
