#pragma once

#include <memory>

#include "config.hpp"
#include "nudge/sdk.hpp"

struct sqlite3;

namespace nudge::plugins::sqlite {

/// Stores messages in a SQLite database (WAL mode), one transaction per
/// batch, `INSERT OR IGNORE` on the message id so a replayed batch adds no row.
/// All database calls run on a worker thread of its own.
class SqliteSink final : public Sink {
 public:
  SqliteSink(const Config& config, Context& context);
  ~SqliteSink() override;
  static ConfigSchema schema() { return SqliteConfig::schema(); }

  // Sink
  Status start() override;
  void write(BatchPtr batch, Completion done) override;
  // Plugin
  void stop(std::function<void()> done) override;

  /// Writes a batch on the calling thread (the worker's job; public for tests).
  /// Returns how many rows were new.
  Status write_now(const Batch& batch, std::size_t& inserted);

 private:
  Status exec(const char* sql);

  SqliteConfig config_;
  Context& context_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<BlockingWorker> worker_;
  Counter& rows_inserted_;
  Counter& rows_duplicate_;
};

}  // namespace nudge::plugins::sqlite
