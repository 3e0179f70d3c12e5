#include <gtest/gtest.h>

#include "idempotency.hpp"

namespace nudge::plugins::http {
namespace {

using Outcome = IdempotencyCache::Outcome;
using Clock = IdempotencyCache::Clock;

TEST(IdempotencyCache, AResendGetsTheFirstIdAndPublishesOnlyWhenTheFirstFailed) {
  IdempotencyCache cache(std::chrono::seconds(60), 10);
  const auto t0 = Clock::now();
  const auto c = IdempotencyCache::content_of("room", "hi");
  const auto first = MessageId::generate(), second = MessageId::generate();
  auto claim = cache.claim("k", c, first, t0, {});
  EXPECT_EQ(claim.outcome, Outcome::publish);
  EXPECT_EQ(claim.id, first);
  // In flight: the resend waits and hears the outcome.
  Status heard = Status::error(StatusCode::internal, "not told");
  MessageId heard_id;
  claim = cache.claim("k", c, second, t0, [&](const Status& s, const MessageId& id) { heard = s, heard_id = id; });
  EXPECT_EQ(claim.outcome, Outcome::waiting);
  cache.settle("k", Status::error(StatusCode::unavailable, "log down"), t0);
  EXPECT_EQ(heard.code(), StatusCode::unavailable);
  EXPECT_EQ(heard_id, first);
  // Failed: published again under the same id.
  claim = cache.claim("k", c, second, t0, {});
  EXPECT_EQ(claim.outcome, Outcome::publish);
  EXPECT_EQ(claim.id, first);
  cache.settle("k", Status::success(), t0);
  claim = cache.claim("k", c, second, t0, {});
  EXPECT_EQ(claim.outcome, Outcome::already_acked);
  EXPECT_EQ(claim.id, first);
  EXPECT_EQ(cache.claim("k", IdempotencyCache::content_of("room", "other"), second, t0, {}).outcome, Outcome::conflict);
  // After the window the key is new again.
  EXPECT_EQ(cache.claim("k", c, second, t0 + std::chrono::seconds(61), {}).id, second);
}

TEST(IdempotencyCache, HoldsAtMostMaxEntriesAndNeverEvictsWhatIsInFlight) {
  IdempotencyCache cache(std::chrono::seconds(60), 3);
  const auto t0 = Clock::now();
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(cache.claim("k" + std::to_string(i), 1, MessageId::generate(), t0, {}).outcome, Outcome::publish);
  EXPECT_EQ(cache.claim("k3", 1, MessageId::generate(), t0, {}).outcome, Outcome::busy) << "all three in flight";
  cache.settle("k1", Status::success(), t0);
  EXPECT_EQ(cache.claim("k3", 1, MessageId::generate(), t0, {}).outcome, Outcome::publish);
  EXPECT_EQ(cache.size(), 3u) << "the settled one gave way";
  EXPECT_EQ(cache.claim("k1", 1, MessageId::generate(), t0, {}).outcome, Outcome::busy) << "k1 was evicted";
}

TEST(IdempotencyCache, ResendsWaitingOnOneKeyAreBounded) {
  IdempotencyCache cache(std::chrono::seconds(60), 10);
  const auto t0 = Clock::now();
  cache.claim("k", 1, MessageId::generate(), t0, {});
  for (std::size_t i = 0; i < IdempotencyCache::kMaxWaiters; ++i)
    EXPECT_EQ(cache.claim("k", 1, MessageId::generate(), t0, [](auto&&...) {}).outcome, Outcome::waiting);
  EXPECT_EQ(cache.claim("k", 1, MessageId::generate(), t0, [](auto&&...) {}).outcome, Outcome::busy);
}

}  // namespace
}  // namespace nudge::plugins::http
