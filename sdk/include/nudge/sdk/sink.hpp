#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nudge/sdk/history.hpp"
#include "nudge/sdk/log.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// The final store (`postgres`, `mysql`, `sqlite`), written in batches.
class Sink : public Plugin {
 public:
  static constexpr PluginKind kind = PluginKind::sink;

  /// Opens the store and creates or migrates its tables. A failure here stops
  /// the startup (the message should say how to fix it).
  virtual Status start() = 0;

  /// Writes a batch and calls `done` on the executor. Must be idempotent by
  /// message id: a batch written again (after a crash, a rebalance or a retry)
  /// adds no row. An error with a retryable() Status makes the runtime retry
  /// the same batch with backoff; the runtime never has two writes in flight.
  virtual void write(BatchPtr batch, Completion done) = 0;

  /// Whether this sink can read messages back (read_history). Sinks that
  /// cannot leave both methods alone; the runtime then offers no history.
  virtual bool supports_history() const { return false; }

  /// Reads stored messages of one room, oldest first, and calls `done` on the
  /// executor with them (never blocks the loop). The messages carry id, room,
  /// sender, payload, timestamp and origin as written. Only called after
  /// start() succeeded and when supports_history() is true.
  virtual void read_history(HistoryQuery query, HistoryHandler done) {
    (void)query;
    done(Status::error(StatusCode::invalid_argument, "this sink keeps no history"), {});
  }
};

}  // namespace nudge
