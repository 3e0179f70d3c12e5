#include <gtest/gtest.h>

#include "token_bucket.hpp"

namespace nudge::plugins::websocket {
namespace {

using namespace std::chrono_literals;
const TokenBucket::Clock::time_point t0{};

TEST(TokenBucket, AllowsABurstThenRefusesUntilRefilled) {
  TokenBucket bucket(5, 3, t0);
  EXPECT_TRUE(bucket.allow(t0));
  EXPECT_TRUE(bucket.allow(t0));
  EXPECT_TRUE(bucket.allow(t0));
  EXPECT_FALSE(bucket.allow(t0));
  EXPECT_FALSE(bucket.allow(t0 + 100ms));  // 0.5 token
  EXPECT_TRUE(bucket.allow(t0 + 200ms));   // 1 token
  EXPECT_FALSE(bucket.allow(t0 + 200ms));
}

TEST(TokenBucket, RefillStopsAtTheBurst) {
  TokenBucket bucket(10, 2, t0);
  EXPECT_TRUE(bucket.allow(t0));
  EXPECT_TRUE(bucket.allow(t0));
  const auto later = t0 + 1h;  // would be 36000 tokens without the cap
  EXPECT_TRUE(bucket.allow(later));
  EXPECT_TRUE(bucket.allow(later));
  EXPECT_FALSE(bucket.allow(later));
}

TEST(TokenBucket, SustainsItsRate) {
  TokenBucket bucket(50, 1, t0);
  int allowed = 0;
  // One attempt per millisecond for a second: the rate, plus the initial token.
  for (int ms = 0; ms < 1000; ++ms)
    if (bucket.allow(t0 + std::chrono::milliseconds(ms))) ++allowed;
  EXPECT_GE(allowed, 50);
  EXPECT_LE(allowed, 51);
}

TEST(TokenBucket, ARefusedAttemptCostsNothing) {
  TokenBucket bucket(1, 1, t0);
  EXPECT_TRUE(bucket.allow(t0));
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(bucket.allow(t0 + 500ms));
  EXPECT_TRUE(bucket.allow(t0 + 1s));
}

TEST(TokenBucket, ClockGoingBackwardsGrantsNothing) {
  TokenBucket bucket(1, 1, t0 + 10s);
  EXPECT_TRUE(bucket.allow(t0 + 10s));
  EXPECT_FALSE(bucket.allow(t0));
  EXPECT_FALSE(bucket.allow(t0 + 10s));
  EXPECT_TRUE(bucket.allow(t0 + 11s));
}

TEST(TokenBucket, ZeroRateDisablesTheLimit) {
  TokenBucket bucket(0, 1, t0);
  for (int i = 0; i < 10000; ++i) EXPECT_TRUE(bucket.allow(t0));
}

TEST(TokenBucket, IsFullOnceRefilledAsANewOneWouldBe) {
  TokenBucket bucket(10, 5, t0);
  EXPECT_TRUE(bucket.full(t0));
  EXPECT_TRUE(bucket.allow(t0));
  EXPECT_FALSE(bucket.full(t0));
  EXPECT_FALSE(bucket.full(t0 + 50ms));
  EXPECT_TRUE(bucket.full(t0 + 100ms));
  TokenBucket unlimited(0, 1, t0);
  EXPECT_TRUE(unlimited.full(t0));
}

}  // namespace
}  // namespace nudge::plugins::websocket
