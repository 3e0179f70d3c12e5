#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace nudge {

// HS256 JSON Web Tokens (RFC 7519, compact JWS of RFC 7515) for sources that
// let a caller prove who it is with a token signed by a backend that shares
// a secret with Nudge. One verifier, so every source accepts and refuses the
// same tokens for the same reasons. The header names no OpenSSL or JSON
// type: the HMAC and the parsing stay inside the SDK's library.

/// What an accepted token says about its holder.
struct JwtIdentity {
  /// The identity claim's value (by default `sub`): the caller's sender name.
  std::string name;
  /// `exp`, in Unix milliseconds.
  std::int64_t expires_at_ms = 0;
};

/// Why a token was refused. Each has a short text (to_string) for a 401 body and logs.
enum class JwtError {
  missing,         ///< no token in the request
  malformed,       ///< not three base64url parts of JSON objects, or longer than kMaxJwtBytes
  bad_algorithm,   ///< `alg` is not HS256 (`none`, RS256, ...) or `crit` is present
  bad_signature,   ///< the HMAC does not match
  missing_expiry,  ///< no numeric `exp`
  expired,         ///< `exp` plus the leeway has passed
  not_yet_valid,   ///< `nbf` minus the leeway is still ahead
  wrong_issuer,    ///< `iss` is not the configured issuer
  wrong_audience,  ///< `aud` does not name the configured audience
  bad_identity,    ///< the identity claim is missing or not an acceptable display name
};

/// "token expired", ...: a constant string that never mentions the token's content,
/// so it may be sent to the client and logged.
std::string_view to_string(JwtError error) noexcept;

/// How tokens are checked.
struct JwtPolicy {
  /// The HMAC key, as raw bytes. Empty refuses every token (bad_signature).
  std::string secret;
  /// Clock skew tolerated on `exp` and `nbf`, in milliseconds.
  std::int64_t leeway_ms = 0;
  /// When not empty, `iss` must equal it.
  std::string issuer;
  /// When not empty, `aud` (a string or an array of strings) must contain it.
  std::string audience;
  /// The claim naming the holder; its value must pass is_acceptable_display_name
  /// (nudge/sdk/text.hpp), the rule for every sender name.
  std::string identity_claim = "sub";
};

/// The result of a verification: an identity or the reason for refusing.
class JwtResult {
 public:
  /// An accepted token's holder.
  JwtResult(JwtIdentity identity) : identity_(std::move(identity)) {}  // NOLINT: implicit by design
  /// A refused token's reason.
  JwtResult(JwtError error) : error_(error) {}  // NOLINT: implicit by design

  /// True if the token was accepted: identity() may then be called, error() means nothing.
  bool ok() const noexcept { return identity_.has_value(); }
  /// ok().
  explicit operator bool() const noexcept { return ok(); }
  /// The holder; only when ok().
  const JwtIdentity& identity() const { return *identity_; }
  /// The holder, to move from; only when ok().
  JwtIdentity& identity() { return *identity_; }
  /// Why the token was refused; only when !ok().
  JwtError error() const noexcept { return error_; }

 private:
  std::optional<JwtIdentity> identity_;
  JwtError error_ = JwtError::malformed;
};

/// Tokens longer than this are refused as malformed without further work.
inline constexpr std::size_t kMaxJwtBytes = 8 * 1024;

/// Verifies compact-serialised JWS tokens signed with HMAC-SHA256. Only
/// `alg: HS256` is accepted: `none` and every other algorithm are refused
/// before the signature is looked at, so a token cannot choose how it is
/// checked. The signature is compared in constant time. `exp` is required;
/// `nbf` is honoured when present; a JSON object naming a member twice is
/// malformed (another reader could take the other value).
///
/// Stateless after construction and cheap (one HMAC and two small JSON
/// parses): verify() may be called from any number of threads at once on one
/// verifier. It does no I/O and keeps no reference to its arguments.
class JwtVerifier {
 public:
  /// Takes the policy by value; the verifier owns its copy of the secret.
  explicit JwtVerifier(JwtPolicy policy) : policy_(std::move(policy)) {}

  /// Checks `token` (the compact form, `header.payload.signature`) at the
  /// time `now_ms` (Unix milliseconds). Never throws on any input.
  JwtResult verify(std::string_view token, std::int64_t now_ms) const;

  /// The policy it checks by (the secret included: do not log it).
  const JwtPolicy& policy() const noexcept { return policy_; }

 private:
  JwtPolicy policy_;
};

/// Decodes unpadded base64url (RFC 4648 §5) strictly: no padding, no other
/// characters, no stray bits, so each byte string has one encoding. nullopt
/// on any deviation. A plain function: any thread.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace nudge
