#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::nats {

/// One server of the `url` list.
struct NatsServer {
  /// The URL as written (handed to libnats, which parses it again).
  std::string url;
  std::string host;
  std::uint16_t port = 4222;
  bool has_credentials = false;

  /// `host:port` for log lines (never the credentials).
  std::string endpoint() const;
};

/// Parses `nats://[user[:password]@]host[:port]`, or a comma-separated list
/// of those (one cluster). The host may be an IPv6 literal in brackets; the
/// port defaults to 4222. Returns false and says what is wrong in `error`.
/// Does no I/O (names are resolved on connect).
bool parse_nats_urls(std::string_view text, std::vector<NatsServer>& out, std::string& error);

/// `nats://host:port` with any `user:password@` taken out, for log lines.
std::string redact_url(std::string_view url);

/// Checks a literal NATS subject: tokens separated by '.', none empty, no
/// wildcard ('*', '>'), only printable ASCII without spaces. With
/// `as_prefix`, the text may be empty or end with '.' (a room token follows).
/// Returns "" when valid, else what is wrong.
std::string check_subject(std::string_view subject, bool as_prefix);

/// The single subject token a room maps to: A-Z a-z 0-9 '_' '-' stay, every
/// other byte (so '.', ':', '%', '*', '>', whitespace, non-ASCII) becomes
/// '%' and two upper-case hex digits, and the empty room becomes "%". The
/// mapping is one-to-one and never yields '.', '*', '>' or whitespace, so a
/// room is always exactly one literal token.
std::string room_token(std::string_view room);

struct NatsConfig {
  std::string url_text;
  std::vector<NatsServer> servers;
  /// Set when a value did not pass its check (only possible when the schema
  /// was bypassed); start() fails with it.
  std::string error;
  std::string subject;
  bool subject_per_room = false;
  std::string subject_prefix;
  std::int64_t reconnect_wait_ms = 500;
  std::int64_t reconnect_buffer_bytes = 8 * 1024 * 1024;
  std::int64_t presence_ttl_ms = 15000;
  std::int64_t max_presence_per_room = 1000;
  std::int64_t connect_timeout_ms = 2000;
  std::int64_t max_pending_messages = 65536;

  static ConfigSchema schema();
  /// Reads a validated Config. Never throws on a bad value: see error.
  static NatsConfig from(const Config& config);

  /// The subject a message for `room` is published on.
  std::string subject_for(std::string_view room) const;
  /// "host:port" of every server, comma-separated, for log lines.
  std::string endpoints() const;
};

}  // namespace nudge::plugins::nats
