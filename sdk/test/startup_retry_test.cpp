#include <chrono>

#include <gtest/gtest.h>

#include "nudge/sdk/startup_retry.hpp"

namespace nudge {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

TEST(StartupRetryTest, NoTimeToWaitMeansOneAttempt) {
  const StartupRetry retry(milliseconds(0));
  EXPECT_TRUE(retry.expired());
  EXPECT_EQ(retry.attempts(), 1);
  EXPECT_EQ(retry.waited(), " (");
}

TEST(StartupRetryTest, PausesDoubleFrom250MsAndStopAtTheDeadline) {
  const auto t0 = Clock::now();
  StartupRetry retry(milliseconds(600));
  EXPECT_FALSE(retry.expired());
  retry.wait();  // 250 ms
  EXPECT_EQ(retry.attempts(), 2);
  const auto first = Clock::now() - t0;
  EXPECT_GE(first, milliseconds(250));
  EXPECT_LT(first, milliseconds(450));
  EXPECT_FALSE(retry.expired());
  retry.wait();  // 500 ms, cut to the 350 left
  EXPECT_EQ(retry.attempts(), 3);
  EXPECT_TRUE(retry.expired());
  const auto total = Clock::now() - t0;
  EXPECT_GE(total, milliseconds(600));
  EXPECT_LT(total, milliseconds(850)) << "a pause never runs past the deadline";
  EXPECT_EQ(retry.waited(), " within 600 ms (3 attempts; last error: ");
  retry.wait();  // past the deadline: no sleep
  EXPECT_LT(Clock::now() - t0, milliseconds(900));
}

}  // namespace
}  // namespace nudge
