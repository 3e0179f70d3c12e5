#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace nudge::bench {

/// A log-linear latency histogram in the manner of HdrHistogram: values in
/// nanoseconds from 0 to 60 s, each recorded into a bucket whose width is at
/// most 1/128 of its lower bound, so a reported value is within 0.8% of the
/// recorded one. Values under 256 ns are exact; larger ones are clamped to
/// the highest trackable value (60 s). Fixed size (~30 KiB), no allocation on
/// record(). Not thread-safe: one per thread, merged at the end.
class LatencyHistogram {
 public:
  static constexpr std::int64_t kHighestTrackable = 60'000'000'000;  // 60 s in ns

  LatencyHistogram();

  /// Counts one value (nanoseconds; negative counts as 0).
  void record(std::int64_t value_ns) noexcept;
  /// Adds every count of `other` to this one.
  void merge(const LatencyHistogram& other) noexcept;
  void reset() noexcept;

  std::uint64_t count() const noexcept { return total_; }
  /// Exact smallest and largest values recorded (0 when empty).
  std::int64_t min() const noexcept { return total_ ? min_ : 0; }
  std::int64_t max() const noexcept { return max_; }
  double mean() const noexcept;

  /// The value below or at which `percentile` percent (0..100) of the
  /// recorded values fall: the highest value of the bucket holding that rank,
  /// clamped to [min(), max()], so it never understates a latency. 0 when empty.
  std::int64_t value_at_percentile(double percentile) const noexcept;

  /// Calls `f(highest_value_of_bucket, count)` for every non-empty bucket, in
  /// increasing order (the histogram's compact form, written to JSON).
  void for_each_bucket(const std::function<void(std::int64_t, std::uint64_t)>& f) const;

  /// The bucket a value falls into, and that bucket's value range; exposed for tests.
  static std::size_t index_of(std::int64_t value_ns) noexcept;
  static std::int64_t lowest_of(std::size_t index) noexcept;
  static std::int64_t highest_of(std::size_t index) noexcept;
  static std::size_t bucket_count() noexcept;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace nudge::bench
