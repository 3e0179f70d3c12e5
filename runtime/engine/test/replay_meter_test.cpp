#include <gtest/gtest.h>

#include "engine/replay.hpp"

namespace nudge::runtime {
namespace {

TEST(ReplayMeter, SaysDoneOfTotalThenARateAndAnEtaAtThePaceSoFar) {
  ReplayMeter meter;
  const auto t0 = ReplayMeter::Clock::time_point{};
  ReplayProgress p;
  p.state = ReplayProgress::State::reading;
  p.total = 20000;
  p.partitions = 6;
  p.done = 2000;
  EXPECT_EQ(meter.line(t0, p), "2000/20000 records (10.0%), 6 partitions (0 done)");
  p.done = 6000;
  p.partitions_done = 1;
  EXPECT_EQ(meter.line(t0 + std::chrono::seconds(1), p),
            "6000/20000 records (30.0%), 6 partitions (1 done), 4000 rows/s, ETA 3.5 s");
  p.done = 7000;  // a slow second: the rate says so, the ETA keeps the pace of both
  EXPECT_EQ(meter.line(t0 + std::chrono::seconds(2), p),
            "7000/20000 records (35.0%), 6 partitions (1 done), 1000 rows/s, ETA 5.2 s");
  ReplayProgress empty;
  EXPECT_EQ(ReplayMeter{}.line(t0, empty), "0/0 records (100.0%), 0 partitions (0 done)");
}

}  // namespace
}  // namespace nudge::runtime
