#include "delivery_tracker.hpp"

#include <gtest/gtest.h>

namespace nudge::bench {
namespace {

TEST(PairTracker, InOrderDeliveryLosesNothing) {
  PairTracker t;
  for (std::uint64_t s = 0; s < 1000; ++s) EXPECT_EQ(t.on_receive(s, true), Arrival::in_order);
  EXPECT_EQ(t.unique_in_window(), 1000u);
  EXPECT_EQ(t.lost(1000), 0u);
  EXPECT_EQ(t.duplicates(), 0u);
  EXPECT_EQ(t.reordered(), 0u);
}

TEST(PairTracker, GapsAreLosses) {
  PairTracker t;
  for (std::uint64_t s = 0; s < 100; ++s) {
    if (s % 10 != 3) t.on_receive(s, true);
  }
  EXPECT_EQ(t.unique_in_window(), 90u);
  EXPECT_EQ(t.lost(100), 10u);
  EXPECT_EQ(t.reordered(), 0u);
  // The tail that never came is lost too: the sender says how many it sent.
  EXPECT_EQ(t.lost(120), 30u);
}

TEST(PairTracker, DuplicatesAreCountedOnceAndNotAsDeliveries) {
  PairTracker t;
  t.on_receive(0, true);
  t.on_receive(1, true);
  EXPECT_EQ(t.on_receive(1, true), Arrival::duplicate);
  t.on_receive(2, true);
  EXPECT_EQ(t.on_receive(0, true), Arrival::duplicate);
  EXPECT_EQ(t.on_receive(2, true), Arrival::duplicate);
  EXPECT_EQ(t.duplicates(), 3u);
  EXPECT_EQ(t.unique_in_window(), 3u);
  EXPECT_EQ(t.lost(3), 0u);
  EXPECT_EQ(t.reordered(), 0u);
}

TEST(PairTracker, LateArrivalsAreReorderedNotLostNorDuplicated) {
  PairTracker t;
  for (std::uint64_t s : {0, 1, 3, 4, 2, 7, 5, 6, 8}) t.on_receive(s, true);
  EXPECT_EQ(t.reordered(), 3u);  // 2, 5, 6
  EXPECT_EQ(t.duplicates(), 0u);
  EXPECT_EQ(t.unique_in_window(), 9u);
  EXPECT_EQ(t.lost(9), 0u);
  // A late one arriving twice is a duplicate the second time.
  EXPECT_EQ(t.on_receive(5, true), Arrival::duplicate);
}

TEST(PairTracker, OnlyTheWindowCountsTowardsDeliveries) {
  PairTracker t;
  for (std::uint64_t s = 0; s < 10; ++s) t.on_receive(s, false);  // warmup
  for (std::uint64_t s = 10; s < 30; ++s) t.on_receive(s, true);
  EXPECT_EQ(t.unique_in_window(), 20u);
  EXPECT_EQ(t.lost(20), 0u);
  // A duplicate of a warmup message is still a duplicate.
  EXPECT_EQ(t.on_receive(3, false), Arrival::duplicate);
}

TEST(PairTracker, TheFirstArrivalNeedNotBeZero) {
  // A receiver that joined late sees a sender from its 500th message on.
  PairTracker t;
  EXPECT_EQ(t.on_receive(500, true), Arrival::in_order);
  EXPECT_EQ(t.on_receive(501, true), Arrival::in_order);
  EXPECT_EQ(t.on_receive(499, true), Arrival::late);
  EXPECT_EQ(t.on_receive(500, true), Arrival::duplicate);
}

TEST(PairTracker, RemembersExactlyTheLastWindowOfSequenceNumbers) {
  PairTracker t;
  for (std::uint64_t s = 0; s < 1000; s += 2) t.on_receive(s, true);  // evens only
  // Within the last 256 below the newest (998): evens are duplicates, odds late.
  EXPECT_EQ(t.on_receive(998 - 254, true), Arrival::duplicate);
  EXPECT_EQ(t.on_receive(998 - 255, true), Arrival::late);
  EXPECT_EQ(t.on_receive(998 - 255, true), Arrival::duplicate);
  // Further back it cannot tell: counted as delivered (never invents a loss), and flagged.
  EXPECT_EQ(t.on_receive(998 - 256, true), Arrival::too_late);
  EXPECT_EQ(t.too_late(), 1u);
}

TEST(PairTracker, AJumpPastTheWindowForgetsTheOldBits) {
  PairTracker t;
  t.on_receive(0, true);
  t.on_receive(1, true);
  t.on_receive(1000, true);
  // 1000 - 256 + 1 .. 999 were never seen: late, not duplicates.
  EXPECT_EQ(t.on_receive(999, true), Arrival::late);
  EXPECT_EQ(t.on_receive(745, true), Arrival::late);
  EXPECT_EQ(t.on_receive(1000, true), Arrival::duplicate);
  // A jump of less than the window clears only what it skips.
  PairTracker u;
  for (std::uint64_t s = 0; s < 300; ++s) u.on_receive(s, true);
  u.on_receive(310, true);
  EXPECT_EQ(u.on_receive(305, true), Arrival::late);
  EXPECT_EQ(u.on_receive(299, true), Arrival::duplicate);
  EXPECT_EQ(u.on_receive(50, true), Arrival::too_late);
}

TEST(PairTracker, StaysSmall) { EXPECT_LE(sizeof(PairTracker), 64u); }

}  // namespace
}  // namespace nudge::bench
