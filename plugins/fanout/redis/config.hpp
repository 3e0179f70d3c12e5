#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::redis {

/// Where a Redis server is and how to log in, from a `redis://` URL.
struct RedisUrl {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  /// Empty for servers without authentication (or the default user).
  std::string username;
  std::string password;
  bool has_password = false;
  std::int64_t db = 0;

  /// `host:port` for log lines (never the password).
  std::string endpoint() const;
};

/// Parses `redis://[[user]:password@]host[:port][/db]`; the host may be an
/// IPv6 literal in brackets, user and password may be percent-encoded.
/// Returns false and says what is wrong in `error` when the text is not of
/// that form. Does no I/O (names are resolved on connect).
bool parse_redis_url(std::string_view text, RedisUrl& out, std::string& error);

struct RedisConfig {
  std::string url_text;
  RedisUrl url;
  /// Set when `url` did not parse (only possible when the schema was bypassed).
  std::string url_error;
  std::string channel;
  bool channel_per_room = false;
  std::string channel_prefix;
  std::int64_t reconnect_initial_ms = 100;
  std::int64_t reconnect_max_ms = 5000;
  std::int64_t max_pending_publishes = 10000;
  std::int64_t max_pending_bytes = 64 * 1024 * 1024;
  std::int64_t reply_timeout_ms = 10000;
  std::int64_t connect_timeout_ms = 2000;
  std::int64_t recent_messages = 1000;
  /// Never above recent_max_bytes.
  std::int64_t recent_max_room_bytes = 1024 * 1024;
  std::int64_t recent_max_bytes = 128 * 1024 * 1024;
  std::int64_t recent_max_rooms = 10000;
  std::string recent_key_prefix;
  std::int64_t recent_ttl_s = 86400;
  /// Redis Cluster: `url` (and `cluster_seeds`) are where the topology is first read.
  bool cluster = false;
  std::vector<std::string> cluster_seeds;  // host:port
  std::int64_t presence_ttl_ms = 15000;
  std::int64_t max_presence_per_room = 1000;
  std::string presence_key_prefix;

  static ConfigSchema schema();
  /// Reads a validated Config. Never throws on a bad URL: see url_error.
  static RedisConfig from(const Config& config);

  /// The channel a message for `room` is published on; in cluster mode the
  /// room is a hash tag (`<channel_prefix>{<room>}`), so the channel lives in
  /// the slot of the room's recent-window keys.
  std::string channel_for(std::string_view room) const;
  /// What is wrong with the combination of keys (a prefix with '{' in
  /// cluster mode); empty when nothing is.
  std::string check() const;
};

}  // namespace nudge::plugins::redis
