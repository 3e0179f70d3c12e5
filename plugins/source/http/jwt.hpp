#pragma once

// Copied from plugins/source/websocket/jwt.hpp (see jwt.cpp).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::plugins::http {

/// What an accepted token says about its holder.
struct JwtIdentity {
  /// The identity claim's value (by default `sub`): the connection's sender name.
  std::string name;
  /// `exp`, in Unix milliseconds.
  std::int64_t expires_at_ms = 0;
};

/// Why a token was refused. Each has a short text for the 401 body and logs.
enum class JwtError {
  missing,           ///< no token in the request
  malformed,         ///< not three base64url parts of JSON objects, or too long
  bad_algorithm,     ///< `alg` is not HS256 (`none`, RS256, ...) or `crit` is present
  bad_signature,     ///< the HMAC does not match
  missing_expiry,    ///< no numeric `exp`
  expired,           ///< `exp` plus the leeway has passed
  not_yet_valid,     ///< `nbf` minus the leeway is still ahead
  wrong_issuer,      ///< `iss` is not the configured issuer
  wrong_audience,    ///< `aud` does not name the configured audience
  bad_identity,      ///< the identity claim is missing or not a valid name
};

/// "token expired", ... (never mentions the token's content).
std::string_view to_string(JwtError error) noexcept;

/// How tokens are checked.
struct JwtPolicy {
  /// The HMAC key, as raw bytes.
  std::string secret;
  /// Clock skew tolerated on `exp` and `nbf`.
  std::int64_t leeway_ms = 0;
  /// When not empty, `iss` must equal it.
  std::string issuer;
  /// When not empty, `aud` (a string or an array of strings) must contain it.
  std::string audience;
  /// The claim naming the holder.
  std::string identity_claim = "sub";
};

/// The result of a verification: an identity or the reason for refusing.
class JwtResult {
 public:
  JwtResult(JwtIdentity identity) : identity_(std::move(identity)) {}  // NOLINT: implicit by design
  JwtResult(JwtError error) : error_(error) {}                         // NOLINT

  bool ok() const noexcept { return identity_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  const JwtIdentity& identity() const { return *identity_; }
  JwtIdentity& identity() { return *identity_; }
  JwtError error() const noexcept { return error_; }

 private:
  std::optional<JwtIdentity> identity_;
  JwtError error_ = JwtError::malformed;
};

/// Verifies compact-serialised JWS tokens signed with HMAC-SHA256 (RFC 7519,
/// RFC 7515). Only `alg: HS256` is accepted: `none` and every other algorithm
/// are refused before the signature is looked at, so a token cannot choose
/// how it is checked. The signature is compared in constant time. `exp` is
/// required; `nbf` is honoured when present. Stateless and cheap (one HMAC
/// and two small JSON parses); safe to share between sessions.
class JwtVerifier {
 public:
  explicit JwtVerifier(JwtPolicy policy) : policy_(std::move(policy)) {}

  /// Checks `token` at the time `now_ms` (Unix milliseconds).
  JwtResult verify(std::string_view token, std::int64_t now_ms) const;

  const JwtPolicy& policy() const noexcept { return policy_; }

 private:
  JwtPolicy policy_;
};

/// Tokens longer than this are refused as malformed without further work.
inline constexpr std::size_t kMaxTokenBytes = 8 * 1024;

/// Decodes unpadded base64url (RFC 4648 §5) strictly: no padding, no other
/// characters, no stray bits. nullopt on any deviation.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace nudge::plugins::http
