#include "calibrate.hpp"

#include <vector>

#include <gtest/gtest.h>

namespace nudge::bench {
namespace {

// A generator that holds every rate up to `limit`; `spikes` lists rates whose first measurement fails
// on latency alone (a scheduling hiccup), as one did at 338 msg/s in a quiet full run.
struct FakeGenerator {
  double limit;
  std::vector<double> spikes;
  std::vector<double> measured;

  StepVerdict operator()(double rate) {
    measured.push_back(rate);
    for (auto it = spikes.begin(); it != spikes.end(); ++it) {
      if (*it == rate) {
        spikes.erase(it);
        return {false, "p99 over the limit", true};
      }
    }
    if (rate <= limit) return {true, "", false};
    return {false, "p99 over the limit", true};
  }
};

TEST(SearchCeiling, StepsUpThenHalvesTheIntervalThreeTimes) {
  FakeGenerator g{400, {}, {}};
  const auto ceiling = search_ceiling(100, std::ref(g));
  ASSERT_TRUE(ceiling);
  // 100 150 225 337.5 fail at 506.25, then 421.875 (fails), 379.6875 (holds), 400.78125 (fails).
  EXPECT_DOUBLE_EQ(*ceiling, 379.6875);
  EXPECT_EQ(g.measured.size(), 5u + 3u + 3u);  // every failure above the limit is measured twice
}

TEST(SearchCeiling, OneLatencySpikeDoesNotCutTheCeiling) {
  FakeGenerator with_spike{400, {337.5}, {}};
  FakeGenerator without{400, {}, {}};
  EXPECT_EQ(search_ceiling(100, std::ref(with_spike)), search_ceiling(100, std::ref(without)));
}

TEST(SearchCeiling, ALossIsNotMeasuredAgain) {
  std::vector<double> measured;
  auto losing_above_200 = [&](double rate) {
    measured.push_back(rate);
    return rate <= 200 ? StepVerdict{true, "", false} : StepVerdict{false, "lost or skipped", false};
  };
  const auto ceiling = search_ceiling(100, losing_above_200);
  ASSERT_TRUE(ceiling);
  EXPECT_LE(*ceiling, 200);
  EXPECT_EQ(measured.size(), 3u + 3u);  // 100 150 225, then three bisections, each once
}

TEST(SearchCeiling, NoCeilingWhenTheFirstStepFailsTwice) {
  FakeGenerator g{50, {}, {}};
  EXPECT_FALSE(search_ceiling(100, std::ref(g)));
  EXPECT_EQ(g.measured.size(), 2u);
}

}  // namespace
}  // namespace nudge::bench
