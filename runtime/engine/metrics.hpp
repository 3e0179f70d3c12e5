#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/context.hpp"

namespace nudge::runtime {

/// A distribution over fixed bucket bounds (Prometheus' cumulative `le`
/// buckets are computed when exposed). Lock-free; safe from any thread.
class Histogram {
 public:
  static constexpr std::size_t kMaxBuckets = 24;

  /// `bounds`: increasing upper bounds, at most kMaxBuckets; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);

  void observe(double value) noexcept;

  const std::vector<double>& bounds() const noexcept { return bounds_; }
  /// Observations at or below bounds()[i] and above the previous bound; the
  /// last entry (index bounds().size()) counts those above every bound.
  std::uint64_t bucket(std::size_t i) const noexcept { return buckets_[i].load(std::memory_order_relaxed); }
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::array<std::atomic<std::uint64_t>, kMaxBuckets + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

/// Bucket bounds in seconds for latencies from a millisecond to a minute.
std::vector<double> latency_buckets();
/// Bucket bounds for batch sizes, 1 to 10000 messages.
std::vector<double> batch_size_buckets();

/// All metrics of the process, exposed in the Prometheus text format on the
/// admin endpoint. A metric is a family (name, help, type) of series told
/// apart by labels; labels common to every series (pipeline, instance) are
/// set once. Registration takes a lock; updating a series never does.
class MetricsRegistry {
 public:
  /// Labels added to every series when exposed (`pipeline`, `instance`).
  void set_common_labels(MetricLabels labels);

  /// Returns the series, creating it on first use. `name` is the full
  /// Prometheus name; counters are exposed with a `_total` suffix.
  /// The reference stays valid for the registry's lifetime.
  Counter& counter(const std::string& name, std::string_view help = {}, const MetricLabels& labels = {});
  Gauge& gauge(const std::string& name, std::string_view help = {}, const MetricLabels& labels = {});
  Histogram& histogram(const std::string& name, std::string_view help, std::vector<double> bounds,
                       const MetricLabels& labels = {});

  /// Every series in the Prometheus text exposition format (version 0.0.4).
  std::string prometheus() const;

  /// Counters and gauges by `name` or `name{label="value",...}` (labels in
  /// the order given, common labels left out); for tests and `nudge top`.
  std::map<std::string, std::int64_t> snapshot() const;

 private:
  enum class Type { counter, gauge, histogram };
  struct Series {
    MetricLabels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    Type type = Type::counter;
    std::string help;
    std::map<std::string, Series> series;  // by rendered labels
  };

  Series& series(const std::string& name, Type type, std::string_view help, const MetricLabels& labels);

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
  MetricLabels common_labels_;
};

/// Renders labels as `{a="x",b="y"}` with Prometheus escaping; "" when empty.
std::string render_labels(const MetricLabels& labels);

/// One plugin instance's view of the registry: `rows_inserted` of the stage
/// `sink.postgres` is `nudge_sink_postgres_rows_inserted{stage="sink.postgres"}`.
class StageMetrics final : public Metrics {
 public:
  using Metrics::counter;
  using Metrics::gauge;

  /// `key_path`: the stage's table (`sink.postgres`).
  StageMetrics(MetricsRegistry& registry, std::string key_path);

  Counter& counter(std::string_view name, std::string_view help, const MetricLabels& labels) override;
  Gauge& gauge(std::string_view name, std::string_view help, const MetricLabels& labels) override;

 private:
  MetricLabels with_stage(const MetricLabels& labels) const;

  MetricsRegistry& registry_;
  std::string key_path_;
  std::string prefix_;
};

}  // namespace nudge::runtime

namespace nudge::runtime {

/// The runtime's own measures of one stage, the same for every plugin:
/// `nudge_stage_*{stage, kind, plugin}` (docs/operations.md says what in
/// and out mean for each kind).
struct StageStats {
  StageStats(MetricsRegistry& registry, const std::string& key_path);

  Counter& in;
  Counter& out;
  Counter& errors;
  Counter& retries;
  Counter& dropped;
  Gauge& queue_depth;
  Gauge& ready;
  /// Messages per batch: sinks and logs only (null for other kinds).
  Histogram* batch_messages;
};

}  // namespace nudge::runtime
