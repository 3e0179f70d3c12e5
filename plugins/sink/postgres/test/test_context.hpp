#pragma once

// A nudge::Context for driving a plugin in tests without the runtime: a local
// io_context as the event loop, a logger to stderr that also keeps its lines,
// and a plain metrics registry.

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "nudge/sdk.hpp"

namespace nudge::testing {

class TestLogger final : public Logger {
 public:
  bool enabled(LogLevel level) const noexcept override { return level >= LogLevel::debug; }
  void write(LogLevel level, std::string_view text) override {
    static constexpr const char* names[] = {"trace", "debug", "info", "warn", "error"};
    std::lock_guard lock(mutex_);
    std::fprintf(stderr, "[%s] sink.postgres: %.*s\n", names[static_cast<int>(level)], static_cast<int>(text.size()),
                 text.data());
    lines_.emplace_back(text);
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
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
  std::uint64_t count(const std::string& name) { return counter(name, "").value(); }
  std::int64_t level(const std::string& name) { return gauge(name, "").value(); }

 private:
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Counter>> counters_;
  std::map<std::string, std::unique_ptr<Gauge>> gauges_;
};

class TestContext final : public Context {
 public:
  TestContext() : guard_(boost::asio::make_work_guard(io_)) {}

  boost::asio::any_io_executor executor() const override { return io_.get_executor(); }
  Logger& logger() override { return logger_; }
  Metrics& metrics() override { return metrics_; }
  std::string_view instance_id() const override { return "test-instance"; }
  std::string_view pipeline_name() const override { return "test"; }

  /// Runs the event loop until `ready()` holds (the work guard keeps run_one
  /// waiting for completions posted by worker threads).
  template <class Ready>
  void run_until(Ready ready) {
    while (!ready()) io_.run_one();
  }

  TestLogger& test_logger() { return logger_; }
  TestMetrics& test_metrics() { return metrics_; }

 private:
  mutable boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  TestLogger logger_;
  TestMetrics metrics_;
};

/// Calls sink.write(batch) and runs the loop until its completion.
template <class SinkT>
Status write_and_wait(TestContext& context, SinkT& sink, BatchPtr batch) {
  std::optional<Status> result;
  sink.write(std::move(batch), [&](Status s) { result = std::move(s); });
  context.run_until([&] { return result.has_value(); });
  return *result;
}

/// Calls sink.stop() and runs the loop until it is done.
template <class SinkT>
void stop_and_wait(TestContext& context, SinkT& sink) {
  bool stopped = false;
  sink.stop([&] { stopped = true; });
  context.run_until([&] { return stopped; });
}

/// A Config from the plugin's schema defaults plus `values`; every field is
/// validated, and the errors are returned the way the runtime would list them.
inline Config make_config(const ConfigSchema& schema, std::map<std::string, ConfigValue, std::less<>> values,
                          std::vector<std::string>* errors = nullptr) {
  std::vector<std::string> set;
  for (const auto& [key, value] : values) set.push_back(key);
  for (const auto& field : schema.fields()) {
    auto it = values.find(field.key);
    if (it == values.end()) {
      if (field.required()) {
        if (errors) errors->push_back(field.key + ": missing required key");
        continue;
      }
      values.emplace(field.key, *field.default_value);
      continue;
    }
    if (auto error = field.validate(it->second); !error.empty() && errors) errors->push_back(field.key + ": " + error);
  }
  for (const auto& [key, value] : values)
    if (!schema.find(key) && errors) errors->push_back("unknown key '" + key + "'");
  return Config(std::move(values), std::move(set));
}

}  // namespace nudge::testing
