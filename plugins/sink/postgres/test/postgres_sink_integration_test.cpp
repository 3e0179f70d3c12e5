// Against a real PostgreSQL: $DATABASE_URL, by default the one
// `scripts/services/postgres start` runs. Every test skips when it does not answer.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <set>

#include <gtest/gtest.h>
#include <pqxx/binarystring>
#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk/testing.hpp"
#include "postgres_sink.hpp"
#include "sql.hpp"

namespace nudge::plugins::postgres {
namespace {

using nudge::testing::TestContext;
using nudge::testing::write_and_wait;

constexpr const char* kDefaultUrl = "postgresql://nudge:nudge@127.0.0.1:5432/nudge";

std::string database_url() {
  const char* env = std::getenv("DATABASE_URL");
  return env && *env ? env : kDefaultUrl;
}

std::string with_timeout(const std::string& url) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=2";
}

MessagePtr make_message(std::string room, std::string sender, std::string payload, std::int64_t ms = 0,
                        LogPosition position = {}) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = std::move(room);
  m->sender = std::move(sender);
  m->payload = std::move(payload);
  m->timestamp_ms = ms ? ms : m->id.unix_ms();
  m->origin = "test-instance";
  m->log_position = position;
  return m;
}

BatchPtr make_batch(std::size_t n, const std::string& room = "lobby") {
  auto batch = std::make_shared<Batch>();
  for (std::size_t i = 0; i < n; ++i)
    batch->push_back(make_message(room, "user-" + std::to_string(i % 17), "message " + std::to_string(i)));
  return batch;
}

class PostgresSinkIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = database_url();
    try {
      admin_ = std::make_unique<pqxx::connection>(with_timeout(url_));
    } catch (const std::exception& e) {
      GTEST_SKIP() << "PostgreSQL at " << redact_url(url_) << " is unreachable (" << one_line(e.what())
                   << "); start it with scripts/services/postgres start, or set DATABASE_URL";
    }
    static int serial = 0;
    table_ = "nudge_test_" + std::to_string(::getpid()) + "_" + std::to_string(++serial) + "_" +
             std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000);
  }

  void TearDown() override {
    sink_.reset();
    if (!admin_) return;
    try {
      if (!admin_->is_open()) admin_ = std::make_unique<pqxx::connection>(with_timeout(url_));
      exec("DROP TABLE IF EXISTS \"" + table_ + "\"");
    } catch (const std::exception& e) {
      std::cerr << "could not drop table " << table_ << ": " << e.what() << "\n";
    }
  }

  PostgresSink& start_sink(std::map<std::string, ConfigValue> extra = {}) {
    extra.emplace("url", url_);
    extra.emplace("table", table_);
    std::string error;
    auto config = nudge::testing::make_config(PostgresConfig::schema(), extra, &error);
    EXPECT_EQ(error, "");
    sink_ = std::make_unique<PostgresSink>(config, context_);
    const auto status = sink_->start();
    EXPECT_TRUE(status.ok()) << status.message();
    return *sink_;
  }

  pqxx::result exec(const std::string& sql) {
    pqxx::nontransaction tx(*admin_);
    auto r = tx.exec(sql);
    tx.commit();
    return r;
  }

  long long count() { return exec("SELECT count(*) FROM \"" + table_ + "\"")[0][0].as<long long>(); }

  Status write(BatchPtr batch) { return write_and_wait(io_, *sink_, std::move(batch)); }

  std::uint64_t counter(const std::string& name) { return context_.metrics().value(name); }

  std::string url_;
  std::string table_;
  std::unique_ptr<pqxx::connection> admin_;
  boost::asio::io_context io_;
  TestContext context_{io_, "sink.postgres"};
  std::unique_ptr<PostgresSink> sink_;
};

TEST_F(PostgresSinkIntegrationTest, StartCreatesTheTableAndItsIndex) {
  start_sink();
  std::map<std::string, std::string> types;
  for (const auto& row : exec("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                              "WHERE table_name = '" +
                              table_ + "'"))
    types[row[0].as<std::string>()] = row[1].as<std::string>() + (row[2].as<std::string>() == "NO" ? " not null" : "");
  const std::map<std::string, std::string> expected = {{"id", "uuid not null"},
                                                       {"room", "text not null"},
                                                       {"sender", "text not null"},
                                                       {"payload", "bytea not null"},
                                                       {"created_at", "timestamp with time zone not null"},
                                                       {"origin", "text not null"},
                                                       {"log_partition", "integer"},
                                                       {"log_offset", "bigint"},
                                                       {"stored_at", "timestamp with time zone not null"}};
  EXPECT_EQ(types, expected);
  const auto index = exec("SELECT indexdef FROM pg_indexes WHERE tablename = '" + table_ + "' AND indexname = '" +
                          table_ + "_room_id_idx'");
  ASSERT_EQ(index.size(), 1u);
  EXPECT_NE(index[0][0].as<std::string>().find("(room, id)"), std::string::npos);
  // The primary key and the history index: no (room, created_at) index any more.
  EXPECT_EQ(exec("SELECT count(*) FROM pg_indexes WHERE tablename = '" + table_ + "'")[0][0].as<int>(), 2);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);

  // A second instance starting on the same table finds it as it should be.
  TestContext other_context(io_, "sink.postgres");
  auto config = nudge::testing::make_config(PostgresConfig::schema(), {{"url", url_}, {"table", table_}});
  PostgresSink other(config, other_context);
  EXPECT_TRUE(other.start().ok());
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, other));
}

TEST_F(PostgresSinkIntegrationTest, ABatchOfLargePayloadsIsSplitAndLandsWhole) {
  start_sink();
  auto batch = std::make_shared<Batch>();
  std::string payload(1024 * 1024, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 % 256);
  for (int i = 0; i < 20; ++i) batch->push_back(make_message("big", "s", payload));  // 20 MiB: two statements
  ASSERT_TRUE(write(batch).ok());
  ASSERT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), 20);
  EXPECT_EQ(counter("rows_inserted"), 20u);
  EXPECT_EQ(counter("rows_duplicate"), 20u);
  const auto stored = exec("SELECT count(DISTINCT payload), (array_agg(payload))[1] FROM \"" + table_ + "\"")[0];
  EXPECT_EQ(stored[0].as<int>(), 1);
  EXPECT_TRUE(pqxx::binarystring(stored[1]).str() == payload);
}

TEST_F(PostgresSinkIntegrationTest, InvalidUtf8IsStoredWithReplacementCharacters) {
  start_sink();
  auto batch = std::make_shared<Batch>();
  batch->push_back(make_message("room\xff", std::string("nul\0here", 8), "payload \xff stays"));
  ASSERT_TRUE(write(batch).ok());
  const auto row = exec("SELECT room, sender, payload FROM \"" + table_ + "\"")[0];
  EXPECT_EQ(row[0].as<std::string>(), "room\xef\xbf\xbd");
  EXPECT_EQ(row[1].as<std::string>(), "nul\xef\xbf\xbdhere");
  EXPECT_EQ(pqxx::binarystring(row[2]).str(), "payload \xff stays");
  EXPECT_EQ(counter("texts_repaired"), 2u);
}

TEST_F(PostgresSinkIntegrationTest, StoresLogPositions) {
  start_sink();
  auto batch = std::make_shared<Batch>();
  batch->push_back(make_message("r", "s", "a", 0, {3, 9000000000LL}));
  batch->push_back(make_message("r", "s", "b", 0, {0, 0}));
  batch->push_back(make_message("r", "s", "c"));  // not read from a log
  ASSERT_TRUE(write(batch).ok());
  std::map<std::string, std::string> got;
  for (const auto& row : exec("SELECT payload, coalesce(log_partition::text, 'null') || '/' || "
                              "coalesce(log_offset::text, 'null') FROM \"" +
                              table_ + "\""))
    got[pqxx::binarystring(row[0]).str()] = row[1].as<std::string>();
  EXPECT_EQ(got, (std::map<std::string, std::string>{{"a", "3/9000000000"}, {"b", "0/0"}, {"c", "null/null"}}));
}

TEST_F(PostgresSinkIntegrationTest, MigratesATableFromAnOlderVersion) {
  exec("CREATE TABLE \"" + table_ +
       "\" (id uuid PRIMARY KEY, room text NOT NULL, sender text NOT NULL, "
       "payload bytea NOT NULL, created_at timestamptz NOT NULL, origin text NOT NULL)");
  exec("INSERT INTO \"" + table_ + "\" VALUES (gen_random_uuid(), 'old', 's', '\\x00', now(), 'o')");
  start_sink();
  std::set<std::string> names;
  for (const auto& row : exec("SELECT column_name FROM information_schema.columns WHERE table_name = '" + table_ + "'"))
    names.insert(row[0].as<std::string>());
  EXPECT_TRUE(names.count("log_partition") && names.count("log_offset") && names.count("stored_at"));
  EXPECT_EQ(exec("SELECT count(*) FROM pg_indexes WHERE tablename = '" + table_ + "'")[0][0].as<int>(), 2);
  ASSERT_TRUE(write(make_batch(10)).ok());
  EXPECT_EQ(count(), 11);
}

TEST_F(PostgresSinkIntegrationTest, ATableOfTheLastVersionGetsTheHistoryIndexAndKeepsItsOwn) {
  exec("CREATE TABLE \"" + table_ +
       "\" (id uuid PRIMARY KEY, room text NOT NULL, sender text NOT NULL, "
       "payload bytea NOT NULL, created_at timestamptz NOT NULL, origin text NOT NULL, log_partition integer, "
       "log_offset bigint, stored_at timestamptz NOT NULL DEFAULT now())");
  exec("CREATE INDEX \"" + table_ + "_room_created_idx\" ON \"" + table_ + "\" (room, created_at)");
  exec("INSERT INTO \"" + table_ +
       "\" VALUES ('0190a000-0000-7000-8000-000000000001', 'old', 's', '\\x00ff', "
       "timestamptz 'epoch' + 1700000000123 * interval '1 millisecond', 'o', 2, 77)");
  start_sink();
  std::set<std::string> indexes;
  for (const auto& row : exec("SELECT indexname FROM pg_indexes WHERE tablename = '" + table_ + "'"))
    indexes.insert(row[0].as<std::string>());
  EXPECT_EQ(indexes, (std::set<std::string>{table_ + "_pkey", table_ + "_room_created_idx", table_ + "_room_id_idx"}));
  EXPECT_EQ(context_.logger().count(LogLevel::info, "created index"), 1u);

  const auto old = nudge::testing::read_and_wait(io_, *sink_, {"old", 10, std::nullopt});
  ASSERT_TRUE(old.status.ok()) << old.status.message();
  ASSERT_EQ(old.messages.size(), 1u);
  EXPECT_EQ(old.messages[0]->id.to_string(), "0190a000-0000-7000-8000-000000000001");
  EXPECT_EQ(old.messages[0]->payload, std::string("\x00\xff", 2));
  EXPECT_EQ(old.messages[0]->timestamp_ms, 1700000000123);
  EXPECT_EQ(old.messages[0]->log_position.partition, 2);
  EXPECT_EQ(old.messages[0]->log_position.offset, 77);

  // A second start finds the index and does not make it again.
  TestContext other_context(io_, "sink.postgres");
  PostgresSink other(nudge::testing::make_config(PostgresConfig::schema(), {{"url", url_}, {"table", table_}}),
                     other_context);
  ASSERT_TRUE(other.start().ok());
  EXPECT_EQ(other_context.logger().count(LogLevel::info, "created index"), 0u);
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, other));
}

TEST_F(PostgresSinkIntegrationTest, RefusesATableItDidNotMake) {
  exec("CREATE TABLE \"" + table_ + "\" (id integer PRIMARY KEY, body text)");
  std::string error;
  auto config = nudge::testing::make_config(PostgresConfig::schema(), {{"url", url_}, {"table", table_}}, &error);
  ASSERT_EQ(error, "");
  PostgresSink sink(config, context_);
  const auto status = sink.start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("exists but has no column 'room', 'sender'"), std::string::npos) << status.message();
}

TEST_F(PostgresSinkIntegrationTest, AnIncompatibleTableIsReportedAtStart) {
  const std::string core = "room text NOT NULL, sender text NOT NULL, payload bytea NOT NULL, origin text NOT NULL";
  const std::pair<std::string, std::string> cases[] = {
      // created_at as a number: no timestamptz goes there.
      {"id uuid PRIMARY KEY, created_at bigint NOT NULL, " + core, "SQLSTATE 42804"},
      // No unique index on id for ON CONFLICT (id).
      {"id uuid NOT NULL, created_at timestamptz NOT NULL, " + core, "SQLSTATE 42P10"}};
  for (const auto& [columns, expected] : cases) {
    exec("DROP TABLE IF EXISTS \"" + table_ + "\"");
    exec("CREATE TABLE \"" + table_ + "\" (" + columns + ")");
    auto config = nudge::testing::make_config(PostgresConfig::schema(), {{"url", url_}, {"table", table_}});
    PostgresSink sink(config, context_);
    const auto status = sink.start();
    ASSERT_FALSE(status.ok()) << columns;
    EXPECT_NE(status.message().find(expected), std::string::npos) << status.message();
    EXPECT_NE(status.message().find("cannot create or migrate table"), std::string::npos) << status.message();
  }
}

TEST_F(PostgresSinkIntegrationTest, ALargeBatchIsWrittenInSlicesOverEveryConnection) {
  start_sink({{"writers", std::int64_t{3}}, {"application_name", std::string("nudge-" + table_)}});
  const auto batch = make_batch(3000);
  ASSERT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), 3000);
  EXPECT_EQ(counter("rows_inserted"), 3000u);
  // Three slices of 1000, each on a connection of its own.
  EXPECT_EQ(
      exec("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nudge-" + table_ + "'")[0][0].as<int>(), 3);
  ASSERT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), 3000);
  EXPECT_EQ(counter("rows_duplicate"), 3000u);
  // A small batch goes whole to one connection.
  ASSERT_TRUE(write(make_batch(40)).ok());
  EXPECT_EQ(count(), 3040);
}

TEST_F(PostgresSinkIntegrationTest, ASliceThatFailsFailsTheBatchAndTheRetryAddsNoSecondRow) {
  start_sink({{"writers", std::int64_t{2}}});
  exec("ALTER TABLE \"" + table_ + "\" ALTER COLUMN room TYPE varchar(3)");
  // Slice 1 (rows 0-999) fits; slice 2 (rows 1000-1999) does not.
  auto batch = std::make_shared<Batch>(*make_batch(1000, "ok"));
  const auto bad = make_batch(1000, "much too long");
  batch->insert(batch->end(), bad->begin(), bad->end());
  const auto status = write(batch);
  EXPECT_EQ(status.code(), StatusCode::internal) << status.message();
  EXPECT_NE(status.message().find("SQLSTATE 22001"), std::string::npos) << status.message();
  EXPECT_EQ(count(), 1000);
  EXPECT_EQ(counter("rows_inserted"), 1000u);
  // The table fixed, the runtime writes the batch again: the first slice's rows are not stored twice.
  exec("ALTER TABLE \"" + table_ + "\" ALTER COLUMN room TYPE text");
  ASSERT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), 2000);
  EXPECT_EQ(counter("rows_inserted"), 2000u);
  EXPECT_EQ(counter("rows_duplicate"), 1000u);
}

TEST_F(PostgresSinkIntegrationTest, ADataErrorIsNotRetryable) {
  start_sink();
  exec("ALTER TABLE \"" + table_ + "\" ALTER COLUMN room TYPE varchar(3)");
  const auto status = write(make_batch(3, "much too long"));
  EXPECT_EQ(status.code(), StatusCode::internal) << status.message();
  EXPECT_FALSE(status.retryable());
  EXPECT_NE(status.message().find("SQLSTATE 22001"), std::string::npos) << status.message();
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);  // the session is fine
  EXPECT_TRUE(write(make_batch(3, "ok")).ok());
}

TEST_F(PostgresSinkIntegrationTest, StatementTimeoutIsRetryable) {
  start_sink({{"statement_timeout_ms", std::int64_t{300}}});
  pqxx::work locker(*admin_);
  locker.exec("LOCK TABLE \"" + table_ + "\" IN ACCESS EXCLUSIVE MODE");
  const auto status = write(make_batch(5));
  EXPECT_EQ(status.code(), StatusCode::unavailable) << status.message();
  EXPECT_NE(status.message().find("SQLSTATE 57014"), std::string::npos) << status.message();
  locker.commit();
  EXPECT_TRUE(write(make_batch(5)).ok());
  EXPECT_EQ(count(), 5);
}

TEST_F(PostgresSinkIntegrationTest, ATerminatedSessionIsReopened) {
  start_sink({{"application_name", std::string("nudge-" + table_)}});
  ASSERT_TRUE(write(make_batch(5)).ok());
  const auto killed =
      exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'nudge-" + table_ +
           "'")[0][0]
          .as<int>();
  ASSERT_EQ(killed, 1);
  // libpqxx may reopen the session itself; either this write fails with a
  // retryable status and the next one reconnects, or it succeeds at once.
  auto status = write(make_batch(5));
  if (!status.ok()) {
    EXPECT_TRUE(status.retryable()) << status.message();
    status = write(make_batch(5));
  }
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(count(), 10);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
}

// ---- history -------------------------------------------------------------

// How rooms of any other bytes are found: the conformance suite (HistoryMatchesRoomsExactly).
TEST_F(PostgresSinkIntegrationTest, HistoryFindsARoomStoredRepairedByItsOriginalBytes) {
  auto& sink = start_sink();
  // A room that was not valid UTF-8 (or held a NUL) was stored repaired;
  // asking with the same bytes finds it.
  const std::vector<std::string> rooms = {"room\xff", std::string("nul\0in", 6)};
  auto batch = std::make_shared<Batch>();
  for (const auto& room : rooms) batch->push_back(make_message(room, "s", "in " + room));
  ASSERT_TRUE(write(batch).ok());
  for (const auto& room : rooms) {
    const auto r = nudge::testing::read_and_wait(io_, sink, {room, 10, std::nullopt});
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    ASSERT_EQ(r.messages.size(), 1u) << room;
    EXPECT_EQ(r.messages[0]->payload, "in " + room);
  }
  EXPECT_EQ(nudge::testing::read_and_wait(io_, sink, {"room\xff", 10, std::nullopt}).messages.at(0)->room,
            "room\xef\xbf\xbd");
  EXPECT_EQ(count(), static_cast<long long>(rooms.size()));
}

TEST_F(PostgresSinkIntegrationTest, HistoryQueriesUseTheRoomIdIndex) {
  start_sink();
  ASSERT_TRUE(write(make_batch(200, "a")).ok());
  ASSERT_TRUE(write(make_batch(200, "b")).ok());
  exec("ANALYZE \"" + table_ + "\"");
  pqxx::work tx(*admin_);
  tx.exec("SET LOCAL enable_seqscan = off");  // a table this small would otherwise be read whole
  for (bool after : {false, true}) {
    std::string sql = "EXPLAIN " + history_sql(TableName{"", table_}, after);
    sql.replace(sql.find("$1"), 2, "'a'");
    sql.replace(sql.find("$2"), 2, "10");
    if (after) sql.replace(sql.find("$3"), 2, "'0190a000-0000-7000-8000-000000000001'");
    std::string plan;
    for (const auto& row : tx.exec(sql)) plan += row[0].as<std::string>() + "\n";
    EXPECT_NE(plan.find("Index Scan" + std::string(after ? "" : " Backward") + " using " + table_ + "_room_id_idx"),
              std::string::npos)
        << plan;
    EXPECT_EQ(plan.find("Sort"), std::string::npos) << plan;
  }
}

TEST_F(PostgresSinkIntegrationTest, FailedReadsAreClassifiedAndALostSessionIsReopened) {
  auto& sink =
      start_sink({{"statement_timeout_ms", std::int64_t{300}}, {"application_name", std::string("nudge-" + table_)}});
  ASSERT_TRUE(write(make_batch(5)).ok());
  // Before start: an error, on the executor.
  TestContext other_context(io_, "sink.postgres");
  PostgresSink unstarted(nudge::testing::make_config(PostgresConfig::schema(), {{"url", url_}, {"table", table_}}),
                         other_context);
  EXPECT_EQ(nudge::testing::read_and_wait(io_, unstarted, {"lobby", 10, std::nullopt}).status.code(),
            StatusCode::internal);

  // A lock held past statement_timeout: retryable, the session is kept.
  {
    pqxx::work locker(*admin_);
    locker.exec("LOCK TABLE \"" + table_ + "\" IN ACCESS EXCLUSIVE MODE");
    const auto r = nudge::testing::read_and_wait(io_, sink, {"lobby", 10, std::nullopt});
    EXPECT_EQ(r.status.code(), StatusCode::unavailable) << r.status.message();
    EXPECT_NE(r.status.message().find("SQLSTATE 57014"), std::string::npos) << r.status.message();
    EXPECT_TRUE(r.messages.empty());
    locker.commit();
  }
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);

  // The session is killed: the read fails retryably and the next one
  // reconnects (or libpqxx reopens it at once), like a write.
  ASSERT_EQ(exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'nudge-" +
                 table_ + "'")[0][0]
                .as<int>(),
            1);
  auto r = nudge::testing::read_and_wait(io_, sink, {"lobby", 10, std::nullopt});
  if (!r.status.ok()) {
    EXPECT_TRUE(r.status.retryable()) << r.status.message();
    EXPECT_EQ(context_.metrics().gauge_value("connected"), 0);
    r = nudge::testing::read_and_wait(io_, sink, {"lobby", 10, std::nullopt});
    EXPECT_EQ(counter("reconnects"), 1u);
  }
  EXPECT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);

  // A missing table does not clear up by itself: not retryable.
  exec("DROP TABLE \"" + table_ + "\"");
  const auto missing = nudge::testing::read_and_wait(io_, sink, {"lobby", 10, std::nullopt});
  EXPECT_EQ(missing.status.code(), StatusCode::internal) << missing.status.message();
  EXPECT_NE(missing.status.message().find("SQLSTATE 42P01"), std::string::npos) << missing.status.message();
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
}

TEST_F(PostgresSinkIntegrationTest, Throughput) {
  start_sink();
  std::vector<BatchPtr> batches;
  for (int i = 0; i < 50; ++i) batches.push_back(make_batch(500, "room-" + std::to_string(i % 7)));
  const auto begin = std::chrono::steady_clock::now();
  for (const auto& batch : batches) ASSERT_TRUE(write(batch).ok());
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(count(), 25000);
  const auto rate = 25000 / seconds;
  std::cout << "[ rate     ] 50 batches of 500 rows in " << seconds * 1000 << " ms: " << static_cast<long>(rate)
            << " rows/s, " << seconds * 1000 / 50 << " ms per batch\n";
  RecordProperty("rows_per_second", static_cast<int>(rate));
}

// ---- readiness and reload -------------------------------------------------

// Not ready before start(), ready after: the conformance suite (NotReadyBeforeStartAndReadyAfter).
TEST_F(PostgresSinkIntegrationTest, ChecksTheConnectionWhileIdle) {
  auto& sink = start_sink({{"health_check_interval_ms", std::int64_t{100}}});
  EXPECT_TRUE(sink.readiness().ready) << sink.readiness().reason;
  nudge::testing::run_for(io_, std::chrono::milliseconds(650));
  EXPECT_GE(counter("health_checks"), 3u) << "SELECT 1 every 100 ms without any traffic";
  EXPECT_TRUE(sink.readiness().ready) << sink.readiness().reason;
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, sink));
}

TEST_F(PostgresSinkIntegrationTest, HealthCheckIntervalIsLive) {
  EXPECT_TRUE(PostgresConfig::schema().find("health_check_interval_ms")->live);
  EXPECT_FALSE(PostgresConfig::schema().find("url")->live);
  auto& sink = start_sink({{"health_check_interval_ms", std::int64_t{60000}}});
  nudge::testing::run_for(io_, std::chrono::milliseconds(400));
  EXPECT_EQ(counter("health_checks"), 0u);
  const auto applied = sink.reconfigure(nudge::testing::make_config(
      PostgresConfig::schema(), {{"url", url_}, {"table", table_}, {"health_check_interval_ms", std::int64_t{100}}}));
  ASSERT_TRUE(applied.ok()) << applied.message();
  nudge::testing::run_for(io_, std::chrono::milliseconds(650));
  EXPECT_GE(counter("health_checks"), 3u) << "the new interval applies at once";
  ASSERT_TRUE(write(make_batch(3)).ok()) << "the connection was kept";
  EXPECT_EQ(counter("reconnects"), 0u);
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, sink));
}

}  // namespace
}  // namespace nudge::plugins::postgres
