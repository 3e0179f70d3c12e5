#pragma once

// Test support for plugin authors: drive a plugin without the runtime.
//
//     boost::asio::io_context io;
//     nudge::testing::TestContext context(io, "sink.mine");
//     MySink sink(nudge::testing::make_config(MySink::schema(), {{"path", std::string("x")}}), context);
//     ASSERT_TRUE(sink.start().ok());
//     bool done = false;
//     sink.write(batch, [&](nudge::Status s) { done = s.ok(); });
//     ASSERT_TRUE(nudge::testing::run_until(io, [&] { return done; }, std::chrono::seconds(5)));
//
// Header-only; not part of the runtime. Not used by plugins themselves.

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk/config.hpp"
#include "nudge/sdk/context.hpp"

namespace nudge::testing {

/// Keeps every line (tests look for them) and prints those at or above
/// NUDGE_TEST_LOG (trace, debug, info, warn — the default — or error).
class TestLogger final : public Logger {
 public:
  explicit TestLogger(std::string name) : name_(std::move(name)) {
    const char* env = std::getenv("NUDGE_TEST_LOG");
    const std::string l = env ? env : "warn";
    print_from_ = l == "trace"   ? LogLevel::trace
                  : l == "debug" ? LogLevel::debug
                  : l == "info"  ? LogLevel::info
                  : l == "error" ? LogLevel::error
                                 : LogLevel::warn;
  }

  bool enabled(LogLevel) const noexcept override { return true; }
  void write(LogLevel level, std::string_view text) override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(level, std::string(text));
    if (level >= print_from_) std::cerr << "[" << label(level) << "] " << name_ << ": " << text << "\n";
  }

  /// Lines at `level` or above that contain `part`.
  std::size_t count(LogLevel level, std::string_view part) const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [l, text] : lines_)
      if (l >= level && text.find(part) != std::string::npos) ++n;
    return n;
  }
  /// Every line written so far.
  std::vector<std::pair<LogLevel, std::string>> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  static const char* label(LogLevel level) {
    switch (level) {
      case LogLevel::trace: return "trace";
      case LogLevel::debug: return "debug";
      case LogLevel::info: return "info";
      case LogLevel::warn: return "warn";
      case LogLevel::error: return "error";
    }
    return "?";
  }

  std::string name_;
  LogLevel print_from_ = LogLevel::warn;
  mutable std::mutex mutex_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

/// Metrics kept in memory, readable by name.
class TestMetrics final : public Metrics {
 public:
  Counter& counter(std::string_view name, std::string_view) override {
    std::lock_guard lock(mutex_);
    auto& slot = counters_[std::string(name)];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
  }
  Gauge& gauge(std::string_view name, std::string_view) override {
    std::lock_guard lock(mutex_);
    auto& slot = gauges_[std::string(name)];
    if (!slot) slot = std::make_unique<Gauge>();
    return *slot;
  }
  std::uint64_t value(std::string_view name) { return counter(name, "").value(); }
  std::int64_t gauge_value(std::string_view name) { return gauge(name, "").value(); }

 private:
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Counter>> counters_;
  std::map<std::string, std::unique_ptr<Gauge>> gauges_;
};

/// A Context on a test's own io_context.
class TestContext final : public Context {
 public:
  explicit TestContext(boost::asio::io_context& io, std::string logger_name = "test",
                       std::string instance_id = "test-instance")
      : io_(io), instance_id_(std::move(instance_id)), logger_(std::move(logger_name)) {}

  boost::asio::any_io_executor executor() const override { return io_.get_executor(); }
  TestLogger& logger() override { return logger_; }
  TestMetrics& metrics() override { return metrics_; }
  std::string_view instance_id() const override { return instance_id_; }
  std::string_view pipeline_name() const override { return "test"; }

 private:
  boost::asio::io_context& io_;
  std::string instance_id_;
  TestLogger logger_;
  TestMetrics metrics_;
};

/// A Config made the way the runtime makes one: the schema's defaults, then
/// `overrides`, each checked by its field. On an unknown key, a bad value or
/// a missing required key, sets `*error` (or throws std::invalid_argument when
/// `error` is null) and returns an empty Config.
inline Config make_config(const ConfigSchema& schema, const std::map<std::string, ConfigValue>& overrides = {},
                          std::string* error = nullptr) {
  auto fail = [&](std::string why) {
    if (!error) throw std::invalid_argument(why);
    *error = std::move(why);
    return Config();
  };
  std::map<std::string, ConfigValue, std::less<>> values;
  std::vector<std::string> set;
  for (const auto& field : schema.fields())
    if (field.default_value) values[field.key] = *field.default_value;
  for (const auto& [key, value] : overrides) {
    const ConfigField* field = schema.find(key);
    if (!field) return fail("unknown key '" + key + "'");
    if (auto why = field->validate(value); !why.empty()) return fail(key + ": " + why);
    values[key] = value;
    set.push_back(key);
  }
  for (const auto& field : schema.fields())
    if (field.required() && !values.contains(field.key)) return fail(field.key + ": missing required key");
  return Config(std::move(values), std::move(set));
}

/// Runs `io` until `done()` holds or `timeout` passes; false on timeout.
/// Keeps going when the loop runs out of work, so results posted later by
/// other threads are still picked up.
template <class Predicate>
bool run_until(boost::asio::io_context& io, Predicate done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Runs `io` for `duration`.
inline void run_for(boost::asio::io_context& io, std::chrono::milliseconds duration) {
  run_until(io, [] { return false; }, duration);
}

}  // namespace nudge::testing
