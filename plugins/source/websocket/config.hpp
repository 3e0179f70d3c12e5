#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::websocket {

/// Shortest HS256 key accepted: the hash's size (RFC 7518 section 3.2).
inline constexpr std::size_t kMinSecretBytes = 32;

struct WebSocketConfig {
  std::string host;
  std::uint16_t port = 0;
  std::string static_dir;
  std::string path;
  std::int64_t max_message_bytes = 0;
  std::int64_t max_connections = 0;
  std::int64_t handshake_timeout_ms = 0;
  std::int64_t idle_timeout_ms = 0;
  std::int64_t max_send_queue = 0;
  std::int64_t max_send_queue_bytes = 0;
  std::int64_t write_timeout_ms = 0;
  double rate_limit_per_second = 0;
  std::int64_t rate_limit_burst = 0;
  std::int64_t rate_limit_strikes = 0;
  std::int64_t max_connections_per_address = 0;
  std::int64_t max_sockets_per_address = 0;
  double connection_rate_per_address = 0;
  std::int64_t connection_burst_per_address = 0;
  double http_request_rate_per_address = 0;
  std::int64_t http_request_burst_per_address = 0;
  double sender_rate_limit_per_second = 0;
  std::int64_t sender_rate_limit_burst = 0;
  /// 0: from the process's open-file limit (Hub::max_sockets).
  std::int64_t max_sockets = 0;
  std::int64_t max_rooms_per_connection = 0;
  std::int64_t max_rooms_per_address = 0;
  std::int64_t max_rooms = 0;
  std::vector<std::string> allowed_origins;
  std::vector<std::string> trusted_proxies;
  std::int64_t resend_window_ms = 0;
  std::int64_t resend_max_entries = 0;

  // Token authentication (off when both secret keys are empty).
  std::string auth_jwt_secret;
  std::string auth_jwt_secret_file;
  std::int64_t auth_leeway_ms = 0;
  std::string auth_issuer;
  std::string auth_audience;
  std::string auth_identity_claim;
  bool auth_close_on_expiry = true;

  // TLS on the listener (off when both are empty).
  std::string tls_cert_file;
  std::string tls_key_file;

  // Socket.IO at socketio_path, history and catching up.
  bool socketio = true;
  std::string socketio_path;
  std::int64_t ping_interval_ms = 0;
  std::int64_t ping_timeout_ms = 0;
  std::string socketio_default_room;
  std::int64_t history_messages = 0;
  std::int64_t catch_up_max_messages = 0;
  std::int64_t max_history_reads = 0;
  std::int64_t history_buffer_bytes = 0;

  // Presence (when the fanout keeps it) and ephemeral messages.
  bool presence_events = true;
  std::int64_t presence_events_max_room = 0;
  std::int64_t max_presence_members = 0;
  std::int64_t max_presence_reads = 0;
  std::int64_t presence_read_timeout_ms = 0;

  bool auth_enabled() const noexcept { return !auth_jwt_secret.empty() || !auth_jwt_secret_file.empty(); }
  bool tls_enabled() const noexcept { return !tls_cert_file.empty() || !tls_key_file.empty(); }

  static ConfigSchema schema();
  /// Reads a validated Config. Throws std::invalid_argument listing every
  /// problem() when keys that go together disagree.
  static WebSocketConfig from(const Config& config);
  /// Takes the values of the live keys (declared reloadable() in schema())
  /// from `next`; the others stay as they are.
  void apply_live(const WebSocketConfig& next);
  /// What is wrong between keys that each passed the schema (TLS cert without
  /// key, two sources for the secret), one sentence each; empty when fine.
  std::vector<std::string> problems() const;
};

}  // namespace nudge::plugins::websocket
