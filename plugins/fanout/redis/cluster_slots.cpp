#include "cluster_slots.hpp"

#include <charconv>

#include <hiredis/hiredis.h>

namespace nudge::plugins::redis::cluster {

namespace {

constexpr std::array<std::uint16_t, 256> make_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    table[i] = crc;
  }
  return table;
}
constexpr auto kTable = make_table();

std::string_view text(const redisReply* r) {
  if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return {};
  return {r->str, r->len};
}

/// The value of `key` in a RESP2 flattened map, or null.
const redisReply* field(const redisReply* map, std::string_view key) {
  if (!map || map->type != REDIS_REPLY_ARRAY) return nullptr;
  for (std::size_t i = 0; i + 1 < map->elements; i += 2)
    if (text(map->element[i]) == key) return map->element[i + 1];
  return nullptr;
}

}  // namespace

std::uint16_t crc16(std::string_view data) noexcept {
  std::uint16_t crc = 0;
  for (unsigned char c : data) crc = static_cast<std::uint16_t>((crc << 8) ^ kTable[((crc >> 8) ^ c) & 0xff]);
  return crc;
}

std::uint16_t key_slot(std::string_view key) noexcept {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & (kSlots - 1);
}

std::string tagged(std::string_view prefix, std::string_view room, std::string_view suffix) {
  std::string name;
  name.reserve(prefix.size() + room.size() + suffix.size() + 2);
  name += prefix;
  name += '{';
  name += room;
  name += '}';
  name += suffix;
  return name;
}

bool parse_shards(const redisReply* reply, std::vector<Shard>& out, std::string& error) {
  out.clear();
  if (!reply || reply->type != REDIS_REPLY_ARRAY) {
    error = "CLUSTER SHARDS did not answer a list";
    return false;
  }
  for (std::size_t s = 0; s < reply->elements; ++s) {
    const redisReply* slots = field(reply->element[s], "slots");
    const redisReply* nodes = field(reply->element[s], "nodes");
    if (!slots || !nodes || slots->type != REDIS_REPLY_ARRAY || nodes->type != REDIS_REPLY_ARRAY) {
      error = "a shard of CLUSTER SHARDS has no 'slots' or 'nodes' list";
      return false;
    }
    Shard shard;
    for (std::size_t i = 0; i + 1 < slots->elements; i += 2) {
      const redisReply* a = slots->element[i];
      const redisReply* b = slots->element[i + 1];
      if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER || a->integer < 0 || b->integer >= kSlots ||
          a->integer > b->integer) {
        error = "a slot range of CLUSTER SHARDS is not two slots";
        return false;
      }
      shard.ranges.emplace_back(static_cast<std::uint16_t>(a->integer), static_cast<std::uint16_t>(b->integer));
    }
    for (std::size_t n = 0; n < nodes->elements; ++n) {
      const redisReply* node = nodes->element[n];
      if (text(field(node, "role")) != "master" || text(field(node, "health")) == "failed") continue;
      const redisReply* port = field(node, "port");
      std::string_view host = text(field(node, "ip"));
      if (host.empty()) host = text(field(node, "endpoint"));
      if (!port || port->type != REDIS_REPLY_INTEGER || host.empty()) continue;
      const bool v6 = host.find(':') != std::string_view::npos;
      shard.address = (v6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" + std::to_string(port->integer);
      break;
    }
    if (!shard.address.empty() && !shard.ranges.empty()) out.push_back(std::move(shard));
  }
  return true;
}

bool parse_redirect(std::string_view error, Redirect& out) {
  Redirect r;
  if (error.substr(0, 6) == "MOVED ") {
    error.remove_prefix(6);
  } else if (error.substr(0, 4) == "ASK ") {
    error.remove_prefix(4);
    r.ask = true;
  } else {
    return false;
  }
  const auto space = error.find(' ');
  if (space == std::string_view::npos) return false;
  unsigned slot = 0;
  const auto [end, ec] = std::from_chars(error.data(), error.data() + space, slot);
  if (ec != std::errc() || end != error.data() + space || slot >= kSlots) return false;
  r.slot = static_cast<std::uint16_t>(slot);
  r.address = std::string(error.substr(space + 1));
  if (r.address.empty()) return false;
  out = std::move(r);
  return true;
}

}  // namespace nudge::plugins::redis::cluster
