#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "engine/metrics.hpp"
#include "engine/pipeline_config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/sink.hpp"

namespace nudge::runtime {

/// Feeds a sink: one batch write in flight at a time, retried with
/// exponential backoff until it succeeds (the log, or the in-flight window,
/// holds everything behind it meanwhile). With no log in the pipeline it also
/// gathers single messages into batches (size or linger time, whichever first).
class SinkDriver {
 public:
  /// `persisted`: observes each written message's time since ingress; may be null.
  SinkDriver(boost::asio::any_io_executor executor, Sink& sink, const SinkSettings& settings, Logger& logger,
             StageStats& stats, Histogram* persisted = nullptr);

  /// Writes `batch`, retrying until it is written, then calls `done(ok)`.
  /// After shutdown() a pending retry gives up with StatusCode::cancelled.
  void write_with_retry(BatchPtr batch, Completion done);

  /// Adds one message to the next batch (no-log pipelines). `done` runs when
  /// the batch holding it is written.
  void enqueue(MessagePtr message, Completion done);

  /// Stops retrying: a batch waiting for its next attempt completes with
  /// cancelled. A write already running finishes first. Calls `done` once idle.
  void shutdown(std::function<void()> done);

  /// Ends the wait before the next attempt of a failing batch (the sink said
  /// it is ready again), so recovery does not wait out the backoff.
  void retry_now();

  /// New batching and retry settings (a reload); they apply to the next batch.
  void set_settings(const SinkSettings& settings) { settings_ = settings; }
  const SinkSettings& settings() const noexcept { return settings_; }

  /// Messages handed over and not yet written (gathered, queued, being written).
  std::size_t waiting_messages() const noexcept;
  /// How long the current batch has been failing (zero when it is not), and why.
  std::chrono::steady_clock::duration failing_for() const;
  const std::string& last_error() const noexcept { return last_error_; }

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
  void update_queue_depth();

  Logger& logger_;
  StageStats& stats_;
  Histogram* persisted_;
  std::string last_error_;
  std::chrono::steady_clock::time_point failing_since_{};

  // The batch being written (or waiting to be retried), and those behind it.
  std::unique_ptr<Pending> current_;
  std::vector<Pending> queue_;
  std::int64_t attempts_ = 0;
  boost::asio::steady_timer retry_timer_;
  bool retry_pending_ = false;

  // Gathering single messages into a batch (no-log pipelines).
  std::vector<MessagePtr> gathered_;
  std::vector<Completion> gathered_done_;
  boost::asio::steady_timer linger_timer_;
  bool linger_armed_ = false;

  bool shutting_down_ = false;
  std::function<void()> on_idle_;
};

}  // namespace nudge::runtime
