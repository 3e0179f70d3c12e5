#include "sqlite_sink.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>

#include <sqlite3.h>

namespace nudge::plugins::sqlite {

namespace {

Status db_error(sqlite3* db, const std::string& what) {
  const int code = db ? sqlite3_errcode(db) : SQLITE_CANTOPEN;
  // A locked or busy database, or a full disk, may clear up: let the runtime retry.
  const bool transient = code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_FULL || code == SQLITE_IOERR;
  return Status::error(transient ? StatusCode::unavailable : StatusCode::internal,
                       what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

/// Finalizes a statement on every path out of a scope.
struct Statement {
  sqlite3_stmt* stmt = nullptr;
  ~Statement() { sqlite3_finalize(stmt); }
};

/// A column's bytes, as stored (TEXT or BLOB; embedded NULs kept).
std::string column_bytes(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);  // before _bytes, as SQLite asks
  const int size = sqlite3_column_bytes(stmt, column);
  return data ? std::string(static_cast<const char*>(data), static_cast<std::size_t>(size)) : std::string();
}

}  // namespace

SqliteSink::SqliteSink(const Config& config, Context& context)
    : config_(SqliteConfig::from(config)),
      context_(context),
      rows_inserted_(context.metrics().counter("rows_inserted", "Rows inserted")),
      rows_duplicate_(context.metrics().counter("rows_duplicate", "Rows skipped because their id was stored already")),
      history_reads_(context.metrics().counter("history_reads", "History reads answered")),
      history_rows_skipped_(context.metrics().counter("history_rows_skipped",
                                                      "Rows a history read left out because their id is not a UUID")) {}

SqliteSink::~SqliteSink() {
  worker_.reset();
  if (db_) sqlite3_close(db_);
}

Status SqliteSink::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    return Status::error(StatusCode::internal, std::string(sql).substr(0, 40) + "…: " + text);
  }
  return Status::success();
}

Status SqliteSink::start() {
  const std::filesystem::path path(config_.path);
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (sqlite3_open_v2(config_.path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    return db_error(db_, "cannot open '" + config_.path + "'");
  sqlite3_busy_timeout(db_, static_cast<int>(config_.busy_timeout_ms));
  const std::string setup = "PRAGMA journal_mode=WAL; PRAGMA synchronous=" + config_.synchronous +
                            ";"
                            "CREATE TABLE IF NOT EXISTS " +
                            config_.table +
                            " ("
                            "  id TEXT PRIMARY KEY,"
                            "  room TEXT NOT NULL,"
                            "  sender TEXT NOT NULL,"
                            "  payload BLOB NOT NULL,"
                            "  created_at INTEGER NOT NULL,"
                            "  origin TEXT NOT NULL,"
                            "  log_partition INTEGER,"
                            "  log_offset INTEGER"
                            ") WITHOUT ROWID;"
                            // History reads: a room's messages by id (see README). Tables made
                            // by earlier versions keep their (room, created_at) index as well.
                            "CREATE INDEX IF NOT EXISTS " +
                            config_.table + "_room_id ON " + config_.table + " (room, id);";
  if (auto s = exec(setup.c_str()); !s.ok())
    return Status::error(s.code(), "cannot create table in '" + config_.path + "': " + s.message());
  worker_ = std::make_unique<BlockingWorker>(context_.executor());
  context_.logger().info("writing to '", config_.path, "' table '", config_.table, "'");
  return Status::success();
}

Status SqliteSink::write_now(const Batch& batch, std::size_t& inserted) {
  inserted = 0;
  if (auto s = exec("BEGIN IMMEDIATE"); !s.ok()) return Status::error(StatusCode::unavailable, s.message());
  Statement insert;
  const std::string sql = "INSERT OR IGNORE INTO " + config_.table +
                          " (id, room, sender, payload, created_at, origin, log_partition, log_offset)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &insert.stmt, nullptr) != SQLITE_OK) {
    auto error = db_error(db_, "cannot prepare insert");
    exec("ROLLBACK");
    return error;
  }
  for (const auto& m : batch) {
    const std::string id = m->id.to_string();
    sqlite3_bind_text(insert.stmt, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(insert.stmt, 2, m->room.data(), static_cast<int>(m->room.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert.stmt, 3, m->sender.data(), static_cast<int>(m->sender.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert.stmt, 4, m->payload.data(), static_cast<int>(m->payload.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert.stmt, 5, m->timestamp_ms);
    sqlite3_bind_text(insert.stmt, 6, m->origin.data(), static_cast<int>(m->origin.size()), SQLITE_STATIC);
    if (m->log_position.valid()) {
      sqlite3_bind_int(insert.stmt, 7, m->log_position.partition);
      sqlite3_bind_int64(insert.stmt, 8, m->log_position.offset);
    } else {
      sqlite3_bind_null(insert.stmt, 7);
      sqlite3_bind_null(insert.stmt, 8);
    }
    if (sqlite3_step(insert.stmt) != SQLITE_DONE) {
      auto error = db_error(db_, "insert failed");
      exec("ROLLBACK");
      return error;
    }
    inserted += static_cast<std::size_t>(sqlite3_changes(db_));
    sqlite3_reset(insert.stmt);
  }
  if (auto s = exec("COMMIT"); !s.ok()) {
    exec("ROLLBACK");
    return Status::error(StatusCode::unavailable, s.message());
  }
  return Status::success();
}

void SqliteSink::write(BatchPtr batch, Completion done) {
  worker_->run(
      [this, batch] {
        std::size_t inserted = 0;
        Status status = write_now(*batch, inserted);
        return std::make_pair(std::move(status), inserted);
      },
      [this, batch, done = std::move(done)](std::pair<Status, std::size_t> result) {
        if (result.first.ok()) {
          rows_inserted_.add(result.second);
          rows_duplicate_.add(batch->size() - result.second);
          last_write_error_.clear();
        } else {
          last_write_error_ = result.first.message().empty() ? std::string("unknown error") : result.first.message();
        }
        done(std::move(result.first));
      });
}

Readiness SqliteSink::readiness() const {
  if (!worker_) return Readiness::no("database '" + config_.path + "' is not open");
  if (!last_write_error_.empty())
    return Readiness::no("the last write to '" + config_.path + "' failed: " + last_write_error_);
  return Readiness::yes();
}

Status SqliteSink::read_now(const HistoryQuery& query, std::vector<MessagePtr>& out, std::size_t& skipped) {
  out.clear();
  skipped = 0;
  if (query.limit == 0) return Status::success();
  // Ids are lower-case canonical UUIDv7 text, so text order (BINARY collation)
  // is id order, which is time order. Without `after`: the newest `limit`,
  // read backwards along the (room, id) index and reversed below.
  const std::string sql = "SELECT id, room, sender, payload, created_at, origin, log_partition, log_offset FROM " +
                          config_.table +
                          (query.after ? " WHERE room = ?1 AND id > ?3 ORDER BY id ASC LIMIT ?2"
                                       : " WHERE room = ?1 ORDER BY id DESC LIMIT ?2");
  Statement select;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &select.stmt, nullptr) != SQLITE_OK)
    return db_error(db_, "cannot prepare the history read of table '" + config_.table + "'");
  const auto limit = static_cast<sqlite3_int64>(
      std::min<std::size_t>(query.limit, static_cast<std::size_t>(std::numeric_limits<sqlite3_int64>::max())));
  const std::string after = query.after ? query.after->to_string() : std::string();
  sqlite3_bind_text(select.stmt, 1, query.room.data(), static_cast<int>(query.room.size()), SQLITE_STATIC);
  sqlite3_bind_int64(select.stmt, 2, limit);
  if (query.after) sqlite3_bind_text(select.stmt, 3, after.data(), static_cast<int>(after.size()), SQLITE_STATIC);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select.stmt)) == SQLITE_ROW) {
    const std::string id_text = column_bytes(select.stmt, 0);
    const auto id = MessageId::parse(id_text);
    if (!id) {
      ++skipped;
      continue;
    }
    auto m = std::make_shared<Message>();
    m->id = *id;
    m->room = column_bytes(select.stmt, 1);
    m->sender = column_bytes(select.stmt, 2);
    m->payload = column_bytes(select.stmt, 3);
    m->timestamp_ms = sqlite3_column_int64(select.stmt, 4);
    m->origin = column_bytes(select.stmt, 5);
    if (sqlite3_column_type(select.stmt, 6) != SQLITE_NULL && sqlite3_column_type(select.stmt, 7) != SQLITE_NULL) {
      m->log_position.partition = sqlite3_column_int(select.stmt, 6);
      m->log_position.offset = sqlite3_column_int64(select.stmt, 7);
    }
    out.push_back(std::move(m));
  }
  if (rc != SQLITE_DONE) {
    out.clear();
    return db_error(db_, "history read of table '" + config_.table + "' failed");
  }
  if (!query.after) std::reverse(out.begin(), out.end());
  return Status::success();
}

void SqliteSink::read_history(HistoryQuery query, HistoryHandler done) {
  if (!worker_ || !db_) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::internal, "read_history() called before start() or after stop()"), {});
    });
    return;
  }
  struct Result {
    Status status;
    std::vector<MessagePtr> messages;
    std::size_t skipped = 0;
  };
  // Queued behind any write in progress: a read sees every batch confirmed before it was asked.
  worker_->run(
      [this, query = std::move(query)] {
        Result r;
        r.status = read_now(query, r.messages, r.skipped);
        return r;
      },
      [this, done = std::move(done)](Result r) {
        if (r.status.ok()) {
          history_reads_.add();
          if (r.skipped) {
            history_rows_skipped_.add(r.skipped);
            context_.logger().warn("a history read of table '", config_.table, "' left out ", r.skipped,
                                   " rows whose id is not a UUID (rows this sink did not write)");
          }
        } else {
          context_.logger().warn("cannot read history from '", config_.path, "': ", r.status.message());
        }
        done(std::move(r.status), std::move(r.messages));
      });
}

void SqliteSink::stop(std::function<void()> done) {
  // Lets a write in progress finish, so its completion reaches the runtime
  // first: the worker posted it when the write ended, so `done` is posted
  // behind it (called here directly, it overtook that completion).
  if (worker_) worker_->shutdown();
  if (db_) {
    sqlite3_close(db_);
    db_ = nullptr;
  }
  boost::asio::post(context_.executor(), std::move(done));
}

}  // namespace nudge::plugins::sqlite
