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

namespace nudge::plugins::mysql {

/// Stores messages in a MySQL or MariaDB table with multi-row prepared
/// inserts (`INSERT ... ON DUPLICATE KEY UPDATE id = id`), so a replayed batch
/// adds no row, and reads a room's history back through the (room, id) index.
/// The connection lives on a worker thread of its own and every libmariadb
/// call runs there, one at a time in the order they came; a lost connection is
/// reopened on the next write or history read.
class MysqlSink final : public Sink {
 public:
  MysqlSink(const Config& config, Context& context);
  ~MysqlSink() override;
  static ConfigSchema schema() { return MysqlConfig::schema(); }

  // Sink
  /// Connects (waiting up to wait_for_database_ms for the server), then
  /// creates or checks the table. Blocks the calling thread until done: the
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
  class Session;
  struct WriteResult {
    Status status;
    std::size_t inserted = 0;
    std::size_t texts_repaired = 0;
    std::size_t timestamps_clamped = 0;
  };
  struct ReadResult {
    Status status;
    std::vector<MessagePtr> messages;
    std::size_t skipped = 0;  ///< rows whose id is not a UUID (written by something else)
  };

  /// Worker thread: what a health check (`SELECT 1`) found; empty when the
  /// connection works.
  std::string check_now();

  // Worker thread only.
  Status open();
  std::optional<DatabaseError> connect();
  Status migrate();
  /// Adds the (room, id) index to a table made without it.
  Status add_history_index();
  /// Reconnects when the last session was lost; an unavailable Status if it cannot.
  Status ensure_session();
  WriteResult write_now(const Batch& batch);
  ReadResult read_now(const HistoryQuery& query);
  /// `reading`: a history read failed, not a batch (changes what is logged).
  Status fail(const DatabaseError& error, const std::string& doing, bool reading = false);
  void disconnect();
  /// Closes the session and ends libmariadb's use of the worker thread.
  void leave_worker_thread();

  MysqlConfig config_;
  Context& context_;
  const std::string display_url_;                   ///< the url without its password
  std::unique_ptr<Session> session_;                ///< touched on the worker thread only
  bool thread_initialised_ = false;                 ///< worker thread only: mysql_thread_init was called
  ServerFlavour flavour_ = ServerFlavour::unknown;  ///< worker thread only: of the last connection
  std::unique_ptr<BlockingWorker> worker_;
  Counter& rows_inserted_;
  Counter& rows_duplicate_;
  Counter& db_errors_;
  Counter& reconnects_;
  Counter& texts_repaired_;
  Counter& timestamps_clamped_;
  Counter& history_reads_;
  Counter& history_rows_skipped_;
  Gauge& connected_;
  Counter& health_checks_;
  /// Readiness, from health checks on the worker and what writes learn.
  HealthProbe probe_;
  /// Writes and reads queued on the worker, on the loop only: a health
  /// check waits for an idle worker.
  std::size_t jobs_ = 0;
};

}  // namespace nudge::plugins::mysql
