#pragma once

// Helpers for this plugin's tests, on top of nudge/sdk/testing.hpp: drive a
// PostgresSink's write()/read_history()/stop() to completion on a test's
// io_context, and list every error of a configuration the way the runtime
// would.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::postgres::test_helpers {

/// Long enough for any write of these tests, including one that waits out
/// connect_timeout_ms against a server that is down.
inline constexpr std::chrono::milliseconds kWaitLimit = std::chrono::seconds(60);

/// Calls sink.write(batch) and runs `io` until its completion; a timeout status
/// when none comes within `timeout`.
template <class SinkT>
Status write_and_wait(boost::asio::io_context& io, SinkT& sink, BatchPtr batch,
                      std::chrono::milliseconds timeout = kWaitLimit) {
  // Shared: the callback may still come after a timeout.
  auto result = std::make_shared<std::optional<Status>>();
  sink.write(std::move(batch), [result](Status s) { *result = std::move(s); });
  if (!nudge::testing::run_until(io, [&] { return result->has_value(); }, timeout))
    return Status::error(StatusCode::timeout, "write did not complete within the test's limit");
  return **result;
}

/// What a history read answered.
struct HistoryResult {
  Status status;
  std::vector<MessagePtr> messages;
};

/// Calls sink.read_history(query) and runs `io` until its answer; a timeout
/// status when none comes within `timeout`.
template <class SinkT>
HistoryResult read_and_wait(boost::asio::io_context& io, SinkT& sink, HistoryQuery query,
                            std::chrono::milliseconds timeout = kWaitLimit) {
  auto result = std::make_shared<std::optional<HistoryResult>>();
  sink.read_history(std::move(query), [result](Status s, std::vector<MessagePtr> m) {
    *result = HistoryResult{std::move(s), std::move(m)};
  });
  if (!nudge::testing::run_until(io, [&] { return result->has_value(); }, timeout))
    return {Status::error(StatusCode::timeout, "history read did not complete within the test's limit"), {}};
  return **result;
}

/// Calls sink.stop() and runs `io` until it is done; false on timeout.
template <class SinkT>
bool stop_and_wait(boost::asio::io_context& io, SinkT& sink, std::chrono::milliseconds timeout = kWaitLimit) {
  auto stopped = std::make_shared<bool>(false);
  sink.stop([stopped] { *stopped = true; });
  return nudge::testing::run_until(io, [&] { return *stopped; }, timeout);
}

/// Every error in `values` against `schema`, all at once as the runtime lists
/// them (nudge::testing::make_config stops at the first): a bad value, a
/// missing required key, an unknown key.
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

}  // namespace nudge::plugins::postgres::test_helpers
