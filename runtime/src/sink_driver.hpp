#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "nudge/sdk/context.hpp"
#include "nudge/sdk/sink.hpp"
#include "pipeline_config.hpp"

namespace nudge::runtime {

/// Feeds a sink: one batch write in flight at a time, retried with
/// exponential backoff until it succeeds (the log, or the in-flight window,
/// holds everything behind it meanwhile). With no log in the pipeline it also
/// gathers single messages into batches (size or linger time, whichever first).
class SinkDriver {
 public:
  SinkDriver(boost::asio::any_io_executor executor, Sink& sink, const SinkSettings& settings, Logger& logger,
             Metrics& metrics);

  /// Writes `batch`, retrying until it is written, then calls `done(ok)`.
  /// After shutdown() a pending retry gives up with StatusCode::cancelled.
  void write_with_retry(BatchPtr batch, Completion done);

  /// Adds one message to the next batch (no-log pipelines). `done` runs when
  /// the batch holding it is written.
  void enqueue(MessagePtr message, Completion done);

  /// Stops retrying: a batch waiting for its next attempt completes with
  /// cancelled. A write already running finishes first. Calls `done` once idle.
  void shutdown(std::function<void()> done);

 private:
  struct Pending {
    BatchPtr batch;
    Completion done;
  };

  void attempt();
  void on_written(Status status);
  void flush_gathered();
  void start_next();

  boost::asio::any_io_executor executor_;
  Sink& sink_;
  SinkSettings settings_;
  Logger& logger_;
  Counter& batches_written_;
  Counter& messages_written_;
  Counter& write_errors_;
  Counter& retries_;

  // The batch being written (or waiting to be retried), and those behind it.
  std::unique_ptr<Pending> current_;
  std::vector<Pending> queue_;
  std::int64_t attempts_ = 0;
  boost::asio::steady_timer retry_timer_;

  // Gathering single messages into a batch (no-log pipelines).
  std::vector<MessagePtr> gathered_;
  std::vector<Completion> gathered_done_;
  boost::asio::steady_timer linger_timer_;
  bool linger_armed_ = false;

  bool shutting_down_ = false;
  std::function<void()> on_idle_;
};

}  // namespace nudge::runtime
