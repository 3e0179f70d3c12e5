#include "mysql_sink.hpp"

#include <mysql.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <future>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "nudge/sdk/startup_retry.hpp"
#include "rows.hpp"
#include "server.hpp"
#include "sql.hpp"

namespace nudge::plugins::mysql {

namespace {

/// Prepared inserts kept per session, by row count: the full 500-row one and
/// the remainders that linger-driven batches produce.
constexpr std::size_t kStatementCacheSize = 8;

/// libmariadb's largest packet on the client side; the server's
/// max_allowed_packet is the real limit and is read at connect.
constexpr unsigned long kClientMaxPacket = 1024UL * 1024 * 1024;

/// mysql_library_init is not thread-safe: once per process, before any
/// connection. mysql_library_end is never called: another plugin in the
/// process may still use the library, and the OS frees it at exit.
void init_library_once() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

std::string server_name(ServerFlavour flavour) {
  switch (flavour) {
    case ServerFlavour::mysql:
      return "MySQL";
    case ServerFlavour::mariadb:
      return "MariaDB";
    case ServerFlavour::unknown:
      return "MySQL/MariaDB";
  }
  return "MySQL/MariaDB";
}

}  // namespace

/// One connection and its prepared inserts; lives and dies on the worker thread.
class MysqlSink::Session {
 public:
  explicit Session(MYSQL* conn) : conn_(conn) {}
  ~Session() {
    for (auto& s : statements_) mysql_stmt_close(s.stmt);
    for (MYSQL_STMT* s : history_)
      if (s) mysql_stmt_close(s);
    mysql_close(conn_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  MYSQL* conn() const { return conn_; }

  /// The prepared history read, with or without `after`, prepared on first
  /// use and kept. nullptr with `failure` set on error.
  MYSQL_STMT* history_statement(const TableName& table, bool after, DatabaseError& failure) {
    MYSQL_STMT*& slot = history_[after ? 1 : 0];
    if (slot) return slot;
    MYSQL_STMT* stmt = mysql_stmt_init(conn_);
    if (!stmt) {
      failure = error();
      return nullptr;
    }
    const std::string sql = history_sql(table, after);
    if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
      failure = error(stmt);
      mysql_stmt_close(stmt);
      return nullptr;
    }
    slot = stmt;
    return stmt;
  }

  /// Runs a history statement and appends its rows to `out` as messages (in
  /// the statement's order); rows whose id is not a UUID are counted in
  /// `skipped` and left out.
  std::optional<DatabaseError> read(MYSQL_STMT* stmt, const std::string& room, const std::string* after,
                                    long long limit, std::vector<MessagePtr>& out, std::size_t& skipped) {
    MYSQL_BIND params[4] = {};
    long long room_bytes = static_cast<long long>(room.size());
    std::size_t n = 0;
    auto text = [&](const std::string& value) {
      MYSQL_BIND& b = params[n++];
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = const_cast<char*>(value.data());  // read only: libmariadb copies it into the packet
      b.buffer_length = value.size();
    };
    text(room);
    params[n].buffer_type = MYSQL_TYPE_LONGLONG;
    params[n++].buffer = &room_bytes;
    if (after) text(*after);
    params[n].buffer_type = MYSQL_TYPE_LONGLONG;
    params[n].buffer = &limit;
    if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0) return error(stmt);
    // Frees the result set on every path out, so the cached statement can run again.
    struct FreeResult {
      MYSQL_STMT* stmt;
      ~FreeResult() { mysql_stmt_free_result(stmt); }
    } free_result{stmt};

    // Variable-length columns are bound with no buffer: the fetch reports
    // their lengths (MYSQL_DATA_TRUNCATED) and each is then fetched whole
    // with mysql_stmt_fetch_column.
    constexpr unsigned kColumns = 8;
    constexpr unsigned kTexts[] = {0, 1, 2, 3, 5};  // id, room, sender, payload, origin
    MYSQL_BIND columns[kColumns] = {};
    unsigned long lengths[kColumns] = {};
    my_bool nulls[kColumns] = {};
    MYSQL_TIME created_at{};
    std::int32_t partition = 0;
    std::int64_t offset = 0;
    for (unsigned i : kTexts) columns[i].buffer_type = i == 3 ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
    columns[4].buffer_type = MYSQL_TYPE_DATETIME;
    columns[4].buffer = &created_at;
    columns[4].buffer_length = sizeof created_at;
    columns[6].buffer_type = MYSQL_TYPE_LONG;
    columns[6].buffer = &partition;
    columns[7].buffer_type = MYSQL_TYPE_LONGLONG;
    columns[7].buffer = &offset;
    for (unsigned i = 0; i < kColumns; ++i) {
      columns[i].length = &lengths[i];
      columns[i].is_null = &nulls[i];
    }
    if (mysql_stmt_bind_result(stmt, columns) != 0 || mysql_stmt_store_result(stmt) != 0) return error(stmt);
    for (;;) {
      const int rc = mysql_stmt_fetch(stmt);
      if (rc == MYSQL_NO_DATA) break;
      if (rc != 0 && rc != MYSQL_DATA_TRUNCATED) return error(stmt);
      std::string texts[kColumns];
      for (unsigned i : kTexts) {
        if (nulls[i] || lengths[i] == 0) continue;
        texts[i].resize(lengths[i]);
        MYSQL_BIND whole = {};
        whole.buffer_type = columns[i].buffer_type;
        whole.buffer = texts[i].data();
        whole.buffer_length = lengths[i];
        if (mysql_stmt_fetch_column(stmt, &whole, i, 0) != 0) return error(stmt);
      }
      const auto id = MessageId::parse(texts[0]);
      if (!id) {
        ++skipped;
        continue;
      }
      auto m = std::make_shared<Message>();
      m->id = *id;
      m->room = std::move(texts[1]);
      m->sender = std::move(texts[2]);
      m->payload = std::move(texts[3]);
      m->timestamp_ms = unix_ms(CivilTime{static_cast<int>(created_at.year), created_at.month, created_at.day,
                                          created_at.hour, created_at.minute, created_at.second,
                                          static_cast<unsigned>(created_at.second_part / 1000)});
      m->origin = std::move(texts[5]);
      if (!nulls[6] && !nulls[7]) m->log_position = {partition, offset};
      out.push_back(std::move(m));
    }
    return std::nullopt;
  }

  DatabaseError error() const {
    return make_error(mysql_errno(conn_), mysql_sqlstate(conn_), mysql_error(conn_), server.flavour);
  }
  DatabaseError error(MYSQL_STMT* stmt) const {
    return make_error(mysql_stmt_errno(stmt), mysql_stmt_sqlstate(stmt), mysql_stmt_error(stmt), server.flavour);
  }

  /// Runs a statement that returns no rows.
  std::optional<DatabaseError> query(const std::string& sql) {
    if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) return error();
    if (MYSQL_RES* result = mysql_store_result(conn_)) mysql_free_result(result);
    return std::nullopt;
  }

  /// Runs a query and collects the first column of every row (NULL as "").
  std::optional<DatabaseError> select(const std::string& sql, std::vector<std::string>& values) {
    values.clear();
    if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) return error();
    MYSQL_RES* result = mysql_store_result(conn_);
    if (!result) return mysql_errno(conn_) ? std::optional(error()) : std::nullopt;
    while (MYSQL_ROW row = mysql_fetch_row(result)) {
      const unsigned long* lengths = mysql_fetch_lengths(result);
      values.emplace_back(row[0] ? std::string(row[0], lengths[0]) : std::string());
    }
    mysql_free_result(result);
    return std::nullopt;
  }

  /// The prepared insert for `rows` rows, prepared on first use and kept
  /// (least recently used out first). nullptr with `failure` set on error.
  MYSQL_STMT* insert_statement(const TableName& table, std::size_t rows, DatabaseError& failure) {
    ++clock_;
    for (auto& s : statements_)
      if (s.rows == rows) {
        s.used = clock_;
        return s.stmt;
      }
    MYSQL_STMT* stmt = mysql_stmt_init(conn_);
    if (!stmt) {
      failure = error();
      return nullptr;
    }
    const std::string sql = insert_sql(table, rows);
    if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
      failure = error(stmt);
      mysql_stmt_close(stmt);
      return nullptr;
    }
    if (statements_.size() == kStatementCacheSize) {
      auto oldest = std::min_element(statements_.begin(), statements_.end(),
                                     [](const Prepared& a, const Prepared& b) { return a.used < b.used; });
      mysql_stmt_close(oldest->stmt);
      statements_.erase(oldest);
    }
    statements_.push_back({rows, stmt, clock_});
    return stmt;
  }

  /// Binds rows [first, first + count) to `stmt` and executes it; adds the
  /// affected rows (inserted ones) to `inserted`.
  std::optional<DatabaseError> execute(MYSQL_STMT* stmt, const std::vector<Row>& rows, std::size_t first,
                                       std::size_t count, std::size_t& inserted) {
    std::vector<MYSQL_BIND> binds(count * kParamsPerRow);
    std::vector<MYSQL_TIME> times(count);
    auto text = [](MYSQL_BIND& b, enum_field_types type, std::string_view value) {
      b.buffer_type = type;
      b.buffer = const_cast<char*>(value.data());  // read only: libmariadb copies it into the packet
      b.buffer_length = value.size();
    };
    for (std::size_t i = 0; i < count; ++i) {
      const Row& row = rows[first + i];
      MYSQL_BIND* b = &binds[i * kParamsPerRow];
      text(b[0], MYSQL_TYPE_STRING, row.id);
      text(b[1], MYSQL_TYPE_STRING, row.room);
      text(b[2], MYSQL_TYPE_STRING, row.sender);
      // A BLOB parameter carries bytes: no character set conversion.
      text(b[3], MYSQL_TYPE_BLOB, row.payload);
      MYSQL_TIME& t = times[i];
      t.year = static_cast<unsigned>(row.created_at.year);
      t.month = row.created_at.month;
      t.day = row.created_at.day;
      t.hour = row.created_at.hour;
      t.minute = row.created_at.minute;
      t.second = row.created_at.second;
      t.second_part = row.created_at.millisecond * 1000UL;
      t.time_type = MYSQL_TIMESTAMP_DATETIME;
      b[4].buffer_type = MYSQL_TYPE_DATETIME;
      b[4].buffer = &t;
      b[4].buffer_length = sizeof t;
      text(b[5], MYSQL_TYPE_STRING, row.origin);
      b[6].buffer_type = MYSQL_TYPE_LONG;
      b[6].buffer = const_cast<std::int32_t*>(row.log_partition ? &*row.log_partition : nullptr);
      b[6].is_null_value = !row.log_partition;
      b[7].buffer_type = MYSQL_TYPE_LONGLONG;
      b[7].buffer = const_cast<std::int64_t*>(row.log_offset ? &*row.log_offset : nullptr);
      b[7].is_null_value = !row.log_offset;
    }
    if (mysql_stmt_bind_param(stmt, binds.data()) != 0 || mysql_stmt_execute(stmt) != 0) return error(stmt);
    // With ON DUPLICATE KEY UPDATE id = id: 1 per inserted row, 0 per skipped
    // one (the sink never sets CLIENT_FOUND_ROWS, which would count those too).
    inserted += std::min<std::size_t>(count, static_cast<std::size_t>(mysql_stmt_affected_rows(stmt)));
    return std::nullopt;
  }

  ServerInfo server;
  std::size_t max_packet = 0;

 private:
  struct Prepared {
    std::size_t rows;
    MYSQL_STMT* stmt;
    std::uint64_t used;
  };

  MYSQL* conn_;
  std::vector<Prepared> statements_;
  MYSQL_STMT* history_[2] = {nullptr, nullptr};  ///< the history reads without and with `after`
  std::uint64_t clock_ = 0;
};

MysqlSink::MysqlSink(const Config& config, Context& context)
    : config_(MysqlConfig::from(config)),
      context_(context),
      display_url_(config_.url.redacted()),
      rows_inserted_(context.metrics().counter("rows_inserted", "Rows inserted")),
      rows_duplicate_(context.metrics().counter("rows_duplicate", "Rows skipped because their id was stored already")),
      // Not "write_errors": the runtime's sink driver counts failed batches under that name in the same registry.
      db_errors_(context.metrics().counter("db_errors",
                                           "Failed database calls (inserts, history reads, connection attempts)")),
      reconnects_(context.metrics().counter("reconnects", "Connections reopened after one was lost")),
      texts_repaired_(
          context.metrics().counter("texts_repaired",
                                    "Room, sender or origin values stored with U+FFFD for bytes that were not UTF-8, "
                                    "or cut to the column's length")),
      timestamps_clamped_(context.metrics().counter(
          "timestamps_clamped", "Timestamps outside DATETIME's range (years 1000 to 9999), stored at its bound")),
      history_reads_(context.metrics().counter("history_reads", "History reads answered")),
      history_rows_skipped_(context.metrics().counter("history_rows_skipped",
                                                      "Rows a history read left out because their id is not a UUID")),
      connected_(context.metrics().gauge("connected", "1 while a database connection is open")),
      health_checks_(context.metrics().counter("health_checks", "Health checks (SELECT 1) run while idle")),
      probe_(context, server_name(ServerFlavour::unknown), display_url_,
             std::chrono::milliseconds(config_.health_check_interval_ms), health_checks_) {}

MysqlSink::~MysqlSink() {
  probe_.stop();
  if (worker_) {
    // Closes the session on the thread that owns it. After stop() the worker
    // has already done so and no longer runs jobs: this one is then dropped.
    worker_->run_detached([this] { leave_worker_thread(); });
    worker_.reset();  // joins the worker
  }
  connected_.set(0);
}

// ---- start -----------------------------------------------------------------

Status MysqlSink::start() {
  init_library_once();
  worker_ = std::make_unique<BlockingWorker>(context_.executor());
  // The SDK's start() returns its Status synchronously, so wait here for the
  // worker (the event loop has nothing else to do before the sink started).
  std::promise<Status> opened;
  auto result = opened.get_future();
  worker_->run_detached([this, &opened] {
    // libmysqlclient needs this on every thread that uses it (libmariadb 3
    // does not, but it is cheap and keeps the sink correct with either).
    mysql_thread_init();
    thread_initialised_ = true;
    opened.set_value(open());
  });
  Status status = result.get();
  if (!status.ok()) {
    probe_.report(status.message());
    return status;
  }
  probe_.report("");
  probe_.start([this](HealthProbe::Done done) { worker_->run([this] { return check_now(); }, done); },
               [this] { return jobs_ > 0; });
  return status;
}

// ---- readiness -------------------------------------------------------------

Readiness MysqlSink::readiness() const { return probe_.readiness(); }

Status MysqlSink::reconfigure(const Config& config) { return probe_.reconfigure(config); }

std::string MysqlSink::check_now() {
  // A connection found dead is reopened at once: a server that restarted
  // is usable again without waiting for the next check.
  for (bool fresh = false;;) {
    if (!session_) {
      if (auto error = connect()) {
        db_errors_.add();
        return error->describe();
      }
      fresh = true;
      reconnects_.add();
      context_.logger().info("reconnected to ", session_->server.describe(), " at ", display_url_);
    }
    std::vector<std::string> values;
    auto error = session_->select("SELECT 1", values);
    if (!error) return {};
    db_errors_.add();
    disconnect();
    if (fresh) return error->describe();
  }
}

std::optional<DatabaseError> MysqlSink::connect() {
  MYSQL* conn = mysql_init(nullptr);
  if (!conn) return DatabaseError{{StatusCode::unavailable, false}, 0, "", "mysql_init: out of memory"};
  auto session = std::make_unique<Session>(conn);  // closes the connection on every return below
  const unsigned connect_timeout = config_.connect_timeout_s();
  const unsigned io_timeout = config_.io_timeout_s();
  const unsigned tcp = MYSQL_PROTOCOL_TCP;
  const unsigned no_local_infile = 0;
  const my_bool no_reconnect = 0;  // a silent reconnect would lose the session settings and a transaction
  mysql_options(conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
  if (io_timeout) {
    mysql_options(conn, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_options(conn, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
  }
  mysql_options(conn, MYSQL_OPT_PROTOCOL, &tcp);  // "localhost" too: a URL names a TCP endpoint
  mysql_options(conn, MYSQL_OPT_RECONNECT, &no_reconnect);
  mysql_options(conn, MYSQL_OPT_LOCAL_INFILE, &no_local_infile);
  mysql_options(conn, MYSQL_OPT_MAX_ALLOWED_PACKET, &kClientMaxPacket);
  mysql_options(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  mysql_optionsv(conn, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "nudge");
  const auto& url = config_.url;
  if (!mysql_real_connect(conn, url.host.c_str(), url.user.c_str(), url.password.c_str(), url.database.c_str(),
                          url.port, nullptr, 0))
    return session->error();

  session->server = parse_server_info(mysql_get_server_info(conn), mariadb_connection(conn));
  flavour_ = session->server.flavour;
  if (auto e = session->query(session_setup_sql(session->server, config_.statement_timeout_ms))) return e;
  std::vector<std::string> values;
  if (auto e = session->select("SELECT @@max_allowed_packet", values)) return e;
  // 4 MiB (MySQL 5.7's default) should the answer be unreadable: never throw on the worker.
  session->max_packet = 4 * 1024 * 1024;
  if (!values.empty()) std::from_chars(values[0].data(), values[0].data() + values[0].size(), session->max_packet);
  session_ = std::move(session);
  connected_.set(1);
  return std::nullopt;
}

Status MysqlSink::open() {
  StartupRetry retry(std::chrono::milliseconds(config_.wait_for_database_ms));
  for (;;) {
    auto error = connect();
    if (!error) break;
    db_errors_.add();
    // Waiting helps a server that is down or starting, not a wrong password.
    const bool credentials = is_credentials_error(error->code);
    if (credentials || error->what.code != StatusCode::unavailable) {
      return Status::error(error->what.code,
                           "cannot use " + server_name(flavour_) + " at " + display_url_ + ": " + error->describe() +
                               (credentials ? " (check the user, password and database name in 'url')" : ""));
    }
    if (retry.expired()) {
      return Status::error(StatusCode::unavailable,
                           "cannot connect to " + server_name(flavour_) + " at " + display_url_ + retry.waited() +
                               error->describe() +
                               "). Is the server running, and is 'url' right? For local development: "
                               "scripts/services/mariadb start");
    }
    if (retry.attempts() == 1)
      context_.logger().warn("cannot connect to ", server_name(flavour_), " at ", display_url_, " yet (",
                             error->describe(), "); retrying for up to ", config_.wait_for_database_ms, " ms");
    retry.wait();
  }
  if (auto s = migrate(); !s.ok()) {
    disconnect();
    return s;
  }
  context_.logger().info("writing to table '", config_.table.display(), "' at ", display_url_, " (",
                         session_->server.describe(), ", max_allowed_packet ", session_->max_packet, " bytes)");
  return Status::success();
}

Status MysqlSink::migrate() {
  const auto& table = config_.table;
  const std::string where = "table '" + table.display() + "' at " + display_url_;
  auto failed = [&](const DatabaseError& e) {
    db_errors_.add();
    return Status::error(e.what.code, "cannot create or check " + where + ": " + e.describe());
  };
  std::vector<std::string> values;
  if (auto e = session_->select(table_engine_sql(table), values)) return failed(*e);
  if (values.empty()) {
    // IF NOT EXISTS: instances starting together may both get here.
    if (auto e = session_->query(create_table_sql(table))) return failed(*e);
    context_.logger().info("created table '", table.display(), "'");
  } else {
    if (values[0] != "InnoDB")
      context_.logger().warn(where, " uses the storage engine '", values[0],
                             "', not InnoDB: a batch written in several statements is not atomic there");
    if (auto e = session_->select(column_names_sql(table), values)) return failed(*e);
    const std::set<std::string> present(values.begin(), values.end());
    std::string missing;
    for (const auto& column : columns())
      if (!present.count(column.name)) missing += (missing.empty() ? "'" : ", '") + std::string(column.name) + "'";
    if (!missing.empty())
      return Status::error(StatusCode::internal, where + " exists but has no column " + missing +
                                                     ": it was not made by this sink; set 'table' to another name");
    if (auto e = session_->select(unique_id_index_sql(table), values)) return failed(*e);
    if (values.empty())
      return Status::error(StatusCode::internal,
                           where +
                               " exists but has no PRIMARY KEY or UNIQUE index on 'id' alone, which the sink "
                               "needs to skip messages already stored; set 'table' to another name");
    if (auto s = add_history_index(); !s.ok()) return s;
  }
  // Preparing the insert checks the columns as the sink writes them; the
  // statement stays cached for the first batch.
  DatabaseError e;
  if (!session_->insert_statement(table, 1, e)) return failed(e);
  return Status::success();
}

Status MysqlSink::add_history_index() {
  const auto& table = config_.table;
  std::vector<std::string> values;
  auto failed = [&](const DatabaseError& e) {
    db_errors_.add();
    return Status::error(e.what.code, "cannot add the index 'room_id_idx' to table '" + table.display() + "' at " +
                                          display_url_ + ": " + e.describe());
  };
  // Looked up first: CREATE INDEX on a table that has it would still take a
  // metadata lock, and MySQL has no IF NOT EXISTS for it.
  if (auto e = session_->select(room_id_index_sql(table), values)) return failed(*e);
  if (!values.empty()) return Status::success();
  // Another instance starting at the same time may make it first: IF NOT
  // EXISTS on MariaDB, error 1061 on MySQL.
  if (auto e = session_->query(create_index_sql(table, session_->server)); e && e->code != error::dup_key_name)
    return failed(*e);
  if (auto e = session_->select(room_id_index_sql(table), values)) return failed(*e);
  if (values.empty())
    context_.logger().warn("table '", table.display(), "' at ", display_url_,
                           " has an index named 'room_id_idx' on other columns, so the sink could not add its "
                           "(room, id) index: history reads will be slow. Add an index on (room, id)");
  else context_.logger().info("added the index 'room_id_idx' (room, id) to table '", table.display(), "'");
  return Status::success();
}

// ---- write -----------------------------------------------------------------

void MysqlSink::write(BatchPtr batch, Completion done) {
  if (!worker_) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::internal, "write() called before a successful start()"));
    });
    return;
  }
  ++jobs_;
  worker_->run([this, batch] { return write_now(*batch); },
               [this, batch, done = std::move(done)](WriteResult result) {
                 --jobs_;
                 // A write tells whether the database works as well as a health check does.
                 probe_.report(result.status);
                 if (result.status.ok()) {
                   rows_inserted_.add(result.inserted);
                   rows_duplicate_.add(batch->size() - result.inserted);
                   if (result.texts_repaired) {
                     texts_repaired_.add(result.texts_repaired);
                     context_.logger().warn(result.texts_repaired,
                                            " room, sender or origin values in a batch were not valid UTF-8 or "
                                            "too long for their column; stored them with U+FFFD in place of the "
                                            "bad bytes, cut to the column's length");
                   }
                   if (result.timestamps_clamped) {
                     timestamps_clamped_.add(result.timestamps_clamped);
                     context_.logger().warn(result.timestamps_clamped,
                                            " timestamps in a batch were outside DATETIME's range (years 1000 to "
                                            "9999); stored them at the nearest bound");
                   }
                 }
                 done(std::move(result.status));
               });
}

Status MysqlSink::ensure_session() {
  if (session_) return Status::success();
  if (auto error = connect()) {
    db_errors_.add();
    return Status::error(StatusCode::unavailable, "cannot connect to " + server_name(flavour_) + " at " + display_url_ +
                                                      ": " + error->describe());
  }
  reconnects_.add();
  context_.logger().info("reconnected to ", session_->server.describe(), " at ", display_url_);
  return Status::success();
}

MysqlSink::WriteResult MysqlSink::write_now(const Batch& batch) {
  WriteResult result;
  if (batch.empty()) return result;
  if (result.status = ensure_session(); !result.status.ok()) return result;
  const std::string doing =
      "inserting " + std::to_string(batch.size()) + " rows into '" + config_.table.display() + "'";

  EncodedBatch encoded = encode_batch(batch);
  std::vector<std::size_t> sizes(encoded.rows.size());
  std::transform(encoded.rows.begin(), encoded.rows.end(), sizes.begin(), row_packet_bytes);
  const ChunkPlan plan = plan_chunks(sizes, session_->max_packet, kMaxRowsPerStatement);
  if (plan.too_large) {
    const Row& row = encoded.rows[*plan.too_large];
    // Sent anyway, the server would hang up (error 1153). Reconnecting picks
    // up a max_allowed_packet raised in the meantime.
    result.status =
        fail({{StatusCode::internal, true},
              0,
              "",
              "message " + row.id + " takes " + std::to_string(sizes[*plan.too_large]) +
                  " bytes as a statement parameter, more than the server's max_allowed_packet of " +
                  std::to_string(session_->max_packet) + " bytes allows; raise max_allowed_packet on the server"},
             doing);
    return result;
  }

  // One statement is atomic by itself: the common case takes one round trip.
  // Several (a batch over 500 rows or max_allowed_packet) run in one transaction.
  const bool transaction = plan.chunks.size() > 1;
  std::optional<DatabaseError> error;
  if (transaction) error = session_->query("START TRANSACTION");
  for (std::size_t i = 0; !error && i < plan.chunks.size(); ++i) {
    const auto& chunk = plan.chunks[i];
    DatabaseError prepare_error;
    MYSQL_STMT* stmt = session_->insert_statement(config_.table, chunk.count, prepare_error);
    if (!stmt) error = prepare_error;
    else error = session_->execute(stmt, encoded.rows, chunk.first, chunk.count, result.inserted);
  }
  if (!error && transaction && mysql_commit(session_->conn()) != 0) error = session_->error();
  if (error) {
    // Whatever this transaction wrote is undone; the runtime retries the
    // whole batch. (A lost connection rolls back on the server.)
    if (transaction && !error->what.reconnect) mysql_rollback(session_->conn());
    result.inserted = 0;
    result.status = fail(*error, doing);
    return result;
  }
  result.texts_repaired = encoded.texts_repaired;
  result.timestamps_clamped = encoded.timestamps_clamped;
  return result;
}

// ---- history ---------------------------------------------------------------

void MysqlSink::read_history(HistoryQuery query, HistoryHandler done) {
  if (!worker_) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::internal, "read_history() called before a successful start()"), {});
    });
    return;
  }
  ++jobs_;
  worker_->run([this, query = std::move(query)] { return read_now(query); },
               [this, done = std::move(done)](ReadResult result) {
                 --jobs_;
                 if (result.status.ok()) {
                   history_reads_.add();
                   if (result.skipped) {
                     history_rows_skipped_.add(result.skipped);
                     context_.logger().warn("a history read of table '", config_.table.display(), "' left out ",
                                            result.skipped,
                                            " rows whose id is not a UUID (rows this sink did not "
                                            "write)");
                   }
                 }
                 done(std::move(result.status), std::move(result.messages));
               });
}

MysqlSink::ReadResult MysqlSink::read_now(const HistoryQuery& query) {
  ReadResult result;
  if (query.limit == 0) return result;
  if (result.status = ensure_session(); !result.status.ok()) return result;
  // Rooms were stored repaired and cut to the column (see README): look for what was stored.
  std::string room;
  repair_text(query.room, kRoomChars, room);
  const std::string after = query.after ? query.after->to_string() : std::string();
  const auto limit = static_cast<long long>(
      std::min<std::size_t>(query.limit, static_cast<std::size_t>(std::numeric_limits<long long>::max())));
  DatabaseError prepare_error;
  std::optional<DatabaseError> error;
  if (MYSQL_STMT* stmt = session_->history_statement(config_.table, query.after.has_value(), prepare_error))
    error = session_->read(stmt, room, query.after ? &after : nullptr, limit, result.messages, result.skipped);
  else error = prepare_error;
  if (error) {
    result.messages.clear();
    result.status = fail(*error, "reading history from '" + config_.table.display() + "'", true);
    return result;
  }
  if (!query.after) std::reverse(result.messages.begin(), result.messages.end());
  return result;
}

// ---- errors ----------------------------------------------------------------

Status MysqlSink::fail(const DatabaseError& error, const std::string& doing, bool reading) {
  db_errors_.add();
  const std::string server = server_name(flavour_) + " at " + display_url_;
  if (error.what.reconnect && error.what.code == StatusCode::unavailable) {
    const std::string text = "lost the connection to " + server + " while " + doing + " (" + error.describe() + ")";
    disconnect();
    context_.logger().warn(text, "; reconnecting on the next attempt");
    return Status::error(StatusCode::unavailable, text);
  }
  const std::string text = server + " failed " + doing + ": " + error.describe();
  if (error.what.reconnect) disconnect();
  // A failed read goes back to whoever asked; the sink only notes it.
  if (reading) {
    context_.logger().warn(text);
    return Status::error(error.what.code, text);
  }
  // The runtime logs every failed attempt; say more only when waiting will not help.
  if (error.what.code != StatusCode::unavailable)
    context_.logger().error(text,
                            ". This does not clear up by itself: the runtime keeps retrying the batch, "
                            "and the log keeps the backlog, until the table, the server or the data is fixed");
  return Status::error(error.what.code, text);
}

void MysqlSink::disconnect() {
  session_.reset();
  connected_.set(0);
}

void MysqlSink::leave_worker_thread() {
  disconnect();
  if (thread_initialised_) {
    mysql_thread_end();
    thread_initialised_ = false;
  }
}

// ---- stop ------------------------------------------------------------------

void MysqlSink::stop(std::function<void()> done) {
  probe_.stop();
  if (!worker_) {
    done();
    return;
  }
  // Queued behind a write in progress, whose completion thus reaches the
  // runtime first; the event loop never waits on the database.
  worker_->run(
      [this] {
        leave_worker_thread();
        return true;
      },
      [this, done = std::move(done)](bool) {
        worker_->shutdown();
        context_.logger().info("closed the connection to ", display_url_);
        done();
      });
}

}  // namespace nudge::plugins::mysql
