#include "engine/backlog_progress.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nudge::runtime {
namespace {

using namespace std::chrono_literals;

/// Feeds a BacklogProgress one reading a second, as the pipeline does, and keeps the lines.
class BacklogProgressTest : public ::testing::Test {
 protected:
  void second(std::int64_t lag, std::uint64_t written_this_second) {
    now_ += 1s;
    written_ += written_this_second;
    if (auto line = progress_.observe(now_, lag, written_, settings_)) lines_.push_back(*line);
  }
  static bool contains(const std::string& line, const std::string& part) {
    return line.find(part) != std::string::npos;
  }

  BacklogProgress::Settings settings_{1000, 5000ms, "log.kafka", "sink.postgres"};
  BacklogProgress progress_;
  BacklogProgress::Clock::time_point now_{};
  std::uint64_t written_ = 0;
  std::vector<std::string> lines_;
};

TEST_F(BacklogProgressTest, ACaughtUpConsumerReportsNothing) {
  for (int s = 0; s < 60; ++s) second(s % 7 == 0 ? 40 : 0, 40);
  EXPECT_TRUE(lines_.empty()) << lines_.front();
  EXPECT_FALSE(progress_.draining());
}

TEST_F(BacklogProgressTest, ADrainingBacklogReportsRowsPerSecondAndAnEtaOfLagOverItsFall) {
  std::int64_t lag = 10000;
  second(lag, 0);
  while (lag > 0) {
    lag -= 1000;
    second(lag, 1000);
  }
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_[0], "draining a backlog of 10000 messages from log.kafka into sink.postgres; progress every 5.0 s");
  EXPECT_EQ(lines_[1], "draining backlog: 1000 rows/s, lag 5000, ETA 5.0 s, 5000 written so far");
  EXPECT_EQ(lines_[2], "backlog drained: 10000 messages written in 10 s (1000 rows/s)");
  EXPECT_FALSE(progress_.draining());
}

TEST_F(BacklogProgressTest, TheBacklogEndsUnderSteadyTrafficThoughTheLagNeverReadsZero) {
  // 400 messages a second keep arriving: the lag settles at a few hundred.
  std::int64_t lag = 5000;
  second(lag, 0);
  for (int s = 0; s < 60; ++s) {
    lag = std::max<std::int64_t>(lag - 1000, 300 + s % 3 * 50);
    second(lag, 1400);
  }
  ASSERT_GE(lines_.size(), 2u);
  EXPECT_TRUE(contains(lines_.back(), "backlog drained: ")) << lines_.back();
  EXPECT_FALSE(progress_.draining());
  EXPECT_LE(lines_.size(), 3u) << "progress lines went on after the backlog was gone";
}

TEST_F(BacklogProgressTest, ALagHoveringAtTheThresholdIsOneBacklogNotOnePerSecond) {
  for (int s = 0; s < 30; ++s) second(s % 2 ? 1000 : 900, 500);
  EXPECT_EQ(lines_.size(), 1u + 5u) << "one start, then a progress line every 5 s";
  EXPECT_TRUE(progress_.draining());
}

TEST_F(BacklogProgressTest, ABacklogThatLeavesWithItsPartitionsIsNotClaimedAsDrained) {
  // The instance wrote 755 rows, then its partitions moved to another consumer.
  second(289730, 0);
  for (int s = 0; s < 10; ++s) second(289730 - 75 * (s + 1), 75);
  second(0, 5);
  ASSERT_FALSE(lines_.empty());
  EXPECT_FALSE(contains(lines_.back(), "drained")) << lines_.back();
  EXPECT_TRUE(contains(lines_.back(), "backlog gone after 11 s, but only 755 of its 289730 messages were written here"))
      << lines_.back();
}

TEST_F(BacklogProgressTest, RowsCountedAMomentBeforeTheLagIsMeasuredStillMakeADrain) {
  // A fast sink: the first reading of the lag came after 400 of its rows were counted.
  second(2000, 400);
  second(1000, 700);
  second(0, 600);
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[1], "backlog drained: 1300 messages written in 2.0 s (650 rows/s)");
}

TEST_F(BacklogProgressTest, NoEtaWhileTheLagDoesNotFall) {
  second(5000, 0);
  for (int s = 0; s < 5; ++s) second(5000, 1000);  // as many arrive as are written
  for (int s = 0; s < 5; ++s) second(5000, 0);     // the sink writes nothing
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_TRUE(contains(lines_[1], "1000 rows/s, lag 5000, ETA unknown (the lag is not falling")) << lines_[1];
  EXPECT_TRUE(contains(lines_[2], "0 rows/s, lag 5000, ETA unknown (no rows written)")) << lines_[2];
}

}  // namespace
}  // namespace nudge::runtime
