#include "memory_fanout.hpp"

#include <boost/asio/post.hpp>

namespace nudge::plugins {

namespace {

// Measured with glibc on x86-64 (sizeof(Message) is 232): the Message and its
// control block from make_shared take a 256-byte chunk, the deque slot 16,
// and each heap-allocated string up to 24 more than its size (chunk header
// and rounding to 16). Strings short enough to sit inside the Message cost
// nothing extra, so this overcounts small messages a little.
constexpr std::size_t kEntryOverhead = 256 + 16 + 4 * 24;
constexpr std::size_t kHeaderOverhead = 64 + 2 * 24;  // the pair, and two strings' chunks
// The unordered_map node and its bucket, the list node, and the deque's
// first 512-byte block with its block map.
constexpr std::size_t kRoomOverhead = 64 + 16 + 64 + 512 + 64;

}  // namespace

MemoryFanout::MemoryFanout(const Config& config, Context& context)
    : context_(context),
      published_(context.metrics().counter("published", "Messages published")),
      evicted_(context.metrics().counter("recent_evicted",
                                         "Messages evicted from the recent window to keep it under recent_max_bytes")),
      bytes_gauge_(context.metrics().gauge("recent_bytes", "Bytes the recent window holds, by its own count")),
      rooms_gauge_(context.metrics().gauge("recent_rooms", "Rooms the recent window holds")),
      window_size_(static_cast<std::size_t>(config.get_int("recent_messages"))),
      max_bytes_(static_cast<std::size_t>(config.get_int("recent_max_bytes"))),
      max_presence_(static_cast<std::size_t>(config.get_int("max_presence_per_room"))) {}

ConfigSchema MemoryFanout::schema() {
  ConfigSchema s;
  s.integer("recent_messages", 1000,
            "Messages kept per room so reconnecting clients catch up from memory; 0 keeps none")
      .range(0, 100000);
  s.integer("recent_max_bytes", 64 * 1024 * 1024,
            "Bytes the recent window may hold over all rooms (each message's payload, room, sender, origin and "
            "headers plus 368 bytes, each room 720 bytes plus twice its name); beyond it the oldest messages of "
            "the least recently published rooms are evicted")
      .range(1024, std::int64_t{1} << 40);
  s.integer("max_presence_per_room", 1000,
            "Members a presence list names at most; beyond it the list carries only their count")
      .range(1, 1000000);
  return s;
}

std::size_t MemoryFanout::entry_bytes(const Message& m) noexcept {
  std::size_t n = kEntryOverhead + m.payload.size() + m.room.size() + m.sender.size() + m.origin.size();
  for (const auto& [key, value] : m.headers) n += kHeaderOverhead + key.size() + value.size();
  return n;
}

std::size_t MemoryFanout::room_bytes(std::string_view room) noexcept { return kRoomOverhead + 2 * room.size(); }

Status MemoryFanout::start(FanoutReceiver& receiver) {
  receiver_ = &receiver;
  return Status::success();
}

void MemoryFanout::publish(const MessagePtr& message) {
  published_.add();
  // An ephemeral message is never history: it stays out of the recent window.
  if (window_size_ > 0 && !is_ephemeral(*message)) {
    auto found = rooms_.find(message->room);
    Rooms::iterator room;
    if (found == rooms_.end()) {
      room = lru_.insert(lru_.end(), Room{message->room, {}, room_bytes(message->room)});
      rooms_.emplace(room->name, room);
      bytes_ += room->bytes;
    } else {
      room = found->second;
      lru_.splice(lru_.end(), lru_, room);  // now the most recently published
    }
    const std::size_t n = entry_bytes(*message);
    room->messages.push_back(message);
    room->bytes += n;
    bytes_ += n;
    if (room->messages.size() > window_size_) pop_oldest(room);
    // The least recent room gives up its oldest messages first; a message
    // larger than the whole cap ends up evicting itself (and its room).
    while (bytes_ > max_bytes_ && !lru_.empty()) {
      pop_oldest(lru_.begin());
      evicted_.add();
    }
    update_gauges();
  }
  // Posted, not called inline, so delivery is asynchronous like a real bus's
  // and never re-enters the publisher.
  boost::asio::post(context_.executor(), [this, message] {
    if (receiver_) receiver_->on_fanout_message(message);
  });
}

void MemoryFanout::pop_oldest(Rooms::iterator room) {
  const std::size_t n = entry_bytes(*room->messages.front());
  room->messages.pop_front();
  room->bytes -= n;
  bytes_ -= n;
  if (!room->messages.empty()) return;
  bytes_ -= room->bytes;
  rooms_.erase(room->name);
  lru_.erase(room);
}

void MemoryFanout::update_gauges() {
  bytes_gauge_.set(static_cast<std::int64_t>(bytes_));
  rooms_gauge_.set(static_cast<std::int64_t>(rooms_.size()));
}

void MemoryFanout::set_room_interest(std::string_view, bool) {}

void MemoryFanout::read_recent(HistoryQuery query, HistoryHandler done) {
  std::vector<MessagePtr> messages;
  if (auto it = rooms_.find(query.room); it != rooms_.end()) {
    const auto& window = it->second->messages;
    const std::size_t take = std::min(query.limit, window.size());
    messages.assign(window.end() - static_cast<std::ptrdiff_t>(take), window.end());
  }
  boost::asio::post(context_.executor(), [done = std::move(done), messages = std::move(messages)]() mutable {
    done(Status::success(), std::move(messages));
  });
}

void MemoryFanout::report(std::string_view room, PresenceChange change, const PresenceMember& member) {
  boost::asio::post(context_.executor(), [this, room = std::string(room), event = PresenceEvent{change, member}] {
    if (receiver_) receiver_->on_presence(room, event);
  });
}

void MemoryFanout::presence_join(std::string_view room, const PresenceMember& member) {
  auto it = presence_.find(std::string(room));
  if (it == presence_.end())
    it = presence_.emplace(std::string(room), std::map<std::string, PresenceMember, std::less<>>{}).first;
  if (it->second.try_emplace(member.connection, member).second) report(room, PresenceChange::join, member);
}

void MemoryFanout::presence_leave(std::string_view room, const PresenceMember& member) {
  const auto it = presence_.find(std::string(room));
  if (it == presence_.end()) return;
  const auto found = it->second.find(member.connection);
  if (found == it->second.end()) return;
  const PresenceMember left = std::move(found->second);
  it->second.erase(found);
  if (it->second.empty()) presence_.erase(it);
  report(room, PresenceChange::leave, left);
}

void MemoryFanout::read_presence(std::string_view room, PresenceHandler done) {
  PresenceList list;
  if (const auto it = presence_.find(std::string(room)); it != presence_.end()) {
    list.total = it->second.size();
    for (const auto& [connection, member] : it->second) {
      if (list.members.size() >= max_presence_) break;
      list.members.push_back(member);
    }
  }
  boost::asio::post(context_.executor(), [done = std::move(done), list = std::move(list)]() mutable {
    done(Status::success(), std::move(list));
  });
}

void MemoryFanout::stop(std::function<void()> done) {
  receiver_ = nullptr;
  done();
}

}  // namespace nudge::plugins
