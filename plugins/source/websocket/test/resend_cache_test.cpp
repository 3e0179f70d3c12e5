#include "resend_cache.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace nudge::plugins::websocket {
namespace {

using namespace std::chrono_literals;
using Clock = ResendCache::Clock;
using Outcome = ResendCache::Outcome;

const auto kHi = ResendCache::content_of("general", "hi");
const auto t0 = Clock::time_point{} + 1h;

ResendCache::Waiter ignore() {
  return [](const Status&, const MessageId&) {};
}

TEST(ResendCache, FirstSendPublishesWithTheFreshId) {
  ResendCache cache(5min, 100);
  const auto id = MessageId::generate();
  auto claim = cache.claim("alice", "c-1", kHi, id, t0, ignore());
  EXPECT_EQ(claim.outcome, Outcome::publish);
  EXPECT_EQ(claim.id, id);
}

TEST(ResendCache, ResendAfterAckIsAnsweredWithTheFirstIdAndNotPublished) {
  ResendCache cache(5min, 100);
  const auto first = MessageId::generate();
  cache.claim("alice", "c-1", kHi, first, t0, ignore());
  cache.settle("alice", "c-1", Status::success(), t0 + 1ms);
  auto again = cache.claim("alice", "c-1", kHi, MessageId::generate(), t0 + 10s, ignore());
  EXPECT_EQ(again.outcome, Outcome::already_acked);
  EXPECT_EQ(again.id, first);
}

TEST(ResendCache, ResendWhileInFlightWaitsForTheFirstAttempt) {
  ResendCache cache(5min, 100);
  const auto first = MessageId::generate();
  cache.claim("alice", "c-1", kHi, first, t0, ignore());
  int told = 0;
  MessageId told_id;
  auto again = cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, [&](const Status& s, const MessageId& id) {
    EXPECT_TRUE(s.ok());
    told_id = id;
    ++told;
  });
  EXPECT_EQ(again.outcome, Outcome::waiting);
  EXPECT_EQ(told, 0);
  cache.settle("alice", "c-1", Status::success(), t0 + 5ms);
  EXPECT_EQ(told, 1);
  EXPECT_EQ(told_id, first);
}

TEST(ResendCache, ResendAfterAFailureRepublishesUnderTheSameId) {
  ResendCache cache(5min, 100);
  const auto first = MessageId::generate();
  cache.claim("alice", "c-1", kHi, first, t0, ignore());
  cache.settle("alice", "c-1", Status::error(StatusCode::timeout, "log did not confirm"), t0 + 30s);
  auto retry = cache.claim("alice", "c-1", kHi, MessageId::generate(), t0 + 31s, ignore());
  EXPECT_EQ(retry.outcome, Outcome::publish);
  EXPECT_EQ(retry.id, first) << "a retry must reuse the id so a sink that already stored the first keeps one row";
  cache.settle("alice", "c-1", Status::success(), t0 + 32s);
  EXPECT_EQ(cache.claim("alice", "c-1", kHi, MessageId::generate(), t0 + 33s, ignore()).outcome,
            Outcome::already_acked);
}

TEST(ResendCache, SameRefForDifferentContentIsAConflict) {
  ResendCache cache(5min, 100);
  cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore());
  cache.settle("alice", "c-1", Status::success(), t0);
  EXPECT_EQ(cache.claim("alice", "c-1", ResendCache::content_of("general", "bye"), MessageId::generate(), t0, ignore())
                .outcome,
            Outcome::conflict);
  EXPECT_EQ(
      cache.claim("alice", "c-1", ResendCache::content_of("random", "hi"), MessageId::generate(), t0, ignore()).outcome,
      Outcome::conflict);
}

TEST(ResendCache, RefsAreScopedBySender) {
  ResendCache cache(5min, 100);
  cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore());
  cache.settle("alice", "c-1", Status::success(), t0);
  EXPECT_EQ(cache.claim("bob", "c-1", kHi, MessageId::generate(), t0, ignore()).outcome, Outcome::publish);
  // Keys are length-prefixed: ("a", "b\x1f" "c") and ("a\x1f" "b", "c") stay apart.
  cache.claim("a",
              "b\x1f"
              "c",
              kHi, MessageId::generate(), t0, ignore());
  EXPECT_EQ(cache
                .claim("a\x1f"
                       "b",
                       "c", kHi, MessageId::generate(), t0, ignore())
                .outcome,
            Outcome::publish);
}

TEST(ResendCache, EntriesExpireAfterTheWindow) {
  ResendCache cache(5min, 100);
  cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore());
  cache.settle("alice", "c-1", Status::success(), t0);
  EXPECT_EQ(cache.claim("alice", "c-1", kHi, MessageId::generate(), t0 + 4min, ignore()).outcome,
            Outcome::already_acked);
  // The resend at +4 min renewed it: still known at +8 min, forgotten 5 min after that.
  EXPECT_EQ(cache.claim("alice", "c-1", kHi, MessageId::generate(), t0 + 8min, ignore()).outcome,
            Outcome::already_acked);
  EXPECT_EQ(cache.claim("alice", "c-1", kHi, MessageId::generate(), t0 + 13min + 1ms, ignore()).outcome,
            Outcome::publish);
}

TEST(ResendCache, SizeIsCappedOldestSettledFirstAndInFlightEntriesStay) {
  ResendCache cache(1h, 3);
  cache.claim("alice", "pending", kHi, MessageId::generate(), t0, ignore());  // never settled
  for (int i = 0; i < 10; ++i) {
    const std::string ref = "r" + std::to_string(i);
    cache.claim("alice", ref, kHi, MessageId::generate(), t0 + std::chrono::seconds(i), ignore());
    cache.settle("alice", ref, Status::success(), t0 + std::chrono::seconds(i));
  }
  EXPECT_LE(cache.size(), 3u);
  EXPECT_EQ(cache.claim("alice", "pending", kHi, MessageId::generate(), t0 + 20s, ignore()).outcome, Outcome::waiting);
  EXPECT_EQ(cache.claim("alice", "r9", kHi, MessageId::generate(), t0 + 20s, ignore()).outcome, Outcome::already_acked);
  EXPECT_EQ(cache.claim("alice", "r0", kHi, MessageId::generate(), t0 + 20s, ignore()).outcome, Outcome::publish);
}

TEST(ResendCache, AWaiterMayResendFromItsCallback) {
  ResendCache cache(5min, 100);
  const auto first = MessageId::generate();
  cache.claim("alice", "c-1", kHi, first, t0, ignore());
  Outcome inner = Outcome::conflict;
  cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, [&](const Status&, const MessageId&) {
    inner = cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore()).outcome;
  });
  cache.settle("alice", "c-1", Status::error(StatusCode::unavailable, "down"), t0);
  EXPECT_EQ(inner, Outcome::publish);
}

TEST(ResendCache, ResendsWaitingOnOneRefAreBounded) {
  ResendCache cache(5min, 100);
  cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore());
  int told = 0;
  for (std::size_t i = 0; i < ResendCache::kMaxWaiters; ++i)
    EXPECT_EQ(
        cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, [&](const Status&, const MessageId&) { ++told; })
            .outcome,
        Outcome::waiting);
  // A client resending while the pipeline stalls holds no more than this.
  EXPECT_EQ(cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore()).outcome, Outcome::busy);
  cache.settle("alice", "c-1", Status::success(), t0);
  EXPECT_EQ(told, static_cast<int>(ResendCache::kMaxWaiters));
  EXPECT_EQ(cache.claim("alice", "c-1", kHi, MessageId::generate(), t0, ignore()).outcome, Outcome::already_acked);
}

TEST(ResendCache, NewRefsAreRefusedWhileEveryEntryIsInFlight) {
  ResendCache cache(1h, 3);
  for (const char* ref : {"a", "b", "c"})
    EXPECT_EQ(cache.claim("alice", ref, kHi, MessageId::generate(), t0, ignore()).outcome, Outcome::publish);
  EXPECT_EQ(cache.claim("alice", "d", kHi, MessageId::generate(), t0, ignore()).outcome, Outcome::busy);
  EXPECT_EQ(cache.size(), 3u) << "never past max_entries";
  cache.settle("alice", "a", Status::success(), t0);
  EXPECT_EQ(cache.claim("alice", "d", kHi, MessageId::generate(), t0, ignore()).outcome, Outcome::publish)
      << "a settled entry makes room";
  EXPECT_EQ(cache.size(), 3u);
  cache.set_max_entries(2);
  cache.settle("alice", "b", Status::success(), t0);
  EXPECT_LE(cache.size(), 2u) << "a lower bound (a reload) applies as entries settle";
}

TEST(ResendCache, AFloodOfRefsFromOtherOwnersEvictsTheFloodNotAQuietSender) {
  // Found from outside: 110,000 new refs from 250 addresses in 11 s evicted a
  // victim's acked ref; its resend then made a second message.
  ResendCache cache(5min, 1000);
  const auto victim = MessageId::generate();
  cache.claim("n:alice", "v-1", kHi, victim, t0, ignore(), "198.51.100.1");
  cache.settle("n:alice", "v-1", Status::success(), t0);
  for (int i = 0; i < 110000; ++i) {
    const std::string owner = "203.0.113." + std::to_string(i % 250);
    const std::string ref = "f-" + std::to_string(i);
    cache.claim("c:" + owner, ref, kHi, MessageId::generate(), t0 + 1s, ignore(), owner);
    cache.settle("c:" + owner, ref, Status::success(), t0 + 1s);
  }
  EXPECT_LE(cache.size(), 1000u);
  EXPECT_LE(cache.held_by("203.0.113.7"), 5u) << "the flood's owners share what is left";
  const auto again = cache.claim("n:alice", "v-1", kHi, MessageId::generate(), t0 + 12s, ignore(), "198.51.100.1");
  EXPECT_EQ(again.outcome, Outcome::already_acked);
  EXPECT_EQ(again.id, victim) << "the resend gets the first id: one message";
}

}  // namespace
}  // namespace nudge::plugins::websocket
