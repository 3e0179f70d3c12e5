#include "postgres_sink.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <limits>
#include <set>
#include <thread>

#include <pqxx/binarystring>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include "nudge/sdk/startup_retry.hpp"
#include "sql.hpp"

namespace nudge::plugins::postgres {

/// One database session; lives and dies on the worker thread.
struct PostgresSink::Session {
  explicit Session(const std::string& conninfo) : conn(conninfo) {}
  pqxx::connection conn;
};

namespace {

std::string with_sqlstate(const DatabaseError& e) {
  return e.sqlstate.empty() ? e.message : e.message + " (SQLSTATE " + e.sqlstate + ")";
}

}  // namespace

PostgresSink::PostgresSink(const Config& config, Context& context)
    : config_(PostgresConfig::from(config)),
      context_(context),
      display_url_(redact_url(config_.url)),
      insert_sql_(insert_sql(config_.table)),
      rows_inserted_(context.metrics().counter("rows_inserted", "Rows inserted")),
      rows_duplicate_(context.metrics().counter("rows_duplicate", "Rows skipped because their id was stored already")),
      // Not "write_errors": the runtime's sink driver counts failed batches under that name in the same registry.
      db_errors_(context.metrics().counter("db_errors",
                                           "Failed database calls (inserts, history reads, connection attempts)")),
      reconnects_(context.metrics().counter("reconnects", "Connections reopened after one was lost")),
      texts_repaired_(context.metrics().counter(
          "texts_repaired", "Room, sender or origin values stored with U+FFFD for bytes that were not UTF-8")),
      history_reads_(context.metrics().counter("history_reads", "History reads answered")),
      history_rows_skipped_(context.metrics().counter(
          "history_rows_skipped", "Rows a history read left out because their id could not be read back")),
      connected_(context.metrics().gauge("connected", "1 while a database connection is open")),
      health_checks_(context.metrics().counter("health_checks", "Health checks (SELECT 1) run while idle")),
      probe_(context, "PostgreSQL", display_url_, std::chrono::milliseconds(config_.health_check_interval_ms),
             health_checks_) {}

PostgresSink::~PostgresSink() {
  probe_.stop();
  for (auto& lane : lanes_) lane.worker.reset();  // joins the workers; the sessions are ours alone from here
  lanes_.clear();
  connected_.set(0);
}

// ---- start -----------------------------------------------------------------

Status PostgresSink::start() {
  lanes_.resize(static_cast<std::size_t>(config_.writers));
  for (auto& lane : lanes_) lane.worker = std::make_unique<BlockingWorker>(context_.executor());
  // The SDK's start() returns its Status synchronously, so wait here for the
  // worker (the event loop has nothing else to do before the sink started).
  // The other lanes connect on their first slice.
  std::promise<Status> opened;
  auto result = opened.get_future();
  lanes_[0].worker->run_detached([this, &opened] { opened.set_value(open()); });
  Status status = result.get();
  if (!status.ok()) {
    probe_.report(status.message());
    return status;
  }
  probe_.report("");
  probe_.start([this](HealthProbe::Done done) { lanes_[0].worker->run([this] { return check_now(); }, done); },
               [this] { return lane0_jobs_ > 0; });
  return status;
}

// ---- readiness -------------------------------------------------------------

Readiness PostgresSink::readiness() const { return probe_.readiness(); }

Status PostgresSink::reconfigure(const Config& config) { return probe_.reconfigure(config); }

std::string PostgresSink::check_now() {
  Lane& lane = lanes_[0];
  // A connection found dead is reopened at once: a server that restarted
  // is usable again without waiting for the next check.
  for (bool fresh = false;;) {
    if (!lane.session) {
      if (auto error = connect(lane)) {
        db_errors_.add();
        return with_sqlstate(*error);
      }
      fresh = true;
      reconnects_.add();
      context_.logger().info("reconnected to PostgreSQL at ", display_url_);
    }
    try {
      pqxx::nontransaction tx(lane.session->conn);
      tx.exec1("SELECT 1");
      tx.commit();
      return {};
    } catch (const std::exception& ex) {
      const std::string text = with_sqlstate(classify(ex));
      db_errors_.add();
      disconnect(lane);
      if (fresh) return text.empty() ? std::string("the connection failed") : text;
    }
  }
}

std::optional<DatabaseError> PostgresSink::connect(Lane& lane) {
  try {
    auto session = std::make_unique<Session>(config_.conninfo());
    pqxx::nontransaction tx(session->conn);
    const auto encoding = tx.exec1("SHOW server_encoding")[0].as<std::string>();
    tx.commit();
    if (encoding != "UTF8" && encoding != "SQL_ASCII")
      return DatabaseError{{StatusCode::internal, false},
                           "",
                           "the database uses the encoding '" + encoding +
                               "', which cannot hold all of Unicode; create it with ENCODING 'UTF8'"};
    // set_variable rather than a plain SET, so libpqxx restores it should it reopen the session itself.
    session->conn.set_variable("statement_timeout", std::to_string(config_.statement_timeout_ms));
    lane.session = std::move(session);
    if (&lane == &lanes_[0]) connected_.set(1);
    return std::nullopt;
  } catch (const std::exception& e) {
    return classify(e);
  }
}

Status PostgresSink::open() {
  StartupRetry retry(std::chrono::milliseconds(config_.wait_for_database_ms));
  for (;;) {
    auto error = connect(lanes_[0]);
    if (!error) break;
    db_errors_.add();
    // Waiting helps a server that is down or starting, not a wrong password.
    const bool permanent = is_permanent_connect_error(error->message);
    if (permanent || error->what.code != StatusCode::unavailable) {
      return Status::error(error->what.code == StatusCode::unavailable ? StatusCode::unavailable : StatusCode::internal,
                           "cannot use PostgreSQL at " + display_url_ + ": " + with_sqlstate(*error) +
                               (permanent ? " (check the user, password and database name in 'url')" : ""));
    }
    if (retry.expired()) {
      return Status::error(StatusCode::unavailable,
                           "cannot connect to PostgreSQL at " + display_url_ + retry.waited() + error->message +
                               "). Is PostgreSQL running, and is 'url' right? For local development: "
                               "scripts/services/postgres start");
    }
    if (retry.attempts() == 1)
      context_.logger().warn("cannot connect to PostgreSQL at ", display_url_, " yet (", error->message,
                             "); retrying for up to ", config_.wait_for_database_ms, " ms");
    retry.wait();
  }
  if (auto s = migrate(); !s.ok()) {
    disconnect(lanes_[0]);
    return s;
  }
  context_.logger().info("writing to table '", config_.table.display(), "' at ", display_url_);
  return Status::success();
}

Status PostgresSink::migrate() {
  const auto& table = config_.table;
  const std::string quoted = table.quoted();
  try {
    pqxx::work tx(lanes_[0].session->conn);
    // Instances starting together take turns, so CREATE TABLE IF NOT EXISTS
    // never races itself (which can fail on pg_type's unique index).
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtext($1))", "nudge.sink.postgres " + quoted);
    if (!tx.exec_params1("SELECT to_regclass($1) IS NOT NULL", quoted)[0].as<bool>()) {
      tx.exec(create_table_sql(table));
      context_.logger().info("created table '", table.display(), "'");
    } else {
      // Looked up first rather than ALTERed blindly: ALTER TABLE locks out
      // every writer even when there is nothing to add.
      std::set<std::string> present;
      for (const auto& row : tx.exec_params(
               "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
               quoted))
        present.insert(row[0].as<std::string>());
      std::string missing;
      for (const auto& column : columns()) {
        if (present.count(column.name)) continue;
        if (!column.added_later) {
          missing += (missing.empty() ? "'" : ", '") + std::string(column.name) + "'";
          continue;
        }
        tx.exec(add_column_sql(table, column));
        context_.logger().info("added column '", column.name, "' to table '", table.display(), "'");
      }
      if (!missing.empty())
        return Status::error(StatusCode::internal, "table '" + table.display() + "' at " + display_url_ +
                                                       " exists but has no column " + missing +
                                                       ": it was not made by this sink; set 'table' to another name");
      const std::string index =
          table.schema.empty() ? table.index_quoted() : "\"" + table.schema + "\"." + table.index_quoted();
      // The (room, id) index history reads use; tables made before it keep
      // their (room, created_at) index too (see README).
      if (tx.exec_params1("SELECT to_regclass($1) IS NULL", index)[0].as<bool>()) {
        tx.exec(create_index_sql(table));
        context_.logger().info("created index ", table.index_quoted(), " on table '", table.display(), "'");
      }
    }
    tx.commit();
    // The insert, run on no rows, checks the table as it is: column types and
    // the unique index on id that ON CONFLICT needs.
    pqxx::nontransaction check(lanes_[0].session->conn);
    check.exec_params(insert_sql_, "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}");
    check.commit();
    return Status::success();
  } catch (const std::exception& e) {
    const auto error = classify(e);
    db_errors_.add();
    return Status::error(error.what.code, "cannot create or migrate table '" + table.display() + "' at " +
                                              display_url_ + ": " + with_sqlstate(error));
  }
}

// ---- write -----------------------------------------------------------------

void PostgresSink::write(BatchPtr batch, Completion done) {
  if (lanes_.empty()) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::internal, "write() called before a successful start()"));
    });
    return;
  }
  // Slices of at least kMinSliceRows: below that, a statement's round trip
  // costs more than another backend saves.
  constexpr std::size_t kMinSliceRows = 500;
  const std::size_t slices = std::clamp<std::size_t>(batch->size() / kMinSliceRows, 1, lanes_.size());
  struct Gather {
    std::size_t pending;
    WriteResult total;
    Completion done;
  };
  auto gather = std::make_shared<Gather>(Gather{slices, {}, std::move(done)});
  for (std::size_t i = 0; i < slices; ++i) {
    const auto first = batch->begin() + static_cast<std::ptrdiff_t>(batch->size() * i / slices);
    const auto last = batch->begin() + static_cast<std::ptrdiff_t>(batch->size() * (i + 1) / slices);
    Lane& lane = lanes_[i];
    if (i == 0) ++lane0_jobs_;
    lane.worker->run([this, &lane, batch, first, last] { return write_now(lane, first, last); },
                     [this, batch, gather, first_lane = i == 0](WriteResult result) {
                       if (first_lane) --lane0_jobs_;
                       gather->total.inserted += result.inserted;
                       gather->total.repaired += result.repaired;
                       // The batch fails if a slice did; the first failure says why.
                       if (!result.status.ok() && gather->total.status.ok())
                         gather->total.status = std::move(result.status);
                       if (--gather->pending == 0) finish_write(*batch, std::move(gather->total), gather->done);
                     });
  }
}

void PostgresSink::finish_write(const Batch& batch, WriteResult result, const Completion& done) {
  // A write tells whether the database works as well as a health check does.
  probe_.report(result.status);
  // Rows a failed batch's other slices stored count now; when the batch is
  // written again they are duplicates.
  rows_inserted_.add(result.inserted);
  if (result.status.ok()) rows_duplicate_.add(batch.size() - result.inserted);
  if (result.status.ok() && result.repaired) {
    texts_repaired_.add(result.repaired);
    context_.logger().warn(result.repaired,
                           " room, sender or origin values in a batch were not valid UTF-8; "
                           "stored them with U+FFFD in place of the bad bytes");
  }
  done(std::move(result.status));
}

Status PostgresSink::ensure_session(Lane& lane) {
  if (lane.session) return Status::success();
  if (auto error = connect(lane)) {
    db_errors_.add();
    return Status::error(StatusCode::unavailable,
                         "cannot connect to PostgreSQL at " + display_url_ + ": " + with_sqlstate(*error));
  }
  reconnects_.add();
  context_.logger().info("reconnected to PostgreSQL at ", display_url_);
  return Status::success();
}

PostgresSink::WriteResult PostgresSink::write_now(Lane& lane, Batch::const_iterator begin, Batch::const_iterator end) {
  WriteResult result;
  if (begin == end) return result;
  if (result.status = ensure_session(lane); !result.status.ok()) return result;
  // Usually one statement, one round trip; a batch of very large payloads
  // takes a few (each atomic, and a retry skips what is already stored).
  for (auto first = begin; first != end;) {
    const auto last = statement_end(first, end);
    const EncodedBatch e = encode_batch(first, last);
    result.repaired += e.repaired_texts;
    try {
      // A single statement outside a transaction block is atomic by itself.
      pqxx::nontransaction tx(lane.session->conn);
      const auto r = tx.exec_params(insert_sql_, e.ids, e.rooms, e.senders, e.payloads, e.timestamps, e.origins,
                                    e.partitions, e.offsets);
      tx.commit();
      result.inserted += static_cast<std::size_t>(r.affected_rows());
    } catch (const std::exception& ex) {
      result.status = fail(lane, classify(ex),
                           "inserting " + std::to_string(end - begin) + " rows into '" + config_.table.display() + "'");
      return result;
    }
    first = last;
  }
  return result;
}

// ---- history ---------------------------------------------------------------

void PostgresSink::read_history(HistoryQuery query, HistoryHandler done) {
  if (lanes_.empty()) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::internal, "read_history() called before a successful start()"), {});
    });
    return;
  }
  ++lane0_jobs_;
  lanes_[0].worker->run([this, query = std::move(query)] { return read_now(query); },
                        [this, done = std::move(done)](ReadResult result) {
                          --lane0_jobs_;
                          if (result.status.ok()) {
                            history_reads_.add();
                            if (result.skipped) {
                              history_rows_skipped_.add(result.skipped);
                              context_.logger().warn("a history read of table '", config_.table.display(),
                                                     "' left out ", result.skipped,
                                                     " rows whose id could not be read back");
                            }
                          }
                          done(std::move(result.status), std::move(result.messages));
                        });
}

PostgresSink::ReadResult PostgresSink::read_now(const HistoryQuery& query) {
  ReadResult result;
  if (query.limit == 0) return result;
  if (result.status = ensure_session(lanes_[0]); !result.status.ok()) return result;
  // Rooms were stored with invalid UTF-8 (and NUL) repaired: look for what was stored.
  std::string repaired;
  const std::string& room = repair_text(query.room, repaired) ? repaired : query.room;
  const auto limit = static_cast<long long>(
      std::min<std::size_t>(query.limit, static_cast<std::size_t>(std::numeric_limits<long long>::max())));
  try {
    pqxx::nontransaction tx(lanes_[0].session->conn);
    const pqxx::result rows =
        query.after ? tx.exec_params(history_sql(config_.table, true), room, limit, query.after->to_string())
                    : tx.exec_params(history_sql(config_.table, false), room, limit);
    tx.commit();
    result.messages.reserve(rows.size());
    for (const auto& row : rows) {
      const auto id = MessageId::parse(row[0].c_str());
      if (!id) {
        ++result.skipped;
        continue;
      }
      auto m = std::make_shared<Message>();
      m->id = *id;
      m->room = row[1].as<std::string>();
      m->sender = row[2].as<std::string>();
      m->payload = pqxx::binarystring(row[3]).str();
      m->timestamp_ms = row[4].as<std::int64_t>();
      m->origin = row[5].as<std::string>();
      if (!row[6].is_null() && !row[7].is_null()) {
        m->log_position.partition = row[6].as<std::int32_t>();
        m->log_position.offset = row[7].as<std::int64_t>();
      }
      result.messages.push_back(std::move(m));
    }
  } catch (const std::exception& ex) {
    result.messages.clear();
    result.status = fail(lanes_[0], classify(ex), "reading history from '" + config_.table.display() + "'", true);
    return result;
  }
  if (!query.after) std::reverse(result.messages.begin(), result.messages.end());
  return result;
}

// ---- errors ----------------------------------------------------------------

Status PostgresSink::fail(Lane& lane, const DatabaseError& error, const std::string& doing, bool reading) {
  db_errors_.add();
  if (error.what.reconnect || !lane.session->conn.is_open()) {
    // libpqxx's own words for a dead socket can be cryptic ("Could not obtain
    // client encoding"), so say plainly what happened first.
    const std::string text =
        "lost the connection to PostgreSQL at " + display_url_ + " while " + doing + " (" + with_sqlstate(error) + ")";
    disconnect(lane);
    context_.logger().warn(text, "; reconnecting on the next attempt");
    return Status::error(StatusCode::unavailable, text);
  }
  const std::string text = "PostgreSQL at " + display_url_ + " failed " + doing + ": " + with_sqlstate(error);
  // A failed read goes back to whoever asked; the sink only notes it.
  if (reading) {
    context_.logger().warn(text);
    return Status::error(error.what.code, text);
  }
  // The runtime logs every failed attempt; say more only when waiting will not help.
  if (error.what.code != StatusCode::unavailable)
    context_.logger().error(text,
                            ". This does not clear up by itself: the runtime keeps retrying the batch, "
                            "and the log keeps the backlog, until the table or the data is fixed");
  return Status::error(error.what.code, text);
}

void PostgresSink::disconnect(Lane& lane) {
  lane.session.reset();
  if (&lane == &lanes_[0]) connected_.set(0);
}

// ---- stop ------------------------------------------------------------------

void PostgresSink::stop(std::function<void()> done) {
  probe_.stop();
  if (lanes_.empty()) {
    done();
    return;
  }
  // Queued behind the writes in progress, whose completions thus reach the
  // runtime first; the event loop never waits on the database.
  auto pending = std::make_shared<std::size_t>(lanes_.size());
  auto finished = std::make_shared<std::function<void()>>(std::move(done));
  for (auto& lane : lanes_) {
    lane.worker->run(
        [this, &lane] {
          disconnect(lane);
          return true;
        },
        [this, &lane, pending, finished](bool) {
          lane.worker->shutdown();
          if (--*pending > 0) return;
          context_.logger().info("closed the connection", lanes_.size() > 1 ? "s" : "", " to ", display_url_);
          (*finished)();
        });
  }
}

}  // namespace nudge::plugins::postgres
