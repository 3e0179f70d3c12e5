#include "recent_window.hpp"

#include <hiredis/hiredis.h>

#include "cluster_slots.hpp"

namespace nudge::plugins::redis::recent {

namespace {

// A room counts what MEMORY USAGE says its stream takes, measured after each
// call that touched it, plus 256 bytes and four times its name for its
// member of the index and its fields in the counts (a skiplist node and
// dict entry, two hash entries: 160 bytes and three names at 1,000 rooms,
// measured on Redis 7.0); the window as a whole 128 KiB more for those two
// keys' hash tables, which do not shrink at once. The integration tests
// compare the sum with MEMORY USAGE of every key of the window.
constexpr std::string_view kScript = R"lua(
local P = ARGV[1]
local max_messages = tonumber(ARGV[2])
local max_room_bytes = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local max_rooms = tonumber(ARGV[5])
local ttl_ms = tonumber(ARGV[6])
-- In cluster mode the caller names one room's three keys (KEYS), all in
-- the room's slot: the script then keeps that room alone.
local index = KEYS[2] or (P .. '~rooms')
local meta = KEYS[3] or (P .. '~meta')

-- Activity in microseconds, plus the place in this call, so the rooms of
-- one call are ordered too.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local seq = 0
local total = tonumber(redis.call('HGET', meta, 'total')) or 0
local floor_all = redis.call('HGET', meta, 'floor')
local appended, skipped, evicted = 0, 0, 0

local function key_of(room)
  if KEYS[1] then return KEYS[1] end
  if string.byte(room, 1) == 126 then return P .. '~' .. room end
  return P .. room
end
-- a > b for two ids of 32 hex digits, compared as numbers: Redis compares
-- strings with the locale's collation.
local function newer(a, b)
  for i = 1, 25, 8 do
    local x, y = tonumber(string.sub(a, i, i + 7), 16), tonumber(string.sub(b, i, i + 7), 16)
    if x ~= y then return x > y end
  end
  return false
end
local function latest(a, b)
  if not a then return b end
  if not b or newer(a, b) then return a end
  return b
end
local function meta_cost(room) return 256 + 4 * #room end
-- The index's and the counts' own tables, which keep the size they grew to
-- when a call touched many rooms at once (up to 2,000 more than are held).
local base = 131072
local function usage(key) return tonumber(redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) or 0 end

-- Forgets a room: its stream, its bytes, its floor, its place in the index.
local function drop(room)
  total = total - (tonumber(redis.call('HGET', meta, 'b:' .. room)) or 0)
  redis.call('DEL', key_of(room))
  redis.call('HDEL', meta, 'b:' .. room, 'f:' .. room)
  redis.call('ZREM', index, room)
end

local rooms, order = {}, {}
local function state(room)
  local s = rooms[room]
  if s then return s end
  local v = redis.call('HMGET', meta, 'b:' .. room, 'f:' .. room)
  s = {key = key_of(room), counted = tonumber(v[1]) or 0, floor = v[2], last = 0}
  rooms[room] = s
  order[#order + 1] = room
  return s
end

-- Cuts: a message may be missing from these windows, so what they hold
-- before it must not answer alone. The stream goes, and the floor keeps out
-- a message older than the missing one that arrives late.
local i = 9
if ARGV[7] ~= '' then
  floor_all = latest(ARGV[7], floor_all)
  redis.call('HSET', meta, 'floor', floor_all)
  for _, room in ipairs(redis.call('ZRANGE', index, 0, -1)) do drop(room) end
end
for _ = 1, tonumber(ARGV[8]) do
  local s = state(ARGV[i])
  seq = seq + 1
  s.last = seq
  redis.call('DEL', s.key)
  s.floor = latest(ARGV[i + 1], s.floor)
  i = i + 2
end

while i <= #ARGV do
  local room, id, envelope = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local s = state(room)
  i = i + 3
  seq = seq + 1
  s.last = seq
  local floor = latest(s.floor, floor_all)
  if floor and not newer(id, floor) then
    skipped = skipped + 1
  else
    local r = redis.pcall('XADD', s.key, '*', 'm', envelope)
    if type(r) == 'table' and r.err then
      -- Refused (the key is not a stream, or out of memory): the window
      -- misses this message, so it is cut here, like a message dropped
      -- before it reached Redis.
      redis.call('DEL', s.key)
      s.floor = latest(id, s.floor)
      skipped = skipped + 1
    else
      appended = appended + 1
    end
  end
end

for _, room in ipairs(order) do
  local s = rooms[room]
  local len = redis.call('XLEN', s.key)
  if len > max_messages then
    redis.call('XTRIM', s.key, 'MAXLEN', max_messages)
    len = max_messages
  end
  -- Then the oldest go while the stream takes more than its share. Only
  -- whole nodes free memory, so this may take a few rounds.
  local used = usage(s.key)
  while used > max_room_bytes and len > 0 do
    local n = math.max(1, math.ceil((used - max_room_bytes) * len / used))
    if n >= len then
      redis.call('DEL', s.key)
      len, used = 0, 0
    else
      len = len - n
      redis.call('XTRIM', s.key, 'MAXLEN', len)
      used = usage(s.key)
    end
  end
  redis.call('PEXPIRE', s.key, ttl_ms)
  local counted = used + meta_cost(room)
  total = total + counted - s.counted
  redis.call('ZADD', index, now + s.last, room)
  redis.call('HSET', meta, 'b:' .. room, counted)
  if s.floor then redis.call('HSET', meta, 'f:' .. room, s.floor) end
end

-- Rooms idle for the ttl, then the least recently active while over a cap.
for _, room in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now - ttl_ms * 1000, 'LIMIT', 0, 100)) do
  drop(room)
  evicted = evicted + 1
end
local count = redis.call('ZCARD', index)
while count > 0 and (base + total > max_bytes or count > max_rooms) do
  drop(redis.call('ZRANGE', index, 0, 0)[1])
  count = count - 1
  evicted = evicted + 1
end
if count == 0 then total = 0 end

redis.call('HSET', meta, 'total', total)
redis.call('PEXPIRE', meta, ttl_ms)
redis.call('PEXPIRE', index, ttl_ms)
return {appended, skipped, evicted, base + total, count}
)lua";

}  // namespace

std::string_view script() { return kScript; }

std::string stream_key(std::string_view prefix, std::string_view room) {
  std::string key;
  key.reserve(prefix.size() + room.size() + 1);
  key += prefix;
  if (!room.empty() && room.front() == '~') key += '~';
  key += room;
  return key;
}

std::array<std::string, 3> cluster_keys(std::string_view prefix, std::string_view room) {
  return {cluster::tagged(prefix, room), cluster::tagged(prefix, room, "~rooms"),
          cluster::tagged(prefix, room, "~meta")};
}

std::string index_key(std::string_view prefix) { return std::string(prefix) + "~rooms"; }
std::string meta_key(std::string_view prefix) { return std::string(prefix) + "~meta"; }

std::string hex(const MessageId& id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (std::size_t i = 0; i < 16; ++i) {
    out[2 * i] = kDigits[id.bytes()[i] >> 4];
    out[2 * i + 1] = kDigits[id.bytes()[i] & 0xf];
  }
  return out;
}

std::int64_t meta_cost(std::string_view room) { return 256 + 4 * static_cast<std::int64_t>(room.size()); }

std::vector<MessagePtr> messages_of(const redisReply& reply) {
  std::vector<MessagePtr> messages;
  if (reply.type != REDIS_REPLY_ARRAY) return messages;
  for (std::size_t i = reply.elements; i-- > 0;) {
    const redisReply* entry = reply.element[i];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) continue;
    const redisReply* fields = entry->element[1];
    if (fields->type != REDIS_REPLY_ARRAY || fields->elements < 2) continue;
    const redisReply* payload = fields->element[1];
    if (payload->type != REDIS_REPLY_STRING) continue;
    std::shared_ptr<Message> message;
    if (decode_envelope(std::string_view(payload->str, payload->len), message).ok())
      messages.push_back(std::move(message));
  }
  return messages;
}

}  // namespace nudge::plugins::redis::recent
