#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct redisReply;

namespace nudge::plugins::redis::cluster {

constexpr std::uint16_t kSlots = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the checksum the Redis
/// Cluster specification hashes keys with. crc16("123456789") == 0x31C3.
std::uint16_t crc16(std::string_view data) noexcept;

/// The slot of `key` as Redis Cluster computes it: CRC16 of the hash tag
/// (the text between the first '{' and the first '}' after it, when that is
/// not empty) or else of the whole key, modulo 16384.
std::uint16_t key_slot(std::string_view key) noexcept;

/// `prefix{room}suffix`: every name made for one room by this shares the
/// room's slot, as long as `prefix` has no '{' (the config checks that).
std::string tagged(std::string_view prefix, std::string_view room, std::string_view suffix = {});

/// One master and the slots it serves, from CLUSTER SHARDS.
struct Shard {
  std::string address;                                          // host:port of the master, as clients reach it
  std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges;  // inclusive
};

/// Reads the reply of CLUSTER SHARDS (Redis 7.0+, RESP2: a list of
/// flattened maps). For each shard the master that is not marked failed;
/// shards without one (during a failover) or without slots are left out.
/// Returns false and says why in `error` for a reply of another shape.
bool parse_shards(const redisReply* reply, std::vector<Shard>& out, std::string& error);

/// `-MOVED 3999 127.0.0.1:6381` / `-ASK 3999 127.0.0.1:6381`: the slot and
/// where to go. False for any other error text.
struct Redirect {
  bool ask = false;
  std::uint16_t slot = 0;
  std::string address;
};
bool parse_redirect(std::string_view error, Redirect& out);

}  // namespace nudge::plugins::redis::cluster
