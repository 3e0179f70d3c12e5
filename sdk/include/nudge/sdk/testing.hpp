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
//
// For a sink (any type with Sink's write/read_history/stop), the *_and_wait
// helpers below call one method and run the test's io_context until its
// completion comes, or a timeout status when none comes in time:
//
//     EXPECT_TRUE(nudge::testing::write_and_wait(io, sink, batch).ok());
//     EXPECT_TRUE(nudge::testing::stop_and_wait(io, sink));

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk/config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/log.hpp"
#include "nudge/sdk/message.hpp"
#include "nudge/sdk/sink.hpp"
#include "nudge/sdk/status.hpp"

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
    if (level >= print_from_) std::cerr << "[" << to_string(level) << "] " << name_ << ": " << text << "\n";
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
  std::string name_;
  LogLevel print_from_ = LogLevel::warn;
  mutable std::mutex mutex_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

/// Metrics kept in memory, readable by name (and labels).
class TestMetrics final : public Metrics {
 public:
  using Metrics::counter;
  using Metrics::gauge;

  Counter& counter(std::string_view name, std::string_view, const MetricLabels& labels) override {
    std::lock_guard lock(mutex_);
    auto& slot = counters_[series(name, labels)];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
  }
  Gauge& gauge(std::string_view name, std::string_view, const MetricLabels& labels) override {
    std::lock_guard lock(mutex_);
    auto& slot = gauges_[series(name, labels)];
    if (!slot) slot = std::make_unique<Gauge>();
    return *slot;
  }
  std::uint64_t value(std::string_view name, const MetricLabels& labels = {}) {
    return counter(name, "", labels).value();
  }
  std::int64_t gauge_value(std::string_view name, const MetricLabels& labels = {}) {
    return gauge(name, "", labels).value();
  }

 private:
  static std::string series(std::string_view name, const MetricLabels& labels) {
    std::string key(name);
    for (const auto& [label, value] : labels) key += "," + label + "=" + value;
    return key;
  }

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
  run_until(
      io, [] { return false; }, duration);
}

/// Every error in `values` against `schema`, all at once as the runtime lists
/// them (make_config stops at the first): a bad value, a missing required
/// key, an unknown key.
inline std::vector<std::string> config_errors(const ConfigSchema& schema,
                                              const std::map<std::string, ConfigValue>& values) {
  std::vector<std::string> errors;
  for (const auto& field : schema.fields()) {
    auto it = values.find(field.key);
    if (it == values.end()) {
      if (field.required()) errors.push_back(field.key + ": missing required key");
    } else if (auto error = field.validate(it->second); !error.empty()) {
      errors.push_back(field.key + ": " + error);
    }
  }
  for (const auto& [key, value] : values)
    if (!schema.find(key)) errors.push_back("unknown key '" + key + "'");
  return errors;
}

/// The default limit of the *_and_wait helpers: long enough for any write of
/// a sink's tests, including one that waits out a connect timeout against a
/// server that is down.
inline constexpr std::chrono::milliseconds kWaitLimit = std::chrono::seconds(60);

/// Calls sink.write(batch) (SinkT: a nudge::Sink or any type with its write())
/// and runs `io` until its completion; a timeout status when none comes
/// within `timeout`.
template <class SinkT>
Status write_and_wait(boost::asio::io_context& io, SinkT& sink, BatchPtr batch,
                      std::chrono::milliseconds timeout = kWaitLimit) {
  // Shared: the callback may still come after a timeout.
  auto result = std::make_shared<std::optional<Status>>();
  sink.write(std::move(batch), [result](Status s) { *result = std::move(s); });
  if (!run_until(
          io, [&] { return result->has_value(); }, timeout))
    return Status::error(StatusCode::timeout, "write did not complete within the test's limit");
  return **result;
}

/// What a history read answered.
struct HistoryResult {
  Status status;
  std::vector<MessagePtr> messages;
};

/// Calls sink.read_history(query) (SinkT: a nudge::Sink or any type with its
/// read_history()) and runs `io` until its answer; a timeout status when none
/// comes within `timeout`.
template <class SinkT>
HistoryResult read_and_wait(boost::asio::io_context& io, SinkT& sink, HistoryQuery query,
                            std::chrono::milliseconds timeout = kWaitLimit) {
  auto result = std::make_shared<std::optional<HistoryResult>>();
  sink.read_history(std::move(query), [result](Status s, std::vector<MessagePtr> m) {
    *result = HistoryResult{std::move(s), std::move(m)};
  });
  if (!run_until(
          io, [&] { return result->has_value(); }, timeout))
    return {Status::error(StatusCode::timeout, "history read did not complete within the test's limit"), {}};
  return **result;
}

/// Calls sink.stop() (SinkT: a nudge::Sink or any type with its stop()) and
/// runs `io` until it is done; false on timeout.
template <class SinkT>
bool stop_and_wait(boost::asio::io_context& io, SinkT& sink, std::chrono::milliseconds timeout = kWaitLimit) {
  auto stopped = std::make_shared<bool>(false);
  sink.stop([stopped] { *stopped = true; });
  return run_until(
      io, [&] { return *stopped; }, timeout);
}

}  // namespace nudge::testing
