#pragma once

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
};

}  // namespace nudge
