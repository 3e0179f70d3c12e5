#include "idempotency.hpp"

namespace nudge::plugins::http {

std::uint64_t IdempotencyCache::content_of(std::string_view room, std::string_view text) noexcept {
  // FNV-1a over the room, a separator no room holds, and the text.
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](std::string_view part) {
    for (unsigned char c : part) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(room);
  mix(std::string_view("\0", 1));
  mix(text);
  return h;
}

void IdempotencyCache::touch(Entry& entry, Clock::time_point now) {
  entry.last_used = now;
  order_.splice(order_.end(), order_, entry.order);
}

bool IdempotencyCache::make_room(Clock::time_point now) {
  // Expired first: the list is in order of last use, so they are at the front.
  for (auto it = order_.begin(); it != order_.end();) {
    auto found = entries_.find(*it);
    if (now - found->second.last_used < window_) break;
    if (found->second.state == State::in_flight) {
      ++it;
      continue;
    }
    it = order_.erase(it);
    entries_.erase(found);
  }
  if (entries_.size() < max_entries_) return true;
  for (auto it = order_.begin(); it != order_.end(); ++it) {
    auto found = entries_.find(*it);
    if (found->second.state == State::in_flight) continue;
    order_.erase(it);
    entries_.erase(found);
    return true;
  }
  return false;
}

IdempotencyCache::Claim IdempotencyCache::claim(const std::string& key, std::uint64_t content,
                                                const MessageId& fresh_id, Clock::time_point now, Waiter waiter) {
  if (auto it = entries_.find(key); it != entries_.end()) {
    Entry& entry = it->second;
    const bool expired = entry.state != State::in_flight && now - entry.last_used >= window_;
    if (!expired) {
      if (entry.content != content) return {Outcome::conflict, entry.id};
      touch(entry, now);
      switch (entry.state) {
        case State::acked:
          return {Outcome::already_acked, entry.id};
        case State::failed:
          entry.state = State::in_flight;
          return {Outcome::publish, entry.id};
        case State::in_flight:
          if (entry.waiters.size() >= kMaxWaiters) return {Outcome::busy, entry.id};
          entry.waiters.push_back(std::move(waiter));
          return {Outcome::waiting, entry.id};
      }
    }
    order_.erase(entry.order);
    entries_.erase(it);
  }
  if (entries_.size() >= max_entries_ && !make_room(now)) return {Outcome::busy, MessageId()};
  order_.push_back(key);
  Entry entry;
  entry.id = fresh_id;
  entry.content = content;
  entry.last_used = now;
  entry.order = std::prev(order_.end());
  entries_.emplace(key, std::move(entry));
  return {Outcome::publish, fresh_id};
}

void IdempotencyCache::settle(const std::string& key, const Status& status, Clock::time_point now) {
  const auto it = entries_.find(key);
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  entry.state = status.ok() ? State::acked : State::failed;
  touch(entry, now);
  auto waiters = std::move(entry.waiters);
  entry.waiters.clear();
  const MessageId id = entry.id;
  for (auto& waiter : waiters) waiter(status, id);
}

}  // namespace nudge::plugins::http
