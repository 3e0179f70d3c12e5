#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "nudge/sdk.hpp"

struct sqlite3;

namespace nudge::plugins::sqlite {

/// Stores messages in a SQLite database (WAL mode), one transaction per
/// batch, `INSERT OR IGNORE` on the message id so a replayed batch adds no row,
/// and reads a room's history back (index on (room, id)). All database calls
/// run on a worker thread of its own, one at a time in the order they came.
class SqliteSink final : public Sink {
 public:
  SqliteSink(const Config& config, Context& context);
  ~SqliteSink() override;
  static ConfigSchema schema() { return SqliteConfig::schema(); }

  // Sink
  Status start() override;
  void write(BatchPtr batch, Completion done) override;
  bool supports_history() const override { return true; }
  void read_history(HistoryQuery query, HistoryHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Not ready before the database is open, and after a write failed until
  /// one succeeds again.
  Readiness readiness() const override;

  /// Writes a batch on the calling thread (the worker's job; public for tests).
  /// Returns how many rows were new.
  Status write_now(const Batch& batch, std::size_t& inserted);

  /// Runs a history read on the calling thread (the worker's job; public for
  /// tests): `out` gets the messages oldest first; `skipped` counts rows left
  /// out because their id is not a UUID (written by something else).
  Status read_now(const HistoryQuery& query, std::vector<MessagePtr>& out, std::size_t& skipped);

 private:
  Status exec(const char* sql);

  SqliteConfig config_;
  Context& context_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<BlockingWorker> worker_;
  /// Why the last write failed; empty after a write succeeded. Loop only.
  std::string last_write_error_;
  Counter& rows_inserted_;
  Counter& rows_duplicate_;
  Counter& history_reads_;
  Counter& history_rows_skipped_;
};

}  // namespace nudge::plugins::sqlite
