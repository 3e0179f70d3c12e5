// The presence keeper against a fake host that records each script call and
// answers it by hand: what a tick costs in commands, and which rooms it
// sweeps. The behaviour against a real Redis is in redis_presence_test.cpp.

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk/testing.hpp"
#include "presence_keeper.hpp"

namespace nudge::plugins::redis {
namespace {

using nudge::testing::TestContext;

struct Call {
  std::string key;
  std::vector<std::string> args;
  std::function<void(const redisReply*)> done;
};

struct NoEvents final : FanoutReceiver {
  std::vector<PresenceEvent> events;
  void on_fanout_message(MessagePtr) override {}
  void on_presence(std::string_view, const PresenceEvent& e) override { events.push_back(e); }
};

/// A reply built by hand: {count, [entries...]}, as the sweep answers.
struct SweepReply {
  explicit SweepReply(long long count, std::vector<std::string> gone = {}) : texts(std::move(gone)) {
    count_reply.type = REDIS_REPLY_INTEGER;
    count_reply.integer = count;
    for (auto& t : texts) {
      redisReply r{};
      r.type = REDIS_REPLY_STRING;
      r.str = t.data();
      r.len = t.size();
      entries.push_back(r);
    }
    for (auto& e : entries) entry_ptrs.push_back(&e);
    gone_reply.type = REDIS_REPLY_ARRAY;
    gone_reply.elements = entry_ptrs.size();
    gone_reply.element = entry_ptrs.data();
    top_ptrs = {&count_reply, &gone_reply};
    top.type = REDIS_REPLY_ARRAY;
    top.elements = 2;
    top.element = top_ptrs.data();
  }
  std::vector<std::string> texts;
  std::vector<redisReply> entries;
  std::vector<redisReply*> entry_ptrs;
  redisReply count_reply{}, gone_reply{}, top{};
  std::vector<redisReply*> top_ptrs;
};

/// A reply built by hand: integers, then a count, as a refresh answers.
struct IntReply {
  IntReply(std::vector<long long> flags, long long count) {
    flags.push_back(count);
    for (long long v : flags) {
      redisReply r{};
      r.type = REDIS_REPLY_INTEGER;
      r.integer = v;
      items.push_back(r);
    }
    for (auto& r : items) ptrs.push_back(&r);
    top.type = REDIS_REPLY_ARRAY;
    top.elements = ptrs.size();
    top.element = ptrs.data();
  }
  std::vector<redisReply> items;
  std::vector<redisReply*> ptrs;
  redisReply top{};
};

class PresenceKeeperTest : public ::testing::Test {
 protected:
  PresenceKeeperTest()
      : keeper_(PresenceKeeper::Settings{"p:", false, std::chrono::milliseconds(15000), 1000}, context_,
                PresenceKeeper::Host{[this](const std::string& key, std::vector<std::string> args,
                                            std::function<void(const redisReply*)> done) {
                                       calls_.push_back({key, std::move(args), std::move(done)});
                                       return true;
                                     },
                                     [this](const std::string& room, std::string) { published_.push_back(room); }}) {
    keeper_.start(events_);
  }
  ~PresenceKeeperTest() override { keeper_.stop(); }

  static std::string join_frame(const std::string& room, const std::string& connection) {
    return encode_presence_frame({PresenceFrame::Kind::join, room, "other", {{"u", connection, "other"}}, 1});
  }
  std::vector<Call> take() { return std::exchange(calls_, {}); }

  boost::asio::io_context io_;
  TestContext context_{io_, "fanout.redis", "me"};
  std::vector<Call> calls_;
  std::vector<std::string> published_;
  NoEvents events_;
  PresenceKeeper keeper_;
};

TEST_F(PresenceKeeperTest, RoomsWithClientsButNoMembersCostNoCommandPerTick) {
  for (int i = 0; i < 1000; ++i) keeper_.set_interest("room-" + std::to_string(i), true);
  keeper_.tick_now();
  keeper_.tick_now();
  EXPECT_EQ(calls_.size(), 0u) << "1,000 rooms nobody joined with presence must send nothing to Redis";
}

TEST_F(PresenceKeeperTest, AJoinHeardFromAnotherInstanceIsSweptUntilASweepFindsTheRoomEmpty) {
  for (int i = 0; i < 100; ++i) keeper_.set_interest("room-" + std::to_string(i), true);
  keeper_.on_frame(join_frame("room-7", "c-1"));
  ASSERT_EQ(events_.events.size(), 1u);
  keeper_.tick_now();
  auto calls = take();
  ASSERT_EQ(calls.size(), 1u) << "only the room a member joined is swept";
  EXPECT_EQ(calls[0].key, "p:room-7");
  EXPECT_EQ(calls[0].args[0], "sweep");

  // The other instance died: its entry expired and this sweep removes it.
  const std::string entry = encode_presence_frame({PresenceFrame::Kind::join, {}, "other", {{"u", "c-1", "other"}}, 1});
  SweepReply expired(0, {entry});
  calls[0].done(&expired.top);
  EXPECT_EQ(published_, std::vector<std::string>{"room-7"}) << "the sweeper reports the dead member's leave";
  EXPECT_EQ(keeper_.watched_rooms(), 0u) << "the room is empty now";
  keeper_.tick_now();
  EXPECT_EQ(calls_.size(), 0u) << "an empty room is not swept again";
}

TEST_F(PresenceKeeperTest, ARoomASweepFindsMembersInStaysSwept) {
  keeper_.set_interest("r", true);
  keeper_.on_frame(join_frame("r", "c-1"));
  keeper_.tick_now();
  auto calls = take();
  ASSERT_EQ(calls.size(), 1u);
  SweepReply one(1);
  calls[0].done(&one.top);
  keeper_.tick_now();
  EXPECT_EQ(take().size(), 1u) << "a member is still there: swept at each tick";
}

TEST_F(PresenceKeeperTest, AJoinHeardWhileASweepWasInFlightKeepsTheRoomSwept) {
  keeper_.set_interest("r", true);
  keeper_.on_frame(join_frame("r", "c-1"));
  keeper_.tick_now();
  auto calls = take();
  ASSERT_EQ(calls.size(), 1u);
  // The sweep ran before the second join reached the set, whose frame
  // arrives before the sweep's reply: the room is not empty any more.
  keeper_.on_frame(join_frame("r", "c-2"));
  SweepReply empty(0);
  calls[0].done(&empty.top);
  EXPECT_EQ(keeper_.watched_rooms(), 1u);
  keeper_.tick_now();
  EXPECT_EQ(take().size(), 1u);
}

TEST_F(PresenceKeeperTest, AJoinInARoomWithoutClientsHereIsNotSwept) {
  keeper_.on_frame(join_frame("elsewhere", "c-1"));  // heard on a shared channel
  keeper_.tick_now();
  EXPECT_EQ(calls_.size(), 0u);
  keeper_.set_interest("r", true);
  keeper_.on_frame(join_frame("r", "c-1"));
  keeper_.set_interest("r", false);  // its last client left
  keeper_.tick_now();
  EXPECT_EQ(calls_.size(), 0u);
}

TEST_F(PresenceKeeperTest, OwnMembersAreRefreshedInOneCallPerRoomAndSweptOnlyWithOthersThere) {
  keeper_.set_interest("r", true);
  for (int i = 0; i < 10; ++i) keeper_.join("r", {"u", "c-" + std::to_string(i), "me"});
  EXPECT_EQ(take().size(), 10u) << "one call per join";
  keeper_.tick_now();
  auto calls = take();
  ASSERT_EQ(calls.size(), 1u) << "a refresh of the room's 10 members, and no sweep: no one else is there";
  EXPECT_EQ(calls[0].args[0], "join");
  EXPECT_EQ(calls[0].args.size(), 2u + 10u);

  IntReply only_mine(std::vector<long long>(10, 0), 10);
  calls[0].done(&only_mine.top);
  EXPECT_EQ(keeper_.watched_rooms(), 0u);
  keeper_.tick_now();
  calls = take();
  ASSERT_EQ(calls.size(), 1u);

  // Two entries more than its own: another instance's members, whose
  // expiry this instance must be able to report.
  IntReply with_others(std::vector<long long>(10, 0), 12);
  calls[0].done(&with_others.top);
  EXPECT_EQ(keeper_.watched_rooms(), 1u);
  keeper_.tick_now();
  calls = take();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].args[0], "sweep");
}

TEST_F(PresenceKeeperTest, ItsOwnJoinsHeardBackDoNotMakeARoomSwept) {
  keeper_.set_interest("r", true);
  keeper_.join("r", {"u", "c-1", "me"});
  (void)take();
  keeper_.on_frame(encode_presence_frame({PresenceFrame::Kind::join, "r", "me", {{"u", "c-1", "me"}}, 1}));
  EXPECT_EQ(keeper_.watched_rooms(), 0u);
}

}  // namespace
}  // namespace nudge::plugins::redis
