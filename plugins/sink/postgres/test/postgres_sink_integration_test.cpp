// Against a real PostgreSQL: $DATABASE_URL, by default the one
// `scripts/services/postgres start` runs. Every test skips when it does not answer.

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <set>

#include <gtest/gtest.h>
#include <pqxx/binarystring>
#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include <boost/asio/io_context.hpp>

#include "postgres_sink.hpp"
#include "nudge/sdk/testing.hpp"
#include "sink_helpers.hpp"

namespace nudge::plugins::postgres {
namespace {

using nudge::testing::TestContext;
using test_helpers::write_and_wait;

constexpr const char* kDefaultUrl = "postgresql://nudge:nudge@127.0.0.1:5432/nudge";

std::string database_url() {
  const char* env = std::getenv("DATABASE_URL");
  return env && *env ? env : kDefaultUrl;
}

std::string with_timeout(const std::string& url) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=2";
}

std::string services_script() { return std::string(NUDGE_SOURCE_DIR) + "/scripts/services/postgres"; }

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
                              "WHERE table_name = '" + table_ + "'"))
    types[row[0].as<std::string>()] = row[1].as<std::string>() + (row[2].as<std::string>() == "NO" ? " not null" : "");
  const std::map<std::string, std::string> expected = {
      {"id", "uuid not null"},
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
                          table_ + "_room_created_idx'");
  ASSERT_EQ(index.size(), 1u);
  EXPECT_NE(index[0][0].as<std::string>().find("(room, created_at)"), std::string::npos);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);

  // A second instance starting on the same table finds it as it should be.
  TestContext other_context(io_, "sink.postgres");
  auto config = nudge::testing::make_config(PostgresConfig::schema(), {{"url", url_}, {"table", table_}});
  PostgresSink other(config, other_context);
  EXPECT_TRUE(other.start().ok());
  EXPECT_TRUE(test_helpers::stop_and_wait(io_, other));
}

TEST_F(PostgresSinkIntegrationTest, BatchOf500LandsAndAReplayAddsNothing) {
  start_sink();
  const auto batch = make_batch(500);
  ASSERT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), 500);
  EXPECT_EQ(counter("rows_inserted"), 500u);
  EXPECT_EQ(counter("rows_duplicate"), 0u);

  ASSERT_TRUE(write(batch).ok());  // the log redelivers the same batch
  EXPECT_EQ(count(), 500);
  EXPECT_EQ(counter("rows_inserted"), 500u);
  EXPECT_EQ(counter("rows_duplicate"), 500u);

  // Half old, half new; and an id twice within one batch.
  auto mixed = std::make_shared<Batch>(batch->begin(), batch->begin() + 250);
  const auto fresh = make_batch(250);
  mixed->insert(mixed->end(), fresh->begin(), fresh->end());
  mixed->push_back(mixed->back());
  ASSERT_TRUE(write(mixed).ok());
  EXPECT_EQ(count(), 750);
  EXPECT_EQ(counter("rows_inserted"), 750u);
  EXPECT_EQ(counter("rows_duplicate"), 751u);

  EXPECT_TRUE(write(std::make_shared<const Batch>()).ok());
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

TEST_F(PostgresSinkIntegrationTest, StoresTextAndBytesExactly) {
  start_sink();
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
  struct Row {
    std::string room, sender, payload;
    std::int64_t ms;
  };
  const std::vector<Row> rows = {
      {"caf\xc3\xa9 \xf0\x9f\x98\x80\xf0\x9f\x8e\x89", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x91\x8b emoji", 1700000000123},
      {"it's \"quoted\"", "back\\slash\\", "{braces},{commas}", 1},
      {"'); DROP TABLE x; --", "Robert'); DROP TABLE \"" + table_ + "\";--", "$1 $2 ::text[] \\x00", -1000},
      {"NULL", "null", "NULL", 253402300799999},  // 9999-12-31T23:59:59.999Z
      {"", " ", "", 0},
      {"bytes", "all 256", every_byte, 1600000000000},
      {"{\"a\",\"b\"}", "\\\"", std::string(100000, '\\'), 1700000000001}};
  auto batch = std::make_shared<Batch>();
  std::map<std::string, const Row*> by_id;
  for (const auto& r : rows) {
    batch->push_back(make_message(r.room, r.sender, r.payload, r.ms ? r.ms : 42));
    by_id[batch->back()->id.to_string()] = &r;
  }
  ASSERT_TRUE(write(batch).ok());
  const auto result = exec("SELECT id::text, room, sender, payload, (extract(epoch FROM created_at) * 1000)::bigint, "
                           "origin FROM \"" + table_ + "\"");
  ASSERT_EQ(result.size(), rows.size());
  for (const auto& row : result) {
    const Row& want = *by_id.at(row[0].as<std::string>());
    EXPECT_EQ(row[1].as<std::string>(), want.room);
    EXPECT_EQ(row[2].as<std::string>(), want.sender);
    EXPECT_EQ(pqxx::binarystring(row[3]).str(), want.payload) << want.room;
    EXPECT_EQ(row[4].as<std::int64_t>(), want.ms ? want.ms : 42) << want.room;
    EXPECT_EQ(row[5].as<std::string>(), "test-instance");
  }
  EXPECT_EQ(counter("texts_repaired"), 0u);
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
                              "coalesce(log_offset::text, 'null') FROM \"" + table_ + "\""))
    got[pqxx::binarystring(row[0]).str()] = row[1].as<std::string>();
  EXPECT_EQ(got, (std::map<std::string, std::string>{{"a", "3/9000000000"}, {"b", "0/0"}, {"c", "null/null"}}));
}

TEST_F(PostgresSinkIntegrationTest, MigratesATableFromAnOlderVersion) {
  exec("CREATE TABLE \"" + table_ + "\" (id uuid PRIMARY KEY, room text NOT NULL, sender text NOT NULL, "
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
  const auto killed = exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'nudge-" +
                           table_ + "'")[0][0].as<int>();
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

TEST_F(PostgresSinkIntegrationTest, AWriteWhileTheServerIsDownIsRetriedAfterTheRestart) {
  if (url_ != kDefaultUrl || ::access(services_script().c_str(), X_OK) != 0)
    GTEST_SKIP() << "needs the local server of scripts/services/postgres";
  start_sink({{"connect_timeout_ms", std::int64_t{2000}}});
  ASSERT_TRUE(write(make_batch(10)).ok());
  admin_.reset();
  ASSERT_EQ(std::system((services_script() + " stop").c_str()), 0);
  // Whatever happens below, the server comes back for the other tests.
  struct Restart {
    ~Restart() {
      if (std::system((services_script() + " start >/dev/null").c_str()) != 0) std::cerr << "restart failed\n";
    }
  } restart;

  const auto batch = make_batch(10);
  const auto down = write(batch);
  EXPECT_FALSE(down.ok());
  EXPECT_TRUE(down.retryable()) << down.message();
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 0);
  const auto still_down = write(batch);  // a reconnect attempt that fails
  EXPECT_TRUE(still_down.retryable()) << still_down.message();
  EXPECT_NE(still_down.message().find("cannot connect"), std::string::npos) << still_down.message();

  ASSERT_EQ(std::system((services_script() + " start >/dev/null").c_str()), 0);
  const auto up = write(batch);  // what the runtime does: the same batch again
  EXPECT_TRUE(up.ok()) << up.message();
  EXPECT_EQ(counter("reconnects"), 1u);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
  admin_ = std::make_unique<pqxx::connection>(with_timeout(url_));
  EXPECT_EQ(count(), 20);
}

TEST_F(PostgresSinkIntegrationTest, StopLetsAWriteInProgressFinish) {
  auto& sink = start_sink();
  std::vector<std::string> order;
  sink.write(make_batch(500), [&](Status s) { order.push_back(s.ok() ? "written" : "failed: " + s.message()); });
  sink.stop([&] { order.push_back("stopped"); });
  ASSERT_TRUE(nudge::testing::run_until(io_, [&] { return order.size() == 2; }, test_helpers::kWaitLimit));
  EXPECT_EQ(order, (std::vector<std::string>{"written", "stopped"}));
  EXPECT_EQ(count(), 500);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 0);
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

}  // namespace
}  // namespace nudge::plugins::postgres
