#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "nudge/sdk/message.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// A batch of messages on its way to the sink, in log order per partition.
using Batch = std::vector<MessagePtr>;
using BatchPtr = std::shared_ptr<const Batch>;

/// The log's consumer side hands batches to this (implemented by the runtime,
/// which writes them to the sink).
class LogConsumer {
 public:
  virtual ~LogConsumer() = default;

  /// Processes `batch` and calls `done` exactly once, on the executor. With
  /// an ok Status the log commits the batch's positions; with an error it
  /// commits nothing and delivers those messages again later. The log hands
  /// over no further batch until `done` has been called.
  virtual void on_batch(BatchPtr batch, Completion done) = 0;
};

/// What the runtime asks of a log, decided by the pipeline's shape.
struct LogStartOptions {
  /// A source feeds the pipeline: append() will be called.
  bool produce = false;
  /// A sink follows the log: consume and hand batches to this; null when not.
  LogConsumer* consumer = nullptr;
  /// The most messages one batch may hold.
  std::size_t max_batch_messages = 500;
};

/// The durable, replayable buffer between ingestion and storage (`kafka`).
class Log : public Plugin {
 public:
  static constexpr PluginKind kind = PluginKind::log;

  /// Starts the producer and/or consumer side as `options` says. Connection
  /// problems are retried in the background; only configuration problems
  /// fail here.
  virtual Status start(const LogStartOptions& options) = 0;

  /// Appends a message. `done` runs once the log has durably stored it (ok)
  /// or gave up on it (error, e.g. StatusCode::timeout); never both, never
  /// twice, and never ok for a message that was not stored.
  virtual void append(const MessagePtr& message, Completion done) = 0;

  /// Messages stored in the log that this instance's consumer has not yet
  /// handed to the sink and had confirmed, summed over the partitions it
  /// owns (the backlog). nullopt when unknown (not consuming, or not yet
  /// measured). Cheap; called on the executor about once a second.
  virtual std::optional<std::int64_t> consumer_lag() const { return std::nullopt; }

  /// Changes LogStartOptions::max_batch_messages while running (a reload of
  /// the sink's batch_max_messages); applies from the next batch handed over.
  /// A log without a consumer side ignores it.
  virtual void set_max_batch_messages(std::size_t max) { (void)max; }
};

}  // namespace nudge
