#include "resend_cache.hpp"

#include <utility>

namespace nudge::plugins::websocket {

ResendCache::ResendCache(Clock::duration window, std::size_t max_entries)
    : window_(window), max_entries_(max_entries) {}

std::string ResendCache::make_key(std::string_view scope, std::string_view ref) {
  // Length-prefixed, so no (scope, ref) pair can spell another's key whatever
  // bytes a name or token subject holds.
  std::string key = std::to_string(scope.size());
  key.reserve(key.size() + 1 + scope.size() + ref.size());
  key.push_back(':');
  key.append(scope).append(ref);
  return key;
}

std::uint64_t ResendCache::content_of(std::string_view room, std::string_view text) noexcept {
  // FNV-1a: stable across runs and platforms, and enough to tell a reused
  // ref from a resend (a collision only makes a conflict look like a resend
  // of the same sender's own message).
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(room);
  h ^= 0xff;
  h *= 1099511628211ULL;
  mix(text);
  return h;
}

void ResendCache::touch(Order::iterator it, Clock::time_point now) {
  it->last_used = now;
  order_.splice(order_.end(), order_, it);
}

std::size_t ResendCache::held_by(std::string_view owner) const noexcept {
  const auto it = owners_.find(std::string(owner));
  return it == owners_.end() ? 0 : it->second.entries.size();
}

void ResendCache::erase(Order::iterator it) {
  auto owner = owners_.find(it->owner);
  if (owner != owners_.end()) {
    const std::size_t before = owner->second.entries.size();
    by_size_.erase({before, owner->first});
    owner->second.entries.erase(it->owner_position);
    if (owner->second.entries.empty()) owners_.erase(owner);
    else by_size_.emplace(before - 1, owner->first);
  }
  entries_.erase(std::string_view(it->key));
  order_.erase(it);
}

bool ResendCache::evict_from_largest_owner() {
  for (const auto& [size, name] : by_size_) {
    auto& entries = owners_.at(name).entries;
    for (auto it = entries.begin(); it != entries.end(); ++it) {
      if ((*it)->state == State::in_flight) continue;  // its outcome is still owed to the waiters
      erase(*it);
      return true;
    }
  }
  return false;
}

void ResendCache::evict(Clock::time_point now, std::size_t room_for) {
  // Expired first, oldest use first.
  for (auto it = order_.begin(); it != order_.end() && now - it->last_used >= window_;) {
    if (it->state == State::in_flight) {
      ++it;  // its outcome is still owed to the waiters
      continue;
    }
    erase(it++);
  }
  while (entries_.size() + room_for > max_entries_ && evict_from_largest_owner()) {
  }
}

ResendCache::Claim ResendCache::claim(std::string_view scope, std::string_view ref, std::uint64_t content,
                                      const MessageId& fresh_id, Clock::time_point now, Waiter waiter,
                                      std::string_view owner) {
  evict(now);
  const std::string key = make_key(scope, ref);
  if (auto found = entries_.find(std::string_view(key)); found != entries_.end()) {
    Entry& entry = *found->second;
    touch(found->second, now);
    if (entry.content != content) return {Outcome::conflict, entry.id};
    switch (entry.state) {
      case State::acked:
        return {Outcome::already_acked, entry.id};
      case State::in_flight:
        if (entry.waiters.size() >= kMaxWaiters) return {Outcome::busy, entry.id};
        entry.waiters.push_back(std::move(waiter));
        return {Outcome::waiting, entry.id};
      case State::failed:
        entry.state = State::in_flight;
        return {Outcome::publish, entry.id};
    }
  }
  evict(now, 1);
  // Every entry left is in flight (evict made room otherwise): nothing may go.
  if (entries_.size() >= max_entries_) return {Outcome::busy, fresh_id};
  order_.push_back(
      Entry{key, fresh_id, content, State::in_flight, now, {}, std::string(owner.empty() ? scope : owner), {}});
  auto it = std::prev(order_.end());
  entries_.emplace(std::string_view(it->key), it);
  auto& mine = owners_[it->owner];
  by_size_.erase({mine.entries.size(), it->owner});
  it->owner_position = mine.entries.insert(mine.entries.end(), it);
  by_size_.emplace(mine.entries.size(), it->owner);
  evict(now);
  return {Outcome::publish, fresh_id};
}

bool ResendCache::remembers(std::string_view scope, std::string_view ref, Clock::time_point now) const {
  const std::string key = make_key(scope, ref);
  const auto found = entries_.find(std::string_view(key));
  if (found == entries_.end()) return false;
  const Entry& entry = *found->second;
  return entry.state == State::in_flight || now - entry.last_used < window_;
}

void ResendCache::settle(std::string_view scope, std::string_view ref, const Status& status, Clock::time_point now) {
  const std::string key = make_key(scope, ref);
  auto found = entries_.find(std::string_view(key));
  if (found == entries_.end()) return;
  Entry& entry = *found->second;
  entry.state = status.ok() ? State::acked : State::failed;
  auto waiters = std::move(entry.waiters);
  entry.waiters.clear();
  const MessageId id = entry.id;
  touch(found->second, now);
  // Waiters may claim again (a client resending on error): the entry must be
  // consistent before they run.
  for (auto& waiter : waiters) waiter(status, id);
  evict(now);
}

}  // namespace nudge::plugins::websocket
