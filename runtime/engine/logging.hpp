#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "engine/metrics.hpp"
#include "nudge/sdk/context.hpp"

namespace nudge::runtime {

std::optional<LogLevel> parse_log_level(std::string_view text);

/// How log lines are written: `text` for people, `logfmt` and `json` for collectors.
enum class LogFormat { text, logfmt, json };
std::optional<LogFormat> parse_log_format(std::string_view text);

/// Where every logger of the process writes: one line per event on stderr.
///
///     text:   2026-11-28T15:43:40.123Z INFO  sink.postgres: batch written after 3 attempts
///     logfmt: ts=2026-11-28T15:43:40.123Z level=info pipeline=chat instance=a stage=sink.postgres plugin=postgres
///     msg="..." json:
///     {"ts":"...","level":"info","pipeline":"chat","instance":"a","stage":"sink.postgres","plugin":"postgres","msg":"..."}
///
/// Warnings and errors that repeat (the same stage and text, digits aside)
/// are let through once per repeat window; the next one let through says how
/// many were held back. Thread-safe.
class LogOutput {
 public:
  static LogOutput& instance();

  void set_level(LogLevel level) noexcept { level_ = level; }
  LogLevel level() const noexcept { return level_; }
  void set_format(LogFormat format);
  /// Carried by every structured line.
  void set_identity(std::string pipeline, std::string instance);
  /// Least time between two lines of one repeated warning or error (default 10 s).
  void set_repeat_window(std::chrono::milliseconds window);
  /// Where lines go (stderr by default); for tests.
  void set_sink(std::FILE* file);

  void write(LogLevel level, std::string_view logger, std::string_view text);

  /// The line `write` would produce (no newline), `repeated` lines held back before it.
  std::string format_line(LogLevel level, std::string_view logger, std::string_view text, std::uint64_t repeated) const;

 private:
  struct Repeat {
    std::chrono::steady_clock::time_point last;
    std::uint64_t held = 0;
  };

  mutable std::mutex mutex_;
  LogLevel level_ = LogLevel::info;
  LogFormat format_ = LogFormat::text;
  std::string pipeline_;
  std::string instance_;
  std::chrono::milliseconds repeat_window_{10000};
  std::map<std::string, Repeat, std::less<>> repeats_;
  std::FILE* sink_ = nullptr;
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

}  // namespace nudge::runtime
