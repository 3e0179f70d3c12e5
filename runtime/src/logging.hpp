#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "nudge/sdk/context.hpp"

namespace nudge::runtime {

std::optional<LogLevel> parse_log_level(std::string_view text);

/// Where every logger of the process writes: one line per event on stderr,
/// `2026-11-28T15:43:40.123Z INFO  sink.sqlite: text`. Thread-safe.
class LogOutput {
 public:
  static LogOutput& instance();

  void set_level(LogLevel level) noexcept { level_ = level; }
  LogLevel level() const noexcept { return level_; }
  void write(LogLevel level, std::string_view logger, std::string_view text);

 private:
  std::mutex mutex_;
  LogLevel level_ = LogLevel::info;
};

/// A Logger that prefixes its lines with a name (`sink.sqlite`, `runtime`).
class NamedLogger final : public Logger {
 public:
  explicit NamedLogger(std::string name) : name_(std::move(name)) {}
  bool enabled(LogLevel level) const noexcept override { return level >= LogOutput::instance().level(); }
  void write(LogLevel level, std::string_view text) override { LogOutput::instance().write(level, name_, text); }

 private:
  std::string name_;
};

/// All metrics of the process, by full name (`sink_sqlite_rows_written`).
class MetricsRegistry {
 public:
  Counter& counter(const std::string& name);
  Gauge& gauge(const std::string& name);
  /// Current values, by name; for tests and the admin endpoint.
  std::map<std::string, std::int64_t> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Counter>> counters_;
  std::map<std::string, std::unique_ptr<Gauge>> gauges_;
};

/// One plugin instance's view of the registry: names prefixed with its stage.
class StageMetrics final : public Metrics {
 public:
  StageMetrics(MetricsRegistry& registry, std::string prefix) : registry_(registry), prefix_(std::move(prefix)) {}
  Counter& counter(std::string_view name, std::string_view) override {
    return registry_.counter(prefix_ + "_" + std::string(name));
  }
  Gauge& gauge(std::string_view name, std::string_view) override {
    return registry_.gauge(prefix_ + "_" + std::string(name));
  }

 private:
  MetricsRegistry& registry_;
  std::string prefix_;
};

}  // namespace nudge::runtime
