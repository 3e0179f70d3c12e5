#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "errors.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/health_probe.hpp"

namespace nudge::plugins::postgres {

/// Stores messages in a PostgreSQL table, one statement per batch or slice
/// of a batch (`INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (id) DO
/// NOTHING`), so a replayed batch adds no row. Each connection (`writers` of
/// them) lives on a worker thread of its own; a large batch is cut into
/// slices written at once, one per connection, and completes when all are
/// in. The first connection also creates the table and answers history
/// reads, in the order asked. A lost connection is reopened on its next use.
class PostgresSink final : public Sink {
 public:
  PostgresSink(const Config& config, Context& context);
  ~PostgresSink() override;
  static ConfigSchema schema() { return PostgresConfig::schema(); }

  // Sink
  /// Connects (waiting up to wait_for_database_ms for the server), then
  /// creates or migrates the table. Blocks the calling thread until done: the
  /// SDK's start() is synchronous (see README).
  Status start() override;
  void write(BatchPtr batch, Completion done) override;
  bool supports_history() const override { return true; }
  /// Runs on the worker, queued behind writes asked before it (see README).
  void read_history(HistoryQuery query, HistoryHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Not ready while there is no working connection, as the last health
  /// check or write found (a check answers within about a second).
  Readiness readiness() const override;
  /// Only health_check_interval_ms is live.
  Status reconfigure(const Config& config) override;

 private:
  struct Session;
  /// One connection and the thread its calls run on.
  struct Lane {
    std::unique_ptr<BlockingWorker> worker;
    std::unique_ptr<Session> session;  ///< touched on the lane's worker thread only
  };
  struct WriteResult {
    Status status;
    std::size_t inserted = 0;
    std::size_t repaired = 0;
  };
  struct ReadResult {
    Status status;
    std::vector<MessagePtr> messages;
    std::size_t skipped = 0;  ///< rows whose id could not be read back (never expected)
  };

  /// Accounts for a written batch and hands its status to the runtime.
  void finish_write(const Batch& batch, WriteResult result, const Completion& done);
  /// On the first connection's worker: what a health check (`SELECT 1`)
  /// found; an empty string when the connection works.
  std::string check_now();

  // On the lane's worker thread only.
  Status open();
  std::optional<DatabaseError> connect(Lane& lane);
  Status migrate();
  /// Reconnects when the lane's session was lost; an unavailable Status if it cannot.
  Status ensure_session(Lane& lane);
  WriteResult write_now(Lane& lane, Batch::const_iterator first, Batch::const_iterator last);
  ReadResult read_now(const HistoryQuery& query);
  /// `reading`: a history read failed, not a batch (changes what is logged).
  Status fail(Lane& lane, const DatabaseError& error, const std::string& doing, bool reading = false);
  void disconnect(Lane& lane);

  PostgresConfig config_;
  Context& context_;
  const std::string display_url_;  ///< the url without its password
  const std::string insert_sql_;
  /// lanes_[0] also migrates and reads history; all exist from start().
  std::vector<Lane> lanes_;
  Counter& rows_inserted_;
  Counter& rows_duplicate_;
  Counter& db_errors_;
  Counter& reconnects_;
  Counter& texts_repaired_;
  Counter& history_reads_;
  Counter& history_rows_skipped_;
  Gauge& connected_;
  Counter& health_checks_;
  /// Readiness, from health checks on lanes_[0] and what writes learn.
  HealthProbe probe_;
  /// Writes and reads queued on the first connection's worker, on the loop
  /// only: a health check waits for an idle worker.
  std::size_t lane0_jobs_ = 0;
};

}  // namespace nudge::plugins::postgres
