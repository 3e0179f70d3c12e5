// Against a real MariaDB or MySQL: $MYSQL_URL, by default the one
// `scripts/services/mariadb start` runs. Every test skips when it does not answer.

#include <mysql.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <set>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "mysql_sink.hpp"
#include "nudge/sdk/testing.hpp"
#include "sql.hpp"

namespace nudge::plugins::mysql {
namespace {

using nudge::testing::TestContext;
using nudge::testing::write_and_wait;

constexpr const char* kDefaultUrl = "mysql://nudge:nudge@127.0.0.1:3306/nudge";

std::string database_url() {
  const char* env = std::getenv("MYSQL_URL");
  return env && *env ? env : kDefaultUrl;
}

using Value = std::optional<std::string>;
using Rows = std::vector<std::vector<Value>>;

/// The tests' own connection, to look at what the sink stored.
class Admin {
 public:
  ~Admin() { close(); }

  /// "" when connected, else why not.
  std::string connect(const std::string& text) {
    close();
    std::string error;
    auto url = parse_url(text, error);
    if (!url) return error;
    conn_ = mysql_init(nullptr);
    const unsigned timeout = 2;
    const unsigned tcp = MYSQL_PROTOCOL_TCP;
    mysql_options(conn_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(conn_, MYSQL_OPT_PROTOCOL, &tcp);
    mysql_options(conn_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(conn_, url->host.c_str(), url->user.c_str(), url->password.c_str(), url->database.c_str(),
                            url->port, nullptr, 0)) {
      error = mysql_error(conn_);
      close();
      return error;
    }
    return {};
  }

  void close() {
    if (conn_) mysql_close(conn_);
    conn_ = nullptr;
  }
  bool connected() const { return conn_ != nullptr; }

  /// Runs `sql`; its rows, if any. Fails the test on an error.
  Rows query(const std::string& sql) {
    Rows rows;
    if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) {
      ADD_FAILURE() << sql << ": " << mysql_error(conn_);
      return rows;
    }
    MYSQL_RES* result = mysql_store_result(conn_);
    if (!result) return rows;
    const unsigned fields = mysql_num_fields(result);
    while (MYSQL_ROW row = mysql_fetch_row(result)) {
      const unsigned long* lengths = mysql_fetch_lengths(result);
      auto& out = rows.emplace_back();
      for (unsigned i = 0; i < fields; ++i) out.push_back(row[i] ? Value(std::string(row[i], lengths[i])) : Value());
    }
    mysql_free_result(result);
    return rows;
  }
  std::string scalar(const std::string& sql) {
    const auto rows = query(sql);
    return rows.empty() || rows[0].empty() || !rows[0][0] ? "NULL" : *rows[0][0];
  }

 private:
  MYSQL* conn_ = nullptr;
};

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

class MysqlSinkIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = database_url();
    if (auto error = admin_.connect(url_); !error.empty()) {
      std::string e;
      const auto parsed = parse_url(url_, e);
      GTEST_SKIP() << "MySQL/MariaDB at " << (parsed ? parsed->redacted() : url_) << " is unreachable (" << error
                   << "); start it with scripts/services/mariadb start, or set MYSQL_URL";
    }
    static int serial = 0;
    table_ = "nudge_test_" + std::to_string(::getpid()) + "_" + std::to_string(++serial) + "_" +
             std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000);
  }

  void TearDown() override {
    sink_.reset();
    if (url_.empty() || (table_.empty() && extra_database_.empty())) return;  // skipped
    if (!admin_.connected() && !admin_.connect(url_).empty()) {
      std::cerr << "could not drop table " << table_ << "\n";
      return;
    }
    if (!table_.empty()) admin_.query("DROP TABLE IF EXISTS `" + table_ + "`");
    if (!extra_database_.empty()) admin_.query("DROP DATABASE IF EXISTS `" + extra_database_ + "`");
  }

  Config config(std::map<std::string, ConfigValue> extra = {}) {
    extra.emplace("url", url_);
    extra.emplace("table", table_);
    std::string error;
    auto c = nudge::testing::make_config(MysqlConfig::schema(), extra, &error);
    EXPECT_EQ(error, "");
    return c;
  }

  MysqlSink& start_sink(std::map<std::string, ConfigValue> extra = {}) {
    sink_ = std::make_unique<MysqlSink>(config(std::move(extra)), context_);
    const auto status = sink_->start();
    EXPECT_TRUE(status.ok()) << status.message();
    return *sink_;
  }

  long long count() { return std::stoll(admin_.scalar("SELECT COUNT(*) FROM `" + table_ + "`")); }
  Status write(BatchPtr batch) { return write_and_wait(io_, *sink_, std::move(batch)); }
  std::uint64_t counter(const std::string& name) { return context_.metrics().value(name); }

  std::string url_;
  std::string table_;
  std::string extra_database_;
  Admin admin_;
  boost::asio::io_context io_;
  TestContext context_{io_, "sink.mysql"};
  std::unique_ptr<MysqlSink> sink_;
};

TEST_F(MysqlSinkIntegrationTest, StartCreatesTheTableAndItsIndex) {
  start_sink();
  std::map<std::string, std::string> types;
  for (const auto& row : admin_.query(
           "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(COLLATION_NAME, '') FROM information_schema.COLUMNS "
           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '" +
           table_ + "'"))
    types[*row[0]] = *row[1] + (*row[2] == "NO" ? " not null" : "") + (row[3]->empty() ? "" : " " + *row[3]);
  const std::map<std::string, std::string> expected = {{"id", "char(36) not null ascii_bin"},
                                                       {"room", "varchar(128) not null utf8mb4_bin"},
                                                       {"sender", "varchar(255) not null utf8mb4_bin"},
                                                       {"payload", "longblob not null"},
                                                       {"created_at", "datetime(3) not null"},
                                                       {"origin", "varchar(255) not null utf8mb4_bin"},
                                                       {"log_partition", "int(11)"},
                                                       {"log_offset", "bigint(20)"},
                                                       {"stored_at", "datetime(3) not null"}};
  // MySQL 8 no longer shows integer display widths.
  auto got = types;
  if (got["log_partition"] == "int") got["log_partition"] = "int(11)";
  if (got["log_offset"] == "bigint") got["log_offset"] = "bigint(20)";
  EXPECT_EQ(got, expected);

  std::map<std::string, std::string> indexes;
  for (const auto& row : admin_.query("SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX), "
                                      "MIN(NON_UNIQUE) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
                                      "DATABASE() AND TABLE_NAME = '" +
                                      table_ + "' GROUP BY INDEX_NAME"))
    indexes[*row[0]] = *row[1] + (*row[2] == "0" ? " unique" : "");
  EXPECT_EQ(indexes, (std::map<std::string, std::string>{{"PRIMARY", "id unique"}, {"room_id_idx", "room,id"}}));
  EXPECT_EQ(admin_.scalar("SELECT CONCAT(ENGINE, ' ', TABLE_COLLATION) FROM information_schema.TABLES WHERE "
                          "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '" +
                          table_ + "'"),
            "InnoDB utf8mb4_bin");
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
  EXPECT_EQ(context_.logger().count(LogLevel::info, "created table '" + table_ + "'"), 1u);

  // A second instance starting on the same table finds it as it should be.
  TestContext other_context(io_, "sink.mysql");
  MysqlSink other(config(), other_context);
  EXPECT_TRUE(other.start().ok());
  EXPECT_EQ(other_context.logger().count(LogLevel::info, "created table"), 0u);
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, other));
}

TEST_F(MysqlSinkIntegrationTest, LargeBatchesAreSplitAndLandWhole) {
  start_sink();
  const auto max_packet = std::stoull(admin_.scalar("SELECT @@max_allowed_packet"));
  // More rows than one statement takes: 500 + 500 + 234.
  ASSERT_TRUE(write(make_batch(1234)).ok());
  EXPECT_EQ(count(), 1234);

  // More bytes than one packet takes.
  auto batch = std::make_shared<Batch>();
  std::string payload(1024 * 1024, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 % 256);
  const std::size_t n = max_packet / payload.size() + 4;  // 20 for the default 16 MiB
  for (std::size_t i = 0; i < n; ++i) batch->push_back(make_message("big", "s", payload));
  ASSERT_TRUE(write(batch).ok());
  ASSERT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), static_cast<long long>(1234 + n));
  EXPECT_EQ(counter("rows_inserted"), 1234 + n);
  EXPECT_EQ(counter("rows_duplicate"), n);
  EXPECT_EQ(admin_.scalar("SELECT COUNT(DISTINCT payload) FROM `" + table_ + "` WHERE room = 'big'"), "1");
  EXPECT_TRUE(admin_.scalar("SELECT payload FROM `" + table_ + "` WHERE room = 'big' LIMIT 1") == payload);
}

TEST_F(MysqlSinkIntegrationTest, TheStatementsOfABatchAreOneTransaction) {
  start_sink();
  // The 550th row breaks a CHECK constraint: the second statement fails, and
  // the first one's 500 rows must not stay.
  admin_.query("ALTER TABLE `" + table_ + "` ADD CONSTRAINT `" + table_ + "_no_poison` CHECK (sender <> 'poison')");
  auto batch = std::make_shared<Batch>();
  const auto rows = make_batch(600);
  for (std::size_t i = 0; i < rows->size(); ++i)
    batch->push_back(i == 549 ? make_message("lobby", "poison", "x") : (*rows)[i]);
  const auto status = write(batch);
  EXPECT_EQ(status.code(), StatusCode::internal) << status.message();
  EXPECT_EQ(count(), 0);
  EXPECT_EQ(counter("rows_inserted"), 0u);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);

  admin_.query("ALTER TABLE `" + table_ + "` DROP CONSTRAINT `" + table_ + "_no_poison`");
  ASSERT_TRUE(write(batch).ok());  // what the runtime does: the same batch again
  EXPECT_EQ(count(), 600);
  EXPECT_EQ(counter("rows_inserted"), 600u);
}

TEST_F(MysqlSinkIntegrationTest, AMessageOverMaxAllowedPacketIsRefusedWithoutLosingTheServer) {
  start_sink();
  const auto max_packet = std::stoull(admin_.scalar("SELECT @@max_allowed_packet"));
  auto batch = std::make_shared<Batch>();
  batch->push_back(make_message("big", "s", std::string(max_packet + 1, 'x')));
  const auto status = write(batch);
  EXPECT_EQ(status.code(), StatusCode::internal) << status.message();
  EXPECT_NE(status.message().find("max_allowed_packet of " + std::to_string(max_packet)), std::string::npos)
      << status.message();
  EXPECT_EQ(context_.logger().count(LogLevel::error, "raise max_allowed_packet"), 1u);
  // The session was dropped so that a raised limit is picked up; the next write reconnects.
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 0);
  ASSERT_TRUE(write(make_batch(3)).ok());
  EXPECT_EQ(counter("reconnects"), 1u);
  EXPECT_EQ(count(), 3);
}

// Text and bytes of every kind, and timestamps from 1969 to 9999: the
// conformance suite. Here what MySQL's columns bound: the longest room and
// sender, the earliest date, a NUL in a sender, as SQL reads them.
TEST_F(MysqlSinkIntegrationTest, TheLongestRoomsAndSendersAndTheEarliestDatesAreStoredExactly) {
  start_sink();
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
  struct Row {
    std::string room, sender, payload;
    std::int64_t ms;
  };
  std::string emoji_room;  // 128 four-byte characters: the most a room holds
  for (int i = 0; i < 128; ++i) emoji_room += "\xf0\x9f\x98\x80";
  const std::vector<Row> rows = {
      {"bytes", std::string("nul\0inside", 10), every_byte, 1600000000000},
      {std::string(128, 'r'), std::string(255, 's'), std::string(100000, '\\'), 1700000000001},
      {emoji_room, "\xf0\x9f\x98\x80", every_byte + every_byte, -30610224000000}};  // 1000-01-01T00:00:00.000Z
  auto batch = std::make_shared<Batch>();
  std::map<std::string, const Row*> by_id;
  for (const auto& r : rows) {
    batch->push_back(make_message(r.room, r.sender, r.payload, r.ms));
    by_id[batch->back()->id.to_string()] = &r;
  }
  ASSERT_TRUE(write(batch).ok());
  const auto result = admin_.query(
      "SELECT id, room, sender, payload, "
      "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', created_at) DIV 1000, origin, "
      "log_partition, log_offset FROM `" +
      table_ + "`");
  ASSERT_EQ(result.size(), rows.size());
  for (const auto& row : result) {
    const Row& want = *by_id.at(*row[0]);
    EXPECT_EQ(*row[1], want.room);
    EXPECT_EQ(*row[2], want.sender);
    EXPECT_TRUE(*row[3] == want.payload) << want.room;
    EXPECT_EQ(std::stoll(*row[4]), want.ms) << want.room;
    EXPECT_EQ(*row[5], "test-instance");
    EXPECT_FALSE(row[6]);
    EXPECT_FALSE(row[7]);
  }
  EXPECT_EQ(counter("texts_repaired"), 0u);
  EXPECT_EQ(counter("timestamps_clamped"), 0u);
  EXPECT_EQ(admin_.scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                          "TABLE_NAME = '" +
                          table_ + "'"),
            "1");
}

TEST_F(MysqlSinkIntegrationTest, WhatDoesNotFitIsRepairedNotRejected) {
  start_sink();
  auto batch = std::make_shared<Batch>();
  batch->push_back(make_message("room\xff", std::string(300, 's'), "payload \xff stays", 253402300800000));
  ASSERT_TRUE(write(batch).ok());
  const auto row = admin_.query("SELECT room, sender, payload, created_at FROM `" + table_ + "`").at(0);
  EXPECT_EQ(*row[0], "room\xef\xbf\xbd");
  EXPECT_EQ(*row[1], std::string(255, 's'));
  EXPECT_EQ(*row[2], "payload \xff stays");
  EXPECT_EQ(*row[3], "9999-12-31 23:59:59.999");
  EXPECT_EQ(counter("texts_repaired"), 2u);
  EXPECT_EQ(counter("timestamps_clamped"), 1u);
  EXPECT_EQ(context_.logger().count(LogLevel::warn, "were not valid UTF-8 or too long"), 1u);
}

TEST_F(MysqlSinkIntegrationTest, StoresLogPositions) {
  start_sink();
  auto batch = std::make_shared<Batch>();
  batch->push_back(make_message("r", "s", "a", 0, {3, 9000000000LL}));
  batch->push_back(make_message("r", "s", "b", 0, {0, 0}));
  batch->push_back(make_message("r", "s", "c", 0, {2147483647, 9223372036854775807LL}));
  batch->push_back(make_message("r", "s", "d"));  // not read from a log
  ASSERT_TRUE(write(batch).ok());
  std::map<std::string, std::string> got;
  for (const auto& row : admin_.query("SELECT payload, CONCAT(COALESCE(log_partition, 'null'), '/', "
                                      "COALESCE(log_offset, 'null')) FROM `" +
                                      table_ + "`"))
    got[*row[0]] = *row[1];
  EXPECT_EQ(got,
            (std::map<std::string, std::string>{
                {"a", "3/9000000000"}, {"b", "0/0"}, {"c", "2147483647/9223372036854775807"}, {"d", "null/null"}}));
}

TEST_F(MysqlSinkIntegrationTest, RefusesATableItDidNotMake) {
  admin_.query("CREATE TABLE `" + table_ + "` (id INT PRIMARY KEY, body TEXT)");
  MysqlSink sink(config(), context_);
  const auto status = sink.start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("exists but has no column 'room', 'sender'"), std::string::npos) << status.message();
}

TEST_F(MysqlSinkIntegrationTest, RefusesATableWithoutAUniqueId) {
  // Without a unique index on id, ON DUPLICATE KEY UPDATE would store every replay again.
  admin_.query("CREATE TABLE `" + table_ +
               "` (id CHAR(36) NOT NULL, room VARCHAR(128) NOT NULL, "
               "sender VARCHAR(255) NOT NULL, payload LONGBLOB NOT NULL, created_at DATETIME(3) NOT NULL, "
               "origin VARCHAR(255) NOT NULL, log_partition INT, log_offset BIGINT, "
               "stored_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), INDEX (id), UNIQUE (id, room))");
  MysqlSink sink(config(), context_);
  const auto status = sink.start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("no PRIMARY KEY or UNIQUE index on 'id' alone"), std::string::npos)
      << status.message();
}

TEST_F(MysqlSinkIntegrationTest, ADataErrorIsNotRetryable) {
  start_sink();
  admin_.query("ALTER TABLE `" + table_ + "` MODIFY room VARCHAR(3) NOT NULL");
  const auto status = write(make_batch(3, "much too long"));
  EXPECT_EQ(status.code(), StatusCode::internal) << status.message();
  EXPECT_FALSE(status.retryable());
  EXPECT_NE(status.message().find("error 1406"), std::string::npos) << status.message();
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);  // the session is fine
  EXPECT_EQ(counter("db_errors"), 1u);
  EXPECT_TRUE(write(make_batch(3, "ok")).ok());
}

TEST_F(MysqlSinkIntegrationTest, StatementTimeoutIsRetryable) {
  start_sink({{"statement_timeout_ms", std::int64_t{1000}}});
  const auto batch = make_batch(5);
  // Another session inserts the first id and holds its row lock.
  admin_.query("START TRANSACTION");
  admin_.query("INSERT INTO `" + table_ + "` (id, room, sender, payload, created_at, origin) VALUES ('" +
               (*batch)[0]->id.to_string() + "', 'r', 's', '', NOW(3), 'o')");
  const auto begin = std::chrono::steady_clock::now();
  const auto status = write(batch);
  const auto waited = std::chrono::steady_clock::now() - begin;
  EXPECT_EQ(status.code(), StatusCode::unavailable) << status.message();
  // MariaDB: max_statement_time (1969); MySQL: innodb_lock_wait_timeout (1205).
  EXPECT_TRUE(status.message().find("error 1969") != std::string::npos ||
              status.message().find("error 1205") != std::string::npos)
      << status.message();
  EXPECT_GE(waited, std::chrono::milliseconds(900));
  EXPECT_LT(waited, std::chrono::milliseconds(5000));
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
  admin_.query("ROLLBACK");
  EXPECT_TRUE(write(batch).ok());
  EXPECT_EQ(count(), 5);
}

TEST_F(MysqlSinkIntegrationTest, AKilledSessionIsReopened) {
  // A database of its own, so its sessions are told apart from other tests'.
  extra_database_ = "nudge_kill_" + std::to_string(::getpid());
  admin_.query("CREATE DATABASE IF NOT EXISTS `" + extra_database_ + "`");
  table_.clear();  // t is dropped with the database
  sink_ = std::make_unique<MysqlSink>(
      nudge::testing::make_config(
          MysqlConfig::schema(),
          {{"url", url_.substr(0, url_.rfind('/') + 1) + extra_database_}, {"table", std::string("t")}}),
      context_);
  ASSERT_TRUE(sink_->start().ok());
  ASSERT_TRUE(write(make_batch(5)).ok());
  const auto ids = admin_.query("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '" + extra_database_ +
                                "' AND ID <> CONNECTION_ID()");
  ASSERT_EQ(ids.size(), 1u);
  admin_.query("KILL " + *ids[0][0]);

  const auto status = write(make_batch(5));
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(status.retryable()) << status.message();
  EXPECT_NE(status.message().find("lost the connection"), std::string::npos) << status.message();
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 0);
  EXPECT_TRUE(write(make_batch(5)).ok());
  EXPECT_EQ(counter("reconnects"), 1u);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
  EXPECT_EQ(admin_.scalar("SELECT COUNT(*) FROM `" + extra_database_ + "`.`t`"), "10");
}

// ---- history -------------------------------------------------------------

// How rooms of valid UTF-8 are found (trailing spaces, case, LIKE wildcards):
// the conformance suite (HistoryMatchesRoomsExactly).
TEST_F(MysqlSinkIntegrationTest, HistoryFindsARoomStoredRepairedOrCutByItsOriginalBytes) {
  auto& sink = start_sink();
  // A room that was not valid UTF-8 or too long was stored repaired and cut;
  // asking with the same bytes finds it.
  const std::vector<std::string> rooms = {"room\xff", std::string(200, 'r'), std::string("nul\0in", 6)};
  auto batch = std::make_shared<Batch>();
  for (const auto& room : rooms) batch->push_back(make_message(room, "s", "in " + room));
  ASSERT_TRUE(write(batch).ok());
  for (const auto& room : rooms) {
    const auto r = nudge::testing::read_and_wait(io_, sink, {room, 10, std::nullopt});
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    ASSERT_EQ(r.messages.size(), 1u) << "'" << room << "'";
    EXPECT_EQ(r.messages[0]->payload, "in " + room);
  }
  EXPECT_EQ(nudge::testing::read_and_wait(io_, sink, {"room\xff", 10, std::nullopt}).messages.at(0)->room,
            "room\xef\xbf\xbd");
  EXPECT_EQ(nudge::testing::read_and_wait(io_, sink, {std::string(128, 'r'), 10, std::nullopt}).messages.size(), 1u);
  EXPECT_EQ(count(), static_cast<long long>(rooms.size()));
}

TEST_F(MysqlSinkIntegrationTest, HistoryQueriesUseTheRoomIdIndex) {
  start_sink();
  for (const char* room : {"a", "b", "c", "d"}) ASSERT_TRUE(write(make_batch(200, room)).ok());
  admin_.query("ANALYZE TABLE `" + table_ + "`");
  for (bool after : {false, true}) {
    std::string sql = "EXPLAIN " + history_sql(TableName{"", table_}, after);
    for (const char* value : {"'a'", "1", after ? "'0190a000-0000-7000-8000-000000000001'" : "10", "10"})
      if (auto at = sql.find('?'); at != std::string::npos) sql.replace(at, 1, value);
    const auto rows = admin_.query(sql);
    ASSERT_EQ(rows.size(), 1u);
    // EXPLAIN columns: id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra.
    EXPECT_EQ(rows[0][5].value_or("NULL"), "room_id_idx") << sql;
    EXPECT_EQ(rows[0][9].value_or("").find("filesort"), std::string::npos) << rows[0][9].value_or("");
  }
}

TEST_F(MysqlSinkIntegrationTest, ATableOfAnEarlierVersionGetsTheHistoryIndexAndKeepsItsOwn) {
  admin_.query("CREATE TABLE `" + table_ +
               "` (id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "
               "room VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
               "sender VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, payload LONGBLOB NOT NULL, "
               "created_at DATETIME(3) NOT NULL, origin VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT "
               "NULL, log_partition INT NULL, log_offset BIGINT NULL, stored_at DATETIME(3) NOT NULL DEFAULT "
               "CURRENT_TIMESTAMP(3), PRIMARY KEY (id), INDEX room_created_idx (room, created_at)) ENGINE=InnoDB");
  admin_.query("INSERT INTO `" + table_ +
               "` (id, room, sender, payload, created_at, origin, log_partition, "
               "log_offset) VALUES ('0190a000-0000-7000-8000-000000000001', 'old', 's', x'00ff', "
               "'2023-11-14 22:13:20.123', 'o', 2, 77), ('not-a-uuid', 'old', 's', '', NOW(3), 'o', NULL, NULL)");
  auto& sink = start_sink();
  std::map<std::string, std::string> indexes;
  for (const auto& row :
       admin_.query("SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM "
                    "information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '" +
                    table_ + "' GROUP BY INDEX_NAME"))
    indexes[*row[0]] = *row[1];
  EXPECT_EQ(indexes, (std::map<std::string, std::string>{
                         {"PRIMARY", "id"}, {"room_created_idx", "room,created_at"}, {"room_id_idx", "room,id"}}));
  EXPECT_EQ(context_.logger().count(LogLevel::info, "added the index 'room_id_idx'"), 1u);

  const auto old = nudge::testing::read_and_wait(io_, sink, {"old", 10, std::nullopt});
  ASSERT_TRUE(old.status.ok()) << old.status.message();
  ASSERT_EQ(old.messages.size(), 1u);  // the row whose id is not a UUID is left out
  EXPECT_EQ(old.messages[0]->id.to_string(), "0190a000-0000-7000-8000-000000000001");
  EXPECT_EQ(old.messages[0]->payload, std::string("\x00\xff", 2));
  EXPECT_EQ(old.messages[0]->timestamp_ms, 1700000000123);
  EXPECT_EQ(old.messages[0]->log_position.partition, 2);
  EXPECT_EQ(old.messages[0]->log_position.offset, 77);
  EXPECT_EQ(counter("history_rows_skipped"), 1u);
  EXPECT_EQ(context_.logger().count(LogLevel::warn, "rows whose id is not a UUID"), 1u);

  // A second start finds the index and leaves the table alone.
  TestContext other_context(io_, "sink.mysql");
  MysqlSink other(config(), other_context);
  ASSERT_TRUE(other.start().ok());
  EXPECT_EQ(other_context.logger().count(LogLevel::info, "added the index"), 0u);
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, other));
}

TEST_F(MysqlSinkIntegrationTest, AnIndexNamedLikeTheHistoryIndexOnOtherColumnsIsReported) {
  start_sink();
  admin_.query("ALTER TABLE `" + table_ + "` DROP INDEX room_id_idx, ADD INDEX room_id_idx (sender)");
  TestContext other_context(io_, "sink.mysql");
  MysqlSink other(config(), other_context);
  ASSERT_TRUE(other.start().ok());  // history reads still work, without the index
  EXPECT_EQ(other_context.logger().count(LogLevel::warn, "history reads will be slow"), 1u);
  ASSERT_TRUE(write(make_batch(3)).ok());
  EXPECT_EQ(nudge::testing::read_and_wait(io_, other, {"lobby", 10, std::nullopt}).messages.size(), 3u);
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, other));
}

TEST_F(MysqlSinkIntegrationTest, FailedReadsAreClassifiedAndALostSessionIsReopened) {
  // Before start: an error, on the executor.
  {
    MysqlSink unstarted(config(), context_);
    EXPECT_EQ(nudge::testing::read_and_wait(io_, unstarted, {"lobby", 10, std::nullopt}).status.code(),
              StatusCode::internal);
  }
  // A database of its own, so the sink's session is told apart from other tests'.
  extra_database_ = "nudge_hist_" + std::to_string(::getpid());
  admin_.query("CREATE DATABASE IF NOT EXISTS `" + extra_database_ + "`");
  table_.clear();  // t is dropped with the database
  sink_ = std::make_unique<MysqlSink>(
      nudge::testing::make_config(MysqlConfig::schema(),
                                  {{"url", url_.substr(0, url_.rfind('/') + 1) + extra_database_},
                                   {"table", std::string("t")},
                                   {"statement_timeout_ms", std::int64_t{1000}}}),
      context_);
  ASSERT_TRUE(sink_->start().ok());
  ASSERT_TRUE(write(make_batch(5)).ok());
  auto read = [&] { return nudge::testing::read_and_wait(io_, *sink_, {"lobby", 10, std::nullopt}); };
  ASSERT_EQ(read().messages.size(), 5u);

  // A table locked past the statement timeout: retryable, the session is kept.
  admin_.query("LOCK TABLES `" + extra_database_ + "`.`t` WRITE");
  const auto locked = read();
  admin_.query("UNLOCK TABLES");
  EXPECT_EQ(locked.status.code(), StatusCode::unavailable) << locked.status.message();
  EXPECT_TRUE(locked.messages.empty());
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);
  EXPECT_EQ(read().messages.size(), 5u);

  // The session is killed: the read fails retryably, the next one reconnects.
  const auto ids = admin_.query("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '" + extra_database_ +
                                "' AND ID <> CONNECTION_ID()");
  ASSERT_EQ(ids.size(), 1u);
  admin_.query("KILL " + *ids[0][0]);
  const auto killed = read();
  EXPECT_TRUE(killed.status.retryable()) << killed.status.message();
  EXPECT_NE(killed.status.message().find("lost the connection"), std::string::npos) << killed.status.message();
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 0);
  const auto again = read();
  EXPECT_TRUE(again.status.ok()) << again.status.message();
  EXPECT_EQ(again.messages.size(), 5u);
  EXPECT_EQ(counter("reconnects"), 1u);
  EXPECT_EQ(context_.metrics().gauge_value("connected"), 1);

  // A missing table does not clear up by itself: not retryable.
  admin_.query("DROP TABLE `" + extra_database_ + "`.`t`");
  const auto missing = read();
  EXPECT_EQ(missing.status.code(), StatusCode::internal) << missing.status.message();
  EXPECT_NE(missing.status.message().find("error 1146"), std::string::npos) << missing.status.message();
}

TEST_F(MysqlSinkIntegrationTest, Throughput) {
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
TEST_F(MysqlSinkIntegrationTest, ChecksTheConnectionWhileIdleAtTheIntervalSetLive) {
  auto& sink = start_sink({{"health_check_interval_ms", std::int64_t{100}}});
  EXPECT_TRUE(sink.readiness().ready) << sink.readiness().reason;
  nudge::testing::run_for(io_, std::chrono::milliseconds(650));
  EXPECT_GE(counter("health_checks"), 3u) << "SELECT 1 every 100 ms without any traffic";
  EXPECT_TRUE(sink.readiness().ready) << sink.readiness().reason;
  EXPECT_TRUE(MysqlConfig::schema().find("health_check_interval_ms")->live);
  ASSERT_TRUE(sink.reconfigure(config({{"health_check_interval_ms", std::int64_t{60000}}})).ok());
  const auto before = counter("health_checks");
  nudge::testing::run_for(io_, std::chrono::milliseconds(400));
  EXPECT_LE(counter("health_checks"), before + 1) << "the new interval of 60 s applies at once";
  EXPECT_TRUE(nudge::testing::stop_and_wait(io_, sink));
}

}  // namespace
}  // namespace nudge::plugins::mysql
