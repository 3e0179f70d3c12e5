#pragma once

// A minimal nudge::Context for the plugin's tests: an io_context's executor,
// a logger that prints and remembers its lines, and in-memory metrics. It
// stands in for the runtime, which tests of a plugin do not include.

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk.hpp"

namespace nudge::test {

class TestLogger final : public Logger {
 public:
  explicit TestLogger(std::string name) : name_(std::move(name)) {
    debug_ = std::getenv("NUDGE_TEST_DEBUG") != nullptr;
  }

  bool enabled(LogLevel level) const noexcept override { return debug_ || level >= LogLevel::info; }

  void write(LogLevel level, std::string_view text) override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(level, std::string(text));
    std::cerr << "[" << name_ << "] " << label(level) << ": " << text << "\n";
  }

  /// Lines at `level` that contain `part`.
  std::size_t count(LogLevel level, std::string_view part) const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [l, text] : lines_)
      if (l == level && text.find(part) != std::string::npos) ++n;
    return n;
  }

 private:
  static std::string_view label(LogLevel level) {
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
  bool debug_ = false;
  mutable std::mutex mutex_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

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

class TestContext final : public Context {
 public:
  TestContext(boost::asio::io_context& io, std::string instance_id)
      : io_(io), instance_id_(std::move(instance_id)), logger_("fanout.redis@" + instance_id_) {}

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

/// A Config as the runtime would build it: the schema's defaults with
/// `overrides` applied. Fails the test (returns an empty Config) when an
/// override does not pass its field's checks.
inline Config make_config(const ConfigSchema& schema, const std::map<std::string, ConfigValue>& overrides,
                          std::string* error = nullptr) {
  std::map<std::string, ConfigValue, std::less<>> values;
  std::vector<std::string> set;
  for (const auto& field : schema.fields())
    if (field.default_value) values[field.key] = *field.default_value;
  for (const auto& [key, value] : overrides) {
    const ConfigField* field = schema.find(key);
    if (!field) {
      if (error) *error = "unknown key '" + key + "'";
      return {};
    }
    if (std::string why = field->validate(value); !why.empty()) {
      if (error) *error = key + ": " + why;
      return {};
    }
    values[key] = value;
    set.push_back(key);
  }
  return Config(std::move(values), std::move(set));
}

}  // namespace nudge::test
