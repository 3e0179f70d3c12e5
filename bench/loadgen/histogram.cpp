#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace nudge::bench {
namespace {

// Values below kSub (256) each have their own bucket. Above, each power of two
// [2^m, 2^(m+1)) is split into kHalf (128) buckets of width 2^(m-7).
constexpr int kSubBits = 8;
constexpr std::int64_t kSub = std::int64_t{1} << kSubBits;
constexpr std::int64_t kHalf = kSub / 2;

constexpr std::size_t index_for(std::int64_t v) {
  if (v < kSub) return static_cast<std::size_t>(v);
  const int magnitude = std::bit_width(static_cast<std::uint64_t>(v)) - 1;  // >= kSubBits
  const int shift = magnitude - (kSubBits - 1);                             // v >> shift in [128, 256)
  return static_cast<std::size_t>(kSub + (shift - 1) * kHalf + ((v >> shift) - kHalf));
}

constexpr std::size_t kBuckets = index_for(LatencyHistogram::kHighestTrackable) + 1;

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

std::size_t LatencyHistogram::bucket_count() noexcept { return kBuckets; }

std::size_t LatencyHistogram::index_of(std::int64_t value_ns) noexcept {
  return index_for(std::clamp<std::int64_t>(value_ns, 0, kHighestTrackable));
}

std::int64_t LatencyHistogram::lowest_of(std::size_t index) noexcept {
  const auto i = static_cast<std::int64_t>(index);
  if (i < kSub) return i;
  const std::int64_t shift = (i - kSub) / kHalf + 1;
  const std::int64_t sub = (i - kSub) % kHalf + kHalf;
  return sub << shift;
}

std::int64_t LatencyHistogram::highest_of(std::size_t index) noexcept {
  const auto i = static_cast<std::int64_t>(index);
  if (i < kSub) return i;
  const std::int64_t shift = (i - kSub) / kHalf + 1;
  return lowest_of(index) + (std::int64_t{1} << shift) - 1;
}

void LatencyHistogram::record(std::int64_t value_ns) noexcept {
  const std::int64_t v = std::clamp<std::int64_t>(value_ns, 0, kHighestTrackable);
  ++counts_[index_for(v)];
  if (total_ == 0 || v < min_) min_ = v;
  if (v > max_) max_ = v;
  ++total_;
  sum_ += static_cast<long double>(v);
}

void LatencyHistogram::merge(const LatencyHistogram& other) noexcept {
  if (other.total_ == 0) return;
  for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  if (total_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  total_ += other.total_;
  sum_ += other.sum_;
}

void LatencyHistogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double LatencyHistogram::mean() const noexcept {
  return total_ ? static_cast<double>(sum_ / static_cast<long double>(total_)) : 0.0;
}

std::int64_t LatencyHistogram::value_at_percentile(double percentile) const noexcept {
  if (total_ == 0) return 0;
  const double p = std::clamp(percentile, 0.0, 100.0);
  // The rank of the value (1-based), as a sorted array's element ceil(p% of n).
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
  rank = std::clamp<std::uint64_t>(rank, 1, total_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(highest_of(i), min_, max_);
  }
  return max_;
}

void LatencyHistogram::for_each_bucket(const std::function<void(std::int64_t, std::uint64_t)>& f) const {
  for (std::size_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] != 0) f(highest_of(i), counts_[i]);
  }
}

}  // namespace nudge::bench
