#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::http {

/// Shortest API key accepted: guessing one must be hopeless.
inline constexpr std::size_t kMinApiKeyBytes = 16;
/// Shortest HS256 key accepted: the hash's size (RFC 7518 section 3.2).
inline constexpr std::size_t kMinJwtSecretBytes = 32;

struct HttpConfig {
  /// Empty: the source is off (it takes nothing in and is ready).
  std::string host;
  std::uint16_t port = 0;
  bool enabled = true;
  std::vector<std::string> api_keys;
  bool allow_anonymous = false;
  /// HS256 tokens as an alternative to keys (off when empty).
  std::string jwt_secret;
  std::int64_t jwt_leeway_ms = 0;
  std::string jwt_issuer;
  std::string jwt_audience;
  std::string jwt_identity_claim;
  std::string default_sender;
  std::int64_t max_body_bytes = 0;
  std::int64_t max_header_bytes = 0;
  std::int64_t max_batch_messages = 0;
  std::int64_t max_connections = 0;
  std::int64_t max_connections_per_address = 0;
  std::int64_t max_requests_in_flight = 0;
  std::int64_t header_timeout_ms = 0;
  std::int64_t body_timeout_ms = 0;
  std::int64_t write_timeout_ms = 0;
  double rate_limit_per_second = 0;
  std::int64_t rate_limit_burst = 0;
  std::int64_t idempotency_window_ms = 0;
  std::int64_t idempotency_max_entries = 0;

  static ConfigSchema schema();
  /// Reads a validated Config. Throws std::invalid_argument listing every
  /// problem when keys that go together disagree (no authentication at all).
  static HttpConfig from(const Config& config);
};

}  // namespace nudge::plugins::http
