#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nudge/sdk/message.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge::plugins::http {

/// Remembers, per (caller, idempotency key), the id given to a publish and
/// how it ended, for `window` after its last use: a resend to this instance
/// gets the first id — at once when it is durable, when the first attempt
/// ends while that is in flight, or by publishing again under the same id
/// (stored once by the sinks) when the first attempt failed.
///
/// A smaller cousin of the websocket source's ResendCache (kept apart: a
/// plugin includes only the SDK, and this one has no per-owner shares, as
/// its callers are a few configured API keys). At most `max_entries`:
/// a new key evicts the least recently used settled entry; while every
/// entry is in flight a new key is refused (busy). Time is passed in. Not
/// thread-safe: the source's event loop owns it.
class IdempotencyCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Waiter = std::function<void(const Status&, const MessageId&)>;

  enum class Outcome {
    publish,        ///< publish with `id` (new, or a retry of a failed attempt)
    already_acked,  ///< durable already: answer with `id`, publish nothing
    waiting,        ///< the first attempt is in flight: the waiter will be told
    conflict,       ///< the key was used for another room or text
    busy,           ///< too many resends wait on this key, or max_entries are in flight
  };
  struct Claim {
    Outcome outcome;
    MessageId id;
  };

  /// Resends of one in-flight key that may wait for its outcome.
  static constexpr std::size_t kMaxWaiters = 16;

  IdempotencyCache(Clock::duration window, std::size_t max_entries) : window_(window), max_entries_(max_entries) {}

  /// Looks `key` up (a caller's scope and its idempotency key, joined).
  /// `content` tells what is sent (content_of), `fresh_id` is the id for a
  /// key not seen before; `waiter` is kept only for Outcome::waiting.
  Claim claim(const std::string& key, std::uint64_t content, const MessageId& fresh_id, Clock::time_point now,
              Waiter waiter);
  /// Records how the attempt published for `key` ended and tells those waiting.
  void settle(const std::string& key, const Status& status, Clock::time_point now);

  static std::uint64_t content_of(std::string_view room, std::string_view text) noexcept;
  std::size_t size() const noexcept { return entries_.size(); }

 private:
  enum class State { in_flight, acked, failed };
  struct Entry {
    MessageId id;
    std::uint64_t content = 0;
    State state = State::in_flight;
    Clock::time_point last_used;
    std::vector<Waiter> waiters;
    std::list<std::string>::iterator order;
  };
  void touch(Entry& entry, Clock::time_point now);
  /// Drops settled entries unused for `window`, then, if still full, the least recently used settled one.
  bool make_room(Clock::time_point now);

  Clock::duration window_;
  std::size_t max_entries_;
  std::unordered_map<std::string, Entry> entries_;
  /// Keys by last use, least recent first.
  std::list<std::string> order_;
};

}  // namespace nudge::plugins::http
