#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
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

/// A bounded read of the whole log into the sink, in a consumer group of its
/// own (`nudge replay`, Log::start_replay): every partition from a start to an
/// end captured when the replay starts, then Log::replay_progress() says done.
struct LogReplay {
  /// The group to read (and commit) in; empty: the log picks a new one. Never
  /// the pipeline's own group, so its live consumers are not disturbed. A
  /// partition on which this group committed an offset resumes there.
  std::string group;
  /// Where a partition the group has committed nothing on starts: the first
  /// record stored at or after this time (ms since the Unix epoch); nullopt
  /// with `from_offsets` empty: the earliest record the log still holds.
  std::optional<std::int64_t> from_ms;
  /// Instead of a time: the offset each listed partition starts at (others at
  /// the earliest record).
  std::map<std::int32_t, std::int64_t> from_offsets;
  /// Where every partition ends (exclusive): the first record stored at or
  /// after this time; nullopt: the end of the log when the replay started.
  std::optional<std::int64_t> to_ms;
};

/// How far a replay got (Log::replay_progress). Positions are offsets in the
/// log, summed over its partitions.
struct ReplayProgress {
  enum class State {
    planning,  ///< finding each partition's start and end
    reading,   ///< handing batches to the sink
    done,      ///< every partition confirmed up to its end (and committed)
    failed,    ///< cannot replay the range asked for; `error` says why
  };
  State state = State::planning;
  std::string group;       ///< the consumer group it reads in
  std::int64_t done = 0;   ///< records between the starts and what the sink confirmed
  std::int64_t total = 0;  ///< records between the starts and the ends
  std::size_t partitions = 0;
  std::size_t partitions_done = 0;
  std::string error;               ///< failed: why, with the earliest position the log still holds
  std::vector<std::string> notes;  ///< planned: what an operator should know (records gone to retention)
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

  /// Instead of start(), for `nudge replay`: reads `range` into
  /// `options.consumer` (never produces), then replay_progress() says done.
  /// Like start(), only configuration problems fail here; what the log finds
  /// when it looks (the range is gone) is reported through replay_progress().
  /// A log that cannot replay keeps this default.
  virtual Status start_replay(const LogStartOptions& options, const LogReplay& range) {
    (void)options;
    (void)range;
    return Status::error(StatusCode::invalid_argument, "this log cannot replay");
  }

  /// A replay's progress (after start_replay); nullopt when not replaying.
  /// Cheap; on the executor.
  virtual std::optional<ReplayProgress> replay_progress() const { return std::nullopt; }
};

}  // namespace nudge
