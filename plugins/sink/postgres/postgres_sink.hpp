#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "errors.hpp"
#include "nudge/sdk.hpp"

namespace nudge::plugins::postgres {

/// Stores messages in a PostgreSQL table, one statement per batch
/// (`INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (id) DO NOTHING`), so a
/// replayed batch adds no row. The connection lives on a worker thread of its
/// own and every database call runs there, one at a time in the order they
/// came; a lost connection is reopened on the next write or history read.
/// Reads a room's history back through the (room, id) index.
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

 private:
  struct Session;
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

  // Worker thread only.
  Status open();
  std::optional<DatabaseError> connect();
  Status migrate();
  /// Reconnects when the last session was lost; an unavailable Status if it cannot.
  Status ensure_session();
  WriteResult write_now(const Batch& batch);
  ReadResult read_now(const HistoryQuery& query);
  /// `reading`: a history read failed, not a batch (changes what is logged).
  Status fail(const DatabaseError& error, const std::string& doing, bool reading = false);
  void disconnect();

  PostgresConfig config_;
  Context& context_;
  const std::string display_url_;  ///< the url without its password
  const std::string insert_sql_;
  std::unique_ptr<Session> session_;  ///< touched on the worker thread only
  std::unique_ptr<BlockingWorker> worker_;
  Counter& rows_inserted_;
  Counter& rows_duplicate_;
  Counter& db_errors_;
  Counter& reconnects_;
  Counter& texts_repaired_;
  Counter& history_reads_;
  Counter& history_rows_skipped_;
  Gauge& connected_;
};

}  // namespace nudge::plugins::postgres
