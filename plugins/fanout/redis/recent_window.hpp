#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/message.hpp"

struct redisReply;

namespace nudge::plugins::redis::recent {

/// The Lua script that appends one batch to the recent window and keeps it
/// within its bounds, atomically (EVAL/EVALSHA). Its arguments, in order:
///
///   prefix, recent_messages, max room bytes, max bytes, max rooms, ttl ms,
///   cut-all floor ("" for none), the number N of rooms to cut,
///   N × (room, floor), then (room, id, envelope) for each message.
///
/// Ids and floors are 32 lower-case hex digits (UUIDv7: time order). It
/// returns {appended, skipped, rooms evicted, bytes held, rooms held}.
std::string_view script();

/// The stream of `room`'s recent messages. A room whose name starts with '~'
/// gets another '~', so no room's stream is ever one of index_key/meta_key.
std::string stream_key(std::string_view prefix, std::string_view room);
/// In cluster mode, one room's own stream, index and counts:
/// `<prefix>{<room>}`, `<prefix>{<room>}~rooms`, `<prefix>{<room>}~meta`, all
/// in the room's slot (a script may touch one slot only). Passed as KEYS,
/// they make the script keep that room alone, so the window's bounds are
/// per room there (see the README).
std::array<std::string, 3> cluster_keys(std::string_view prefix, std::string_view room);
/// The sorted set of rooms by last activity (µs).
std::string index_key(std::string_view prefix);
/// The hash of each room's bytes ("b:<room>"), floor ("f:<room>"), the total
/// ("total") and the floor of every room ("floor").
std::string meta_key(std::string_view prefix);

/// The id as the script compares it: 32 lower-case hex digits.
std::string hex(const MessageId& id);

/// The messages of an XREVRANGE reply on a room's stream
/// (`[[stream id, ["m", envelope]], ...]`, newest first), oldest first.
/// Entries of another shape and envelopes that do not decode are skipped;
/// anything but an array gives none.
std::vector<MessagePtr> messages_of(const redisReply& reply);

/// What the script counts for a room beside what MEMORY USAGE says its
/// stream takes: its index member and its fields in the counts.
std::int64_t meta_cost(std::string_view room);
/// What it counts for the window beside its rooms: the index's and the
/// counts' hash tables.
constexpr std::int64_t kBaseCost = 131072;

}  // namespace nudge::plugins::redis::recent
