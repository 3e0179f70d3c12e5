#pragma once

#include <cstddef>
#include <deque>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "nudge/sdk.hpp"

namespace nudge::plugins {

/// The in-process fanout: what this instance publishes comes straight back to
/// it. For a single instance, or tests; it does not reach other processes.
///
/// It keeps a recent window of each room (read_recent), bounded twice: at most
/// `recent_messages` per room, and at most `recent_max_bytes` over all rooms
/// (see entry_bytes and room_bytes for what a byte counts). Any client can make
/// a room, so the rooms are kept in least-recently-published order and the
/// oldest messages of the least recent rooms go first; a room left empty is
/// forgotten entirely.
///
/// Presence is in process too: the members are this instance's connections,
/// and the events come back to this instance only.
class MemoryFanout final : public Fanout {
 public:
  MemoryFanout(const Config& config, Context& context);
  static ConfigSchema schema();

  // Fanout
  Status start(FanoutReceiver& receiver) override;
  void publish(const MessagePtr& message) override;
  void set_room_interest(std::string_view room, bool interested) override;
  bool supports_recent() const override { return window_size_ > 0; }
  void read_recent(HistoryQuery query, HistoryHandler done) override;
  bool supports_presence() const override { return true; }
  void presence_join(std::string_view room, const PresenceMember& member) override;
  void presence_leave(std::string_view room, const PresenceMember& member) override;
  void read_presence(std::string_view room, PresenceHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;

  /// What the window holds by its own count (never more than recent_max_bytes
  /// once publish returns), and in how many rooms. For tests and the gauges.
  std::size_t recent_bytes() const noexcept { return bytes_; }
  std::size_t recent_rooms() const noexcept { return rooms_.size(); }
  /// Rooms with at least one member (a room left empty is forgotten).
  std::size_t presence_rooms() const noexcept { return presence_.size(); }

  /// What one message held in the window counts: its variable parts plus a
  /// fixed overhead for the Message, its shared_ptr control block, the
  /// deque slot and the allocator's headers.
  static std::size_t entry_bytes(const Message& message) noexcept;
  /// What a room counts before any message: its name twice (map key and
  /// list node), the map and list nodes, and the deque's first block.
  static std::size_t room_bytes(std::string_view room) noexcept;

 private:
  struct Room {
    std::string name;
    std::deque<MessagePtr> messages;  // oldest first
    std::size_t bytes = 0;            // room_bytes + entry_bytes of each message
  };
  using Rooms = std::list<Room>;  // least recently published first

  void pop_oldest(Rooms::iterator room);
  void report(std::string_view room, PresenceChange change, const PresenceMember& member);
  void update_gauges();

  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  Counter& published_;
  Counter& evicted_;
  Gauge& bytes_gauge_;
  Gauge& rooms_gauge_;
  std::size_t window_size_ = 0;  // messages per room
  std::size_t max_bytes_ = 0;    // over all rooms
  std::size_t bytes_ = 0;
  Rooms lru_;
  /// Keyed by a view of Room::name: list nodes never move.
  std::unordered_map<std::string_view, Rooms::iterator> rooms_;
  /// Presence: room -> connection -> member. Every member is a connection of
  /// this process, so the table is bounded by the connections; answers are
  /// bounded by max_presence_per_room.
  std::unordered_map<std::string, std::map<std::string, PresenceMember, std::less<>>> presence_;
  std::size_t max_presence_ = 0;
};

}  // namespace nudge::plugins
