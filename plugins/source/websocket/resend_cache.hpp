#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <set>
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
/// kept. Each entry belongs to an owner (the sender's address, or its token's
/// subject); when the cache is full, the owner holding the most entries
/// gives up its oldest settled one — so a flood of new refs from a few
/// owners, or many, evicts the flood first, and a sender with a few recent
/// refs keeps them until the cache holds as many owners as entries.
/// In-flight entries are never evicted, so while `max_entries` are in flight
/// a new ref is refused (busy), and one ref has at most kMaxWaiters resends
/// waiting on it.
/// Time is passed in, so tests drive it with any clock. Not thread-safe: the
/// source's event loop owns it.
class ResendCache {
 public:
  using Clock = std::chrono::steady_clock;
  /// Told how the in-flight attempt a resend waited on ended.
  using Waiter = std::function<void(const Status&, const MessageId&)>;

  enum class Outcome {
    publish,        ///< publish a message with `id` (new, or a retry of a failed attempt)
    already_acked,  ///< durable already: ack with `id`, publish nothing
    waiting,        ///< the first attempt is in flight: the waiter will be told
    conflict,       ///< same ref, different room or text: refuse
    busy,           ///< refuse for now: too many resends wait on this ref, or max_entries are in flight
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
  /// `owner`: whose share of the cache a new entry counts in (empty: the scope).
  Claim claim(std::string_view scope, std::string_view ref, std::uint64_t content, const MessageId& fresh_id,
              Clock::time_point now, Waiter waiter, std::string_view owner = {});

  /// Records how the attempt published for (`scope`, `ref`) ended and tells
  /// the resends that waited on it.
  void settle(std::string_view scope, std::string_view ref, const Status& status, Clock::time_point now);

  /// Whether (`scope`, `ref`) is remembered now: in flight, or settled less
  /// than the window ago. Changes nothing (an ephemeral send asks, and is not
  /// remembered itself).
  bool remembers(std::string_view scope, std::string_view ref, Clock::time_point now) const;
  /// Hash of what a send carries, for claim()'s `content`.
  static std::uint64_t content_of(std::string_view room, std::string_view text) noexcept;

  std::size_t size() const noexcept { return entries_.size(); }
  /// Entries `owner` holds.
  std::size_t held_by(std::string_view owner) const noexcept;

 private:
  enum class State { in_flight, acked, failed };
  struct Entry;
  using Order = std::list<Entry>;
  /// An owner's entries, oldest first.
  using OwnerEntries = std::list<Order::iterator>;
  struct Entry {
    std::string key;
    MessageId id;
    std::uint64_t content = 0;
    State state = State::in_flight;
    Clock::time_point last_used;
    std::vector<Waiter> waiters;
    std::string owner;
    OwnerEntries::iterator owner_position;
  };
  struct Owner {
    OwnerEntries entries;
  };

  static std::string make_key(std::string_view scope, std::string_view ref);
  void touch(Order::iterator it, Clock::time_point now);
  void erase(Order::iterator it);
  /// Evicts the oldest settled entry of the owner holding the most; false
  /// when every owner's entries are in flight.
  bool evict_from_largest_owner();
  /// Drops expired entries, and settled ones while more than max_entries
  /// less `room_for` are kept.
  void evict(Clock::time_point now, std::size_t room_for = 0);

  Clock::duration window_;
  std::size_t max_entries_;
  Order order_;                                                    ///< least recently used first
  std::unordered_map<std::string_view, Order::iterator> entries_;  ///< views into Entry::key
  std::unordered_map<std::string, Owner> owners_;
  /// Owners by how many entries they hold, most first.
  std::set<std::pair<std::size_t, std::string>, std::greater<>> by_size_;
};

}  // namespace nudge::plugins::websocket
