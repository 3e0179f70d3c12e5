#pragma once

#include <atomic>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

namespace nudge {

enum class LogLevel { trace, debug, info, warn, error };

/// The lower-case name of a level ("warn"), as --log-level and structured logs spell it.
constexpr const char* to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace:
      return "trace";
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
  }
  return "?";
}

/// A logger named for one plugin instance (`sink.sqlite`). Thread-safe.
/// Log in sentences and quote identifiers; never one line per message at info.
class Logger {
 public:
  virtual ~Logger() = default;

  /// True when a line at `level` would be written; check it before costly formatting.
  virtual bool enabled(LogLevel level) const noexcept = 0;
  /// Writes one line at `level`. Thread-safe.
  virtual void write(LogLevel level, std::string_view text) = 0;

  /// Convenience: concatenates `parts` with operator<< and writes them at the level.
  template <class... Parts>
  void trace(const Parts&... parts) {
    log(LogLevel::trace, parts...);
  }
  template <class... Parts>
  void debug(const Parts&... parts) {
    log(LogLevel::debug, parts...);
  }
  template <class... Parts>
  void info(const Parts&... parts) {
    log(LogLevel::info, parts...);
  }
  template <class... Parts>
  void warn(const Parts&... parts) {
    log(LogLevel::warn, parts...);
  }
  template <class... Parts>
  void error(const Parts&... parts) {
    log(LogLevel::error, parts...);
  }

 private:
  template <class... Parts>
  void log(LogLevel level, const Parts&... parts) {
    if (!enabled(level)) return;
    std::ostringstream text;
    (text << ... << parts);
    write(level, text.str());
  }
};

/// A monotonically increasing count. Lock-free; safe from any thread.
class Counter {
 public:
  void add(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down (queue depth, connections). Lock-free.
class Gauge {
 public:
  void set(std::int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

/// Label names and values that tell apart the series of one metric
/// (`{{"partition", "3"}}`). Keep their number of values small and bounded:
/// every distinct set is a series kept for the process's lifetime.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

/// The metrics registry of one plugin instance. Names are short snake_case
/// (`rows_written`); the runtime exposes them on the admin endpoint's
/// /metrics as `nudge_<kind>_<plugin>_<name>` with the pipeline, instance
/// and stage as labels, and `help` as the HELP text.
class Metrics {
 public:
  virtual ~Metrics() = default;

  /// Returns the counter `name` with `labels`, creating it on first use. The
  /// reference stays valid for the plugin's lifetime; look it up once, not
  /// per message.
  virtual Counter& counter(std::string_view name, std::string_view help, const MetricLabels& labels) = 0;
  /// Returns the gauge `name` with `labels`, creating it on first use; as for counter().
  virtual Gauge& gauge(std::string_view name, std::string_view help, const MetricLabels& labels) = 0;

  /// The counter `name` without labels.
  Counter& counter(std::string_view name, std::string_view help) { return counter(name, help, {}); }
  /// The gauge `name` without labels.
  Gauge& gauge(std::string_view name, std::string_view help) { return gauge(name, help, {}); }
};

/// What the runtime hands each plugin instance. Outlives the plugin.
///
/// Threading: the runtime runs one event loop; every plugin method and every
/// Completion is invoked on executor(). A plugin that must block (a database
/// client) does so on its own thread (see BlockingWorker) and posts results
/// back to executor().
class Context {
 public:
  virtual ~Context() = default;

  /// The event loop's executor. Never block on it.
  virtual boost::asio::any_io_executor executor() const = 0;
  /// A logger named for this plugin instance, e.g. `sink.sqlite`.
  virtual Logger& logger() = 0;
  /// This plugin instance's metrics.
  virtual Metrics& metrics() = 0;
  /// The id of this runtime instance (unique per process run unless set in the pipeline).
  virtual std::string_view instance_id() const = 0;
  /// The pipeline's name (`[pipeline] name`).
  virtual std::string_view pipeline_name() const = 0;
};

}  // namespace nudge
