#include "presence_roster.hpp"

#include <gtest/gtest.h>

namespace nudge::plugins::nats {
namespace {

using namespace std::chrono_literals;
using Clock = PresenceRoster::Clock;

/// One roster with what it published and reported.
struct Peer {
  std::vector<std::pair<std::string, PresenceFrame>> sent;
  std::vector<std::pair<std::string, PresenceEvent>> events;
  PresenceRoster roster;

  explicit Peer(std::string instance, std::size_t bound = 1000)
      : roster(
            {std::move(instance), 1500ms, bound},
            [this](const std::string& room, std::string bytes) {
              PresenceFrame f;
              EXPECT_TRUE(decode_presence_frame(bytes, f).ok());
              sent.emplace_back(room, std::move(f));
            },
            [this](const std::string& room, const PresenceEvent& e) { events.emplace_back(room, e); }) {}

  std::size_t count(PresenceChange change) const {
    return static_cast<std::size_t>(
        std::count_if(events.begin(), events.end(), [&](const auto& e) { return e.second.change == change; }));
  }
};

/// Hands what `from` sent since `from_index` to `to`.
std::size_t relay(Peer& from, Peer& to, std::size_t from_index, Clock::time_point now) {
  for (; from_index < from.sent.size(); ++from_index) to.roster.on_frame(from.sent[from_index].second, now);
  return from_index;
}

TEST(PresenceRoster, JoinsAndLeavesHeardFromAnotherInstanceAreReportedOnceAndListed) {
  Peer a("a"), b("b");
  const auto t0 = Clock::now();
  b.roster.set_interest("r", true);
  a.roster.join("r", {"alice", "c1", "a"});
  a.roster.join("r", {"alice", "c1", "a"});  // known: nothing sent or reported
  EXPECT_EQ(a.count(PresenceChange::join), 1u) << "an own join is reported here too";
  std::size_t at = relay(a, b, 0, t0);
  relay(a, b, 0, t0);  // the same frames twice: a duplicate is not reported again
  EXPECT_EQ(b.count(PresenceChange::join), 1u);
  PresenceList list = b.roster.list("r");
  EXPECT_EQ(list.total, 1u);
  ASSERT_EQ(list.members.size(), 1u);
  EXPECT_EQ(list.members[0], (PresenceMember{"alice", "c1", "a"}));

  a.roster.leave("r", {"alice", "c1", "a"});
  at = relay(a, b, at, t0);
  EXPECT_EQ(b.count(PresenceChange::leave), 1u);
  EXPECT_EQ(b.roster.list("r").total, 0u);
}

TEST(PresenceRoster, AnInstanceNotHeardFromWithinTheTtlLeavesWithEvents) {
  Peer a("a"), b("b");
  const auto t0 = Clock::now();
  b.roster.set_interest("r", true);
  a.roster.join("r", {"alice", "c1", "a"});
  a.roster.join("r", {"bob", "c2", "a"});
  relay(a, b, 0, t0);
  b.roster.tick(false, t0 + 1400ms);
  EXPECT_EQ(b.count(PresenceChange::leave), 0u) << "still within the TTL";
  b.roster.tick(false, t0 + 1600ms);
  EXPECT_EQ(b.count(PresenceChange::leave), 2u) << "not heard from for longer than the TTL: both leave";
  EXPECT_EQ(b.roster.list("r").total, 0u);
}

TEST(PresenceRoster, SnapshotsKeepAnInstanceAliveAndRepairALostLeave) {
  Peer a("a"), b("b");
  const auto t0 = Clock::now();
  b.roster.set_interest("r", true);
  a.roster.join("r", {"alice", "c1", "a"});
  a.roster.join("r", {"bob", "c2", "a"});
  std::size_t at = relay(a, b, 0, t0);
  a.roster.leave("r", {"bob", "c2", "a"});
  at = a.sent.size();  // the leave is lost on its way
  a.roster.tick(true, t0 + 1000ms);
  relay(a, b, at, t0 + 1000ms);
  EXPECT_EQ(b.count(PresenceChange::leave), 1u) << "the snapshot lacks bob: he left";
  b.roster.tick(false, t0 + 2000ms);
  EXPECT_EQ(b.roster.list("r").total, 1u) << "the snapshot refreshed a: alice stays";
}

TEST(PresenceRoster, ANewcomerIsAnsweredWithSnapshotsAndListsAreBoundedWithTheCount) {
  Peer a("a", 3), b("b", 3);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) a.roster.join("r", {"u" + std::to_string(i), "c" + std::to_string(i), "a"});
  const std::size_t before = a.sent.size();
  b.roster.set_interest("r", true);  // b announces itself (an empty snapshot)
  relay(b, a, 0, t0);
  ASSERT_EQ(a.sent.size(), before + 1) << "a answers a newcomer at once";
  EXPECT_EQ(a.sent.back().second.kind, PresenceFrame::Kind::snapshot);
  relay(a, b, before, t0);
  const PresenceList list = b.roster.list("r");
  EXPECT_EQ(list.total, 5u);
  EXPECT_EQ(list.members.size(), 3u) << "at most max_presence_per_room named";
  EXPECT_EQ(a.roster.list("r").members.size(), 3u);
  EXPECT_EQ(a.roster.list("r").total, 5u);
}

TEST(PresenceRoster, RoomsNotWatchedAreNotKept) {
  Peer a("a"), b("b");
  a.roster.join("elsewhere", {"alice", "c1", "a"});
  relay(a, b, 0, Clock::now());
  EXPECT_EQ(b.roster.rooms(), 0u);
  EXPECT_TRUE(b.events.empty());
}

TEST(PresenceRoster, WatchedRoomsNobodyJoinedKeepNothing) {
  Peer a("a"), b("b");
  const auto t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) {
    a.roster.set_interest("room-" + std::to_string(i), true);
    b.roster.set_interest("room-" + std::to_string(i), true);
  }
  relay(a, b, 0, t0);
  relay(b, a, 0, t0);
  EXPECT_EQ(a.roster.rooms(), 0u) << "an instance's empty snapshot takes no entry";
  EXPECT_EQ(b.roster.rooms(), 0u);
  const std::size_t sent = a.sent.size();
  a.roster.tick(true, t0 + 100ms);
  EXPECT_EQ(a.sent.size(), sent) << "no snapshot of a room with no own member";

  // A member that joins and leaves: its instance's entry goes with the
  // empty snapshot it sends on coming back to the room.
  std::size_t at = b.sent.size();
  b.roster.join("room-1", {"bob", "b1", "b"});
  at = relay(b, a, at, t0);
  EXPECT_EQ(a.roster.rooms(), 1u);
  b.roster.leave("room-1", {"bob", "b1", "b"});
  b.roster.set_interest("room-1", false);
  b.roster.set_interest("room-1", true);
  relay(b, a, at, t0);
  EXPECT_EQ(a.roster.rooms(), 0u);
  EXPECT_EQ(a.count(PresenceChange::leave), 1u) << "bob left once";
}

}  // namespace
}  // namespace nudge::plugins::nats
