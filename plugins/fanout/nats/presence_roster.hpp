#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "nudge/sdk.hpp"

namespace nudge::plugins::nats {

/// Presence over plain subjects, with no state in the server (no JetStream):
/// each instance announces its own members of a room — a join or leave as
/// it happens, and a snapshot of all of them every ttl/3 — on the room's
/// subject, and every instance keeps, for the rooms it watches, what each
/// instance last announced. An instance not heard from in a room for the
/// TTL is gone: its members leave (with events) at the next sweep, every
/// ttl/6, so the members of an instance that died leave everyone's list at
/// most ttl + ttl/6 after its last snapshot.
///
/// A snapshot also repairs what a lost join or leave left wrong (the
/// members it lacks leave, those it adds join), and an instance heard in a
/// room for the first time is answered with this instance's snapshot of the
/// room at once, so a newcomer learns a room in a round trip instead of ttl/3.
///
/// Memory is bounded: only watched rooms (set_interest) and rooms with own
/// members are kept, an instance only while it has members there (an empty
/// snapshot takes no entry: a tick walks only rooms someone joined), and at most max_per_room members of each instance
/// in a room (snapshots carry at most that many, with the instance's count); a room's list names at most max_per_room
/// members with the total.
///
/// Pure logic, no I/O: the fanout publishes what `publish` is handed, feeds
/// in the frames it hears, and calls tick() on its timer. On the executor.
class PresenceRoster {
 public:
  using Clock = std::chrono::steady_clock;
  struct Settings {
    std::string instance;
    std::chrono::milliseconds ttl{15000};
    std::size_t max_per_room = 1000;
  };
  /// Publishes a frame on the room's subject (best-effort).
  using Publish = std::function<void(const std::string& room, std::string frame)>;
  /// Reports a change to the receiver.
  using Report = std::function<void(const std::string& room, const PresenceEvent& event)>;

  PresenceRoster(Settings settings, Publish publish, Report report);

  void join(std::string_view room, const PresenceMember& member);
  void leave(std::string_view room, const PresenceMember& member);
  PresenceList list(std::string_view room) const;
  void set_interest(std::string_view room, bool interested);
  void on_frame(const PresenceFrame& frame, Clock::time_point now);
  /// Every ttl/6: snapshots own rooms every other call (`snapshot`), and
  /// drops instances not heard from within the TTL.
  void tick(bool snapshot, Clock::time_point now);
  /// Leaves every own member (graceful stop).
  void leave_all();

  /// Rooms and (room, instance) entries kept (tests, the bound).
  std::size_t rooms() const noexcept { return rooms_.size(); }

 private:
  using Members = std::map<std::string, PresenceMember, std::less<>>;  // by connection
  struct Entry {                                                       // what one instance announced in one room
    Members members;                                                   // at most max_per_room
    std::uint64_t total = 0;
    Clock::time_point heard{};
  };
  using Room = std::map<std::string, Entry, std::less<>>;  // by instance
  /// This instance's members of a room: connection -> user (the instance is
  /// settings_.instance), about 100 bytes a member with short ids.
  using Own = std::map<std::string, std::string, std::less<>>;
  PresenceMember own_member(const std::string& connection, const std::string& user) const {
    return PresenceMember{user, connection, settings_.instance};
  }

  bool keeps(std::string_view room) const;
  void snapshot(const std::string& room);
  void forget(const std::string& room, Room::iterator entry, Room& instances);

  Settings settings_;
  Publish publish_;
  Report report_;
  std::map<std::string, Own, std::less<>> own_;
  std::set<std::string, std::less<>> interest_;
  std::map<std::string, Room, std::less<>> rooms_;
};

}  // namespace nudge::plugins::nats
