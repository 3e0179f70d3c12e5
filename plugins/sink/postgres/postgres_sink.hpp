#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "config.hpp"
#include "errors.hpp"
#include "nudge/sdk.hpp"

namespace nudge::plugins::postgres {

/// Stores messages in a PostgreSQL table, one statement per batch
/// (`INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (id) DO NOTHING`), so a
/// replayed batch adds no row. The connection lives on a worker thread of its
/// own and every database call runs there; a lost connection is reopened on
/// the next write.
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
  // Plugin
  void stop(std::function<void()> done) override;

 private:
  struct Session;
  struct WriteResult {
    Status status;
    std::size_t inserted = 0;
    std::size_t repaired = 0;
  };

  // Worker thread only.
  Status open();
  std::optional<DatabaseError> connect();
  Status migrate();
  WriteResult write_now(const Batch& batch);
  Status fail(const DatabaseError& error, const std::string& doing);
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
  Gauge& connected_;
};

}  // namespace nudge::plugins::postgres
