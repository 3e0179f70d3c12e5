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

namespace nudge::plugins::websocket {

/// Remembers the outcome of every `send` that carried a `ref`, per sender,
/// for a while — so a client that resends after an error, a lost ack or a
/// reconnect does not create a second message: the resend is answered with
/// the first one's id, waits for it if it is still in flight, or (if the first
/// attempt failed) is published again under the same id, which the sinks
/// store once.
///
/// Entries live `window` after their last use and at most `max_entries` are
/// kept (oldest settled first); in-flight entries are never evicted, so while
/// `max_entries` are in flight a new ref is refused (busy), and one ref has
/// at most kMaxWaiters resends waiting on it.
/// Time is passed in, so tests drive it with any clock. Not thread-safe: the
/// source's event loop owns it.
class ResendCache {
 public:
  using Clock = std::chrono::steady_clock;
  /// Told how the in-flight attempt a resend waited on ended.
  using Waiter = std::function<void(const Status&, const MessageId&)>;

  enum class Outcome {
    publish,         ///< publish a message with `id` (new, or a retry of a failed attempt)
    already_acked,   ///< durable already: ack with `id`, publish nothing
    waiting,         ///< the first attempt is in flight: the waiter will be told
    conflict,        ///< same ref, different room or text: refuse
    busy,            ///< refuse for now: too many resends wait on this ref, or max_entries are in flight
  };
  struct Claim {
    Outcome outcome;
    MessageId id;
  };

  /// Resends of one in-flight ref that may wait for its outcome.
  static constexpr std::size_t kMaxWaiters = 16;

  ResendCache(Clock::duration window, std::size_t max_entries);
  /// A new bound (a reload); entries over it go as they settle.
  void set_max_entries(std::size_t max_entries) noexcept { max_entries_ = max_entries; }

  /// Looks up `ref` within `scope` (who is sending: a name, a token subject or
  /// a connection). `content` identifies what is sent (room and text) so a ref
  /// reused for something else is a conflict, not a silent duplicate.
  /// `fresh_id` is used for a ref not seen before; `waiter` is kept only for
  /// Outcome::waiting.
  Claim claim(std::string_view scope, std::string_view ref, std::uint64_t content, const MessageId& fresh_id,
              Clock::time_point now, Waiter waiter);

  /// Records how the attempt published for (`scope`, `ref`) ended and tells
  /// the resends that waited on it.
  void settle(std::string_view scope, std::string_view ref, const Status& status, Clock::time_point now);

  /// Hash of what a send carries, for claim()'s `content`.
  static std::uint64_t content_of(std::string_view room, std::string_view text) noexcept;

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  enum class State { in_flight, acked, failed };
  struct Entry {
    std::string key;
    MessageId id;
    std::uint64_t content = 0;
    State state = State::in_flight;
    Clock::time_point last_used;
    std::vector<Waiter> waiters;
  };
  using Order = std::list<Entry>;

  static std::string make_key(std::string_view scope, std::string_view ref);
  void touch(Order::iterator it, Clock::time_point now);
  /// Drops expired entries, and settled ones while more than max_entries
  /// less `room_for` are kept.
  void evict(Clock::time_point now, std::size_t room_for = 0);

  Clock::duration window_;
  std::size_t max_entries_;
  Order order_;  ///< least recently used first
  std::unordered_map<std::string_view, Order::iterator> entries_;  ///< views into Entry::key
};

}  // namespace nudge::plugins::websocket
