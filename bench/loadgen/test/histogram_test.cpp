#include "histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace nudge::bench {
namespace {

// The sorted-array definition the histogram approximates: element ceil(p% of n).
std::int64_t reference_percentile(const std::vector<std::int64_t>& sorted, double p) {
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void expect_percentiles_within_1_percent(std::vector<std::int64_t> values) {
  LatencyHistogram h;
  for (auto v : values) h.record(v);
  std::sort(values.begin(), values.end());
  ASSERT_EQ(h.count(), values.size());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  for (double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const double expected = static_cast<double>(reference_percentile(values, p));
    const double got = static_cast<double>(h.value_at_percentile(p));
    EXPECT_LE(std::abs(got - expected), 0.01 * expected) << "p" << p << ": expected " << expected << ", got " << got;
    // It reports a bucket's highest value: never below the true one.
    EXPECT_GE(got, expected) << "p" << p;
  }
}

TEST(Histogram, PercentilesOfLogUniformValuesFrom1UsTo60sAreWithin1PercentOfSorted) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> exponent(std::log(1e3), std::log(60e9));
  std::vector<std::int64_t> values(200'000);
  for (auto& v : values) v = static_cast<std::int64_t>(std::exp(exponent(rng)));
  expect_percentiles_within_1_percent(std::move(values));
}

TEST(Histogram, PercentilesOfALongTailedLatencyAreWithin1PercentOfSorted) {
  // Mostly ~300 µs, a tail of milliseconds, a few stalls of a second.
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> body(std::log(300e3), 0.3);
  std::exponential_distribution<double> tail(1 / 5e6);
  std::vector<std::int64_t> values;
  for (int i = 0; i < 100'000; ++i) values.push_back(static_cast<std::int64_t>(body(rng)));
  for (int i = 0; i < 2'000; ++i) values.push_back(static_cast<std::int64_t>(1e6 + tail(rng)));
  for (int i = 0; i < 20; ++i) values.push_back(1'000'000'000 + i * 1'000'000);
  expect_percentiles_within_1_percent(std::move(values));
}

TEST(Histogram, SmallCountsAndRepeatedValues) {
  expect_percentiles_within_1_percent({5'000});
  expect_percentiles_within_1_percent({1'000, 2'000});
  expect_percentiles_within_1_percent(std::vector<std::int64_t>(1000, 123'456));
  expect_percentiles_within_1_percent({1'000, 1'000, 1'000, 59'000'000'000});
}

TEST(Histogram, EveryBucketIsAtMostOne128thOfItsValuesWide) {
  for (std::size_t i = 1; i < LatencyHistogram::bucket_count(); ++i) {
    const auto lo = LatencyHistogram::lowest_of(i);
    const auto hi = LatencyHistogram::highest_of(i);
    ASSERT_EQ(lo, LatencyHistogram::highest_of(i - 1) + 1) << "buckets are contiguous at " << i;
    // Exact below 256 ns; above, no wider than 1/128 of the bucket's values.
    ASSERT_LE(static_cast<double>(hi - lo + 1), std::max(1.0, static_cast<double>(lo) / 128)) << "bucket " << i;
    ASSERT_EQ(LatencyHistogram::index_of(lo), i);
    ASSERT_EQ(LatencyHistogram::index_of(hi), i);
  }
  EXPECT_GE(LatencyHistogram::highest_of(LatencyHistogram::bucket_count() - 1), LatencyHistogram::kHighestTrackable);
  EXPECT_LT(LatencyHistogram::bucket_count(), 4000u);  // ~30 KiB per histogram
}

TEST(Histogram, ClampsOutOfRangeValues) {
  LatencyHistogram h;
  h.record(-5);
  h.record(3'600'000'000'000);  // an hour
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), LatencyHistogram::kHighestTrackable);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  LatencyHistogram a, b, all;
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::int64_t> d(1'000, 50'000'000);
  for (int i = 0; i < 10'000; ++i) {
    const auto v = d(rng);
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double p : {50.0, 99.0, 99.9}) EXPECT_EQ(a.value_at_percentile(p), all.value_at_percentile(p));
}

TEST(Histogram, EmptyReportsZeros) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.value_at_percentile(99), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0);
  int buckets = 0;
  h.for_each_bucket([&](std::int64_t, std::uint64_t) { ++buckets; });
  EXPECT_EQ(buckets, 0);
}

}  // namespace
}  // namespace nudge::bench
