#include "config.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

#include "nudge/sdk/url.hpp"

namespace nudge::plugins::redis {

namespace {

template <class Int>
bool parse_decimal(std::string_view text, Int& value) {
  if (text.empty()) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string non_empty(const ConfigValue& v) {
  return std::get<std::string>(v).empty() ? std::string("must not be empty") : std::string();
}

}  // namespace

std::string RedisUrl::endpoint() const { return join_host_port(host, port); }

bool parse_redis_url(std::string_view text, RedisUrl& out, std::string& error) {
  constexpr std::string_view kForm = "must be redis://[:password@]host[:port][/db]";
  static const ServerUrlForm form{{"redis"}, true, 6379, true, false, false};
  UrlError why;
  const auto url = parse_server_url(text, form, why);
  if (!url) {
    using Part = UrlError::Part;
    switch (why.part) {
      case Part::scheme:
        error = why.text == "rediss" ? "TLS (rediss://) is not supported by this plugin; use redis://"
                                     : std::string(kForm) + " (it does not start with redis://)";
        return false;
      case Part::empty:
        error = std::string(kForm) + " (it does not start with redis://)";
        return false;
      case Part::path:
        error = std::string(kForm) + " (the database after '/' must be a non-negative number)";
        return false;
      case Part::port:
      case Part::userinfo:
      case Part::host_empty:
      case Part::host_name:
      case Part::ipv6:
      case Part::port_empty:
      case Part::path_not_allowed:
      case Part::query_not_allowed:
      case Part::query:
        error = std::string(kForm) + " (" + why.describe() + ")";
        return false;
    }
  }
  RedisUrl parsed;
  parsed.host = url->host;
  parsed.port = url->port;
  if (url->has_userinfo) {
    if (!url->has_password) {
      error = std::string(kForm) + " (the part before '@' must be ':password' or 'user:password')";
      return false;
    }
    if (url->password.empty()) {
      error = std::string(kForm) + " (the password after ':' is empty)";
      return false;
    }
    parsed.username = url->user;
    parsed.password = url->password;
    parsed.has_password = true;
  }
  if (!url->path.empty()) {
    std::int64_t db = 0;
    if (!parse_decimal(url->path, db) || db > std::numeric_limits<std::int32_t>::max()) {
      error = std::string(kForm) + " (the database after '/' must be a non-negative number)";
      return false;
    }
    parsed.db = db;
  }
  out = std::move(parsed);
  return true;
}

ConfigSchema RedisConfig::schema() {
  ConfigSchema s;
  s.string("url", "redis://127.0.0.1:6379",
           "Redis server as redis://[:password@]host[:port][/db] (also user:password@ for an ACL user; "
           "percent-encode special characters in the password). Names are resolved on each connect")
      .with_example("\"redis://:s3cret@redis.internal:6379/0\"")
      .with_check([](const ConfigValue& v) {
        RedisUrl url;
        std::string error;
        return parse_redis_url(std::get<std::string>(v), url, error) ? std::string() : error;
      });
  s.string("channel", "nudge:messages",
           "Pub/Sub channel every instance publishes to and subscribes to (when channel_per_room is false)")
      .with_check(non_empty);
  s.boolean("channel_per_room", false,
            "Publish each message on <channel_prefix><room> and subscribe only to the rooms this instance has "
            "clients in, instead of one shared channel");
  s.string("channel_prefix", "nudge:room:", "Prefix of the per-room channels (when channel_per_room is true)");
  s.integer("reconnect_initial_ms", 100, "First delay before reconnecting after a lost connection or a failed connect")
      .range(1, 600000);
  s.integer("reconnect_max_ms", 5000, "Largest delay between reconnect attempts (the delay doubles up to this)")
      .range(1, 3600000);
  s.integer("max_pending_publishes", 10000,
            "Messages held while the publishing connection is down or behind; beyond this the oldest are dropped")
      .range(1, 10000000);
  s.integer("max_pending_bytes", 64 * 1024 * 1024,
            "Bytes of messages the fanout may hold for Redis: waiting to be sent, sent and not yet answered, and "
            "waiting for the recent window; beyond this the oldest waiting messages are dropped")
      .range(1024, std::int64_t{1} << 40);
  s.integer("reply_timeout_ms", 10000,
            "How long the publishing connection may leave a command unanswered before it is dropped and "
            "reconnected (a Redis that hangs with the connection open); 0 waits forever")
      .range(0, 3600000);
  s.integer("connect_timeout_ms", 2000, "How long one connection attempt (TCP connect and login) may take")
      .range(10, 600000);
  s.integer("recent_messages", 1000,
            "Messages kept per room in a Redis stream (<recent_key_prefix><room>), so a client reconnecting to "
            "any instance catches up from Redis; 0 keeps none")
      .range(0, 1000000);
  s.integer("recent_max_room_bytes", 1024 * 1024,
            "Bytes a room's stream may take in Redis (MEMORY USAGE; an almost empty one takes 4.7 KB); beyond it "
            "the room's oldest messages go")
      .range(16384, std::int64_t{1} << 40);
  s.integer("recent_max_bytes", 128 * 1024 * 1024,
            "Bytes the recent window may take in Redis over all rooms (each room's stream by MEMORY USAGE, plus "
            "256 bytes and 4 times its name per room and 128 KiB in all for the index); beyond it the least "
            "recently active rooms are deleted whole")
      .range(1024 * 1024, std::int64_t{1} << 40);
  s.integer("recent_max_rooms", 10000,
            "Rooms the recent window may hold; beyond it the least recently active rooms are deleted whole")
      .range(1, 10000000);
  s.string("recent_key_prefix", "nudge:recent:",
           "Prefix of the per-room streams of recent messages and of the window's index (<prefix>~rooms) and "
           "counts (<prefix>~meta)");
  s.integer("recent_ttl_s", 86400, "A room's recent messages are deleted this long after its last message")
      .range(1, 365 * 86400);
  s.boolean("cluster", false,
            "Redis Cluster mode: url (and cluster_seeds) name nodes the topology is read from (CLUSTER SHARDS); "
            "each room's channel and recent-window keys carry the room as a hash tag, so they live on one shard, "
            "and messages go by sharded Pub/Sub (SPUBLISH/SSUBSCRIBE, Redis 7.0+) to the shard that owns the room");
  s.string_list("cluster_seeds", {},
                "More cluster nodes as host:port, tried for the topology when url's node does not answer (only "
                "with cluster)")
      .with_example("[\"10.0.0.2:6379\", \"10.0.0.3:6379\"]")
      .with_check([](const ConfigValue& v) {
        for (const auto& seed : std::get<std::vector<std::string>>(v)) {
          std::string host;
          std::uint16_t port = 0;
          if (!parse_host_port(seed, host, port) || port == 0) return "must be host:port, got \"" + seed + "\"";
        }
        return std::string();
      });
  s.integer("presence_ttl_ms", 15000,
            "How long a presence member lives in Redis without a refresh. Each instance refreshes its members every "
            "third of it and sweeps expired ones every sixth, so the members of an instance that dies leave "
            "everyone's list within presence_ttl_ms plus a sixth")
      .range(300, 3600000);
  s.integer("max_presence_per_room", 1000,
            "Members a presence list names at most; beyond it the list carries only their count")
      .range(1, 1000000);
  s.string("presence_key_prefix", "nudge:presence:",
           "Prefix of the per-room sorted sets of presence members (<prefix><room>; <prefix>{<room>} in cluster "
           "mode)");
  return s;
}

RedisConfig RedisConfig::from(const Config& c) {
  RedisConfig r;
  r.url_text = c.get_string("url");
  if (!parse_redis_url(r.url_text, r.url, r.url_error)) r.url = RedisUrl{};
  r.channel = c.get_string("channel");
  r.channel_per_room = c.get_bool("channel_per_room");
  r.channel_prefix = c.get_string("channel_prefix");
  r.reconnect_initial_ms = c.get_int("reconnect_initial_ms");
  // A ceiling below the first delay would make no sense: the first delay wins.
  r.reconnect_max_ms = std::max(c.get_int("reconnect_max_ms"), r.reconnect_initial_ms);
  r.max_pending_publishes = c.get_int("max_pending_publishes");
  r.max_pending_bytes = c.get_int("max_pending_bytes");
  r.reply_timeout_ms = c.get_int("reply_timeout_ms");
  r.connect_timeout_ms = c.get_int("connect_timeout_ms");
  r.recent_messages = c.get_int("recent_messages");
  r.recent_max_bytes = c.get_int("recent_max_bytes");
  // A room may not hold more than the whole window.
  r.recent_max_room_bytes = std::min(c.get_int("recent_max_room_bytes"), r.recent_max_bytes);
  r.recent_max_rooms = c.get_int("recent_max_rooms");
  r.recent_key_prefix = c.get_string("recent_key_prefix");
  r.recent_ttl_s = c.get_int("recent_ttl_s");
  r.cluster = c.get_bool("cluster");
  r.cluster_seeds = c.get_strings("cluster_seeds");
  r.presence_ttl_ms = c.get_int("presence_ttl_ms");
  r.max_presence_per_room = c.get_int("max_presence_per_room");
  r.presence_key_prefix = c.get_string("presence_key_prefix");
  return r;
}

std::string RedisConfig::channel_for(std::string_view room) const {
  if (!channel_per_room) return channel;
  std::string name;
  name.reserve(channel_prefix.size() + room.size() + 2);
  name += channel_prefix;
  if (cluster) name += '{';
  name += room;
  if (cluster) name += '}';
  return name;
}

std::string RedisConfig::check() const {
  if (!cluster) return {};
  // A '{' in a prefix would make it, not the room, the hash tag: every room
  // on one slot, or a room's channel and keys on different slots.
  if (channel_per_room && channel_prefix.find('{') != std::string::npos)
    return "channel_prefix: must not contain '{' with cluster = true (the room is the hash tag), got \"" +
           channel_prefix + "\"";
  if (recent_messages > 0 && recent_key_prefix.find('{') != std::string::npos)
    return "recent_key_prefix: must not contain '{' with cluster = true (the room is the hash tag), got \"" +
           recent_key_prefix + "\"";
  if (presence_key_prefix.find('{') != std::string::npos)
    return "presence_key_prefix: must not contain '{' with cluster = true (the room is the hash tag), got \"" +
           presence_key_prefix + "\"";
  return {};
}

}  // namespace nudge::plugins::redis
