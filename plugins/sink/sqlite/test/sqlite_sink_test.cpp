#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include <sqlite3.h>
#include <boost/asio/io_context.hpp>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"
#include "sqlite_sink.hpp"

namespace nudge::plugins::sqlite {
namespace {

Config config_for(const std::string& path) { return testing::make_config(SqliteConfig::schema(), {{"path", path}}); }

MessagePtr message(std::string payload, int n) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = "room-" + std::to_string(n % 3);
  m->sender = "sender";
  m->payload = std::move(payload);
  m->timestamp_ms = 1764300000000 + n;
  m->origin = "test";
  return m;
}

class SqliteSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("nudge-sqlite-" + MessageId::generate().to_string());
    path_ = (dir_ / "nested" / "chat.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::pair<std::string, std::string>> rows() {
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT id, payload FROM messages ORDER BY created_at", -1, &stmt, nullptr);
    std::vector<std::pair<std::string, std::string>> out;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)),
                       std::string(static_cast<const char*>(sqlite3_column_blob(stmt, 1)),
                                   static_cast<std::size_t>(sqlite3_column_bytes(stmt, 1))));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return out;
  }

  std::filesystem::path dir_;
  std::string path_;
  boost::asio::io_context io_;
  testing::TestContext context_{io_, "sink.sqlite"};
};

TEST(SqliteConfig, DefaultsAndChecks) {
  const auto schema = SqliteConfig::schema();
  EXPECT_TRUE(schema.find("path")->required());
  EXPECT_EQ(std::get<std::string>(*schema.find("table")->default_value), "messages");
  EXPECT_EQ(schema.find("table")->validate(std::string("msgs; DROP TABLE x")),
            "must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)");
  EXPECT_EQ(schema.find("table")->validate(std::string("chat_messages")), "");
  EXPECT_NE(schema.find("synchronous")->validate(std::string("off")), "");
  EXPECT_NE(schema.find("path")->validate(std::string("")), "");
}

TEST_F(SqliteSinkTest, ABatchLandsAndAReplayedBatchAddsNoRow) {
  SqliteSink sink(config_for(path_), context_);
  ASSERT_TRUE(sink.start().ok());
  auto batch = std::make_shared<Batch>();
  for (int n = 0; n < 100; ++n) batch->push_back(message("m" + std::to_string(n), n));
  Status first = Status::error(StatusCode::internal, "not called");
  Status replay = Status::error(StatusCode::internal, "not called");
  bool replayed = false;
  sink.write(batch, [&](Status s) {
    first = s;
    sink.write(batch, [&](Status s2) {
      replay = s2;
      replayed = true;
    });
  });
  ASSERT_TRUE(testing::run_until(
      io_, [&] { return replayed; }, std::chrono::seconds(10)));
  EXPECT_TRUE(first.ok()) << first.message();
  EXPECT_TRUE(replay.ok()) << replay.message();
  EXPECT_EQ(rows().size(), 100u);
  EXPECT_EQ(context_.metrics().value("rows_inserted"), 100u);
  EXPECT_EQ(context_.metrics().value("rows_duplicate"), 100u);
  EXPECT_TRUE(testing::stop_and_wait(io_, sink));
}

TEST_F(SqliteSinkTest, StartFailsClearlyWhenTheFileCannotBeOpened) {
  SqliteSink sink(config_for("/proc/nope/chat.db"), context_);
  const auto status = sink.start();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("/proc/nope/chat.db"), std::string::npos) << status.message();
}

// ---- history -------------------------------------------------------------

struct HistoryResult {
  Status status = Status::error(StatusCode::internal, "no answer");
  std::vector<MessagePtr> messages;
};

/// Calls read_history and runs the loop until its answer.
HistoryResult read_and_wait(boost::asio::io_context& io, SqliteSink& sink, HistoryQuery query) {
  auto result = std::make_shared<std::optional<HistoryResult>>();
  sink.read_history(std::move(query), [result](Status s, std::vector<MessagePtr> m) {
    *result = HistoryResult{std::move(s), std::move(m)};
  });
  if (!testing::run_until(
          io, [&] { return result->has_value(); }, std::chrono::seconds(10)))
    return {Status::error(StatusCode::timeout, "no answer within 10 s"), {}};
  return **result;
}

Status write_and_wait(boost::asio::io_context& io, SqliteSink& sink, BatchPtr batch) {
  std::optional<Status> result;
  sink.write(std::move(batch), [&](Status s) { result = std::move(s); });
  if (!testing::run_until(
          io, [&] { return result.has_value(); }, std::chrono::seconds(10)))
    return Status::error(StatusCode::timeout, "no answer within 10 s");
  return *result;
}

void expect_same(const Message& got, const Message& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.room, want.room);
  EXPECT_EQ(got.sender, want.sender);
  EXPECT_TRUE(got.payload == want.payload) << "payload of " << want.id.to_string();
  EXPECT_EQ(got.timestamp_ms, want.timestamp_ms);
  EXPECT_EQ(got.origin, want.origin);
  EXPECT_EQ(got.log_position.partition, want.log_position.partition);
  EXPECT_EQ(got.log_position.offset, want.log_position.offset);
}

// Every field through history, rooms of valid UTF-8, ordering by id: the
// conformance suite. Here what SQLite alone does: it keeps log positions
// and stores a room that is not UTF-8 (or holds a NUL) as it is.
TEST_F(SqliteSinkTest, HistoryKeepsLogPositions) {
  SqliteSink sink(config_for(path_), context_);
  ASSERT_TRUE(sink.start().ok());
  auto batch = std::make_shared<Batch>();
  for (int n = 0; n < 3; ++n) {
    batch->push_back(message("m" + std::to_string(n), 0));
    if (n) std::const_pointer_cast<Message>(batch->back())->log_position = {n, 9000000000LL + n};
  }
  ASSERT_TRUE(write_and_wait(io_, sink, batch).ok());
  const auto r = read_and_wait(io_, sink, {"room-0", 10, std::nullopt});
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  ASSERT_EQ(r.messages.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) expect_same(*r.messages[i], *(*batch)[i]);
  EXPECT_FALSE(r.messages[0]->log_position.valid()) << "a message not read from a log has no position";
}

TEST_F(SqliteSinkTest, HistoryFindsRoomsThatAreNotUtf8AsTheyAre) {
  SqliteSink sink(config_for(path_), context_);
  ASSERT_TRUE(sink.start().ok());
  const std::vector<std::string> rooms = {std::string("nul\0inside", 10), "bad \xff utf-8"};
  auto batch = std::make_shared<Batch>();
  for (const auto& room : rooms) {
    batch->push_back(message("in " + room, 0));
    std::const_pointer_cast<Message>(batch->back())->room = room;
  }
  ASSERT_TRUE(write_and_wait(io_, sink, batch).ok());
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    auto r = read_and_wait(io_, sink, {rooms[i], 10, std::nullopt});
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    ASSERT_EQ(r.messages.size(), 1u) << i;
    EXPECT_EQ(r.messages[0]->room, rooms[i]);
    EXPECT_EQ(r.messages[0]->payload, "in " + rooms[i]);
  }
  EXPECT_EQ(rows().size(), rooms.size());  // the table is still there
}

TEST_F(SqliteSinkTest, HistoryQueriesUseTheRoomIdIndex) {
  SqliteSink sink(config_for(path_), context_);
  ASSERT_TRUE(sink.start().ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  for (const char* sql : {"EXPLAIN QUERY PLAN SELECT id, room, sender, payload, created_at, origin, log_partition, "
                          "log_offset FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT ?2",
                          "EXPLAIN QUERY PLAN SELECT id, room, sender, payload, created_at, origin, log_partition, "
                          "log_offset FROM messages WHERE room = ?1 AND id > ?3 ORDER BY id ASC LIMIT ?2"}) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    std::string plan;
    while (sqlite3_step(stmt) == SQLITE_ROW)
      plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3)) + std::string("; ");
    sqlite3_finalize(stmt);
    EXPECT_NE(plan.find("INDEX messages_room_id"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;  // no sort: the index gives the order
  }
  sqlite3_close(db);
}

TEST_F(SqliteSinkTest, AnOlderDatabaseGetsTheHistoryIndexAndKeepsItsOwn) {
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE messages (id TEXT PRIMARY KEY, room TEXT NOT NULL, sender TEXT NOT NULL, "
                         "payload BLOB NOT NULL, created_at INTEGER NOT NULL, origin TEXT NOT NULL, log_partition "
                         "INTEGER, log_offset INTEGER) WITHOUT ROWID;"
                         "CREATE INDEX messages_room_created ON messages (room, created_at);"
                         "INSERT INTO messages VALUES ('0190a000-0000-7000-8000-000000000001', 'old', 's', x'00ff', "
                         "1700000000000, 'o', NULL, NULL);"
                         // Written by something else: left out of history, counted.
                         "INSERT INTO messages VALUES ('not-a-uuid', 'old', 's', x'', 1, 'o', NULL, NULL);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  SqliteSink sink(config_for(path_), context_);
  ASSERT_TRUE(sink.start().ok());
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' ORDER BY name",
                     -1, &stmt, nullptr);
  std::vector<std::string> indexes;
  while (sqlite3_step(stmt) == SQLITE_ROW)
    indexes.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_EQ(indexes, (std::vector<std::string>{"messages_room_created", "messages_room_id"}));

  auto r = read_and_wait(io_, sink, {"old", 10, std::nullopt});
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0]->id.to_string(), "0190a000-0000-7000-8000-000000000001");
  EXPECT_EQ(r.messages[0]->payload, std::string("\x00\xff", 2));
  EXPECT_EQ(r.messages[0]->timestamp_ms, 1700000000000);
  EXPECT_FALSE(r.messages[0]->log_position.valid());
  EXPECT_EQ(context_.metrics().value("history_rows_skipped"), 1u);
  EXPECT_EQ(context_.logger().count(LogLevel::warn, "rows whose id is not a UUID"), 1u);
}

TEST_F(SqliteSinkTest, AFailedReadReportsAStatus) {
  SqliteSink sink(config_for(path_), context_);
  // Before start: an error, on the executor.
  auto early = read_and_wait(io_, sink, {"room", 10, std::nullopt});
  EXPECT_EQ(early.status.code(), StatusCode::internal);

  ASSERT_TRUE(sink.start().ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE messages", nullptr, nullptr, nullptr), SQLITE_OK);
  // A missing table does not clear up by itself: not retryable.
  auto missing = read_and_wait(io_, sink, {"room", 10, std::nullopt});
  EXPECT_EQ(missing.status.code(), StatusCode::internal) << missing.status.message();
  EXPECT_NE(missing.status.message().find("no such table"), std::string::npos) << missing.status.message();
  EXPECT_TRUE(missing.messages.empty());

  // The same read works again once the table is back (start() makes it).
  sqlite3_close(db);
  SqliteSink again(config_for(path_), context_);
  ASSERT_TRUE(again.start().ok());
  auto fine = read_and_wait(io_, sink, {"room", 10, std::nullopt});
  EXPECT_TRUE(fine.status.ok()) << fine.status.message();
  EXPECT_TRUE(fine.messages.empty());
  EXPECT_EQ(context_.metrics().value("history_reads"), 1u);
}

TEST_F(SqliteSinkTest, NotReadyAfterAFailedWriteUntilAWriteSucceeds) {
  SqliteSink sink(config_for(path_), context_);
  EXPECT_FALSE(sink.readiness().ready) << "not ready before start()";
  ASSERT_TRUE(sink.start().ok());
  EXPECT_TRUE(sink.readiness().ready) << sink.readiness().reason;

  auto batch = std::make_shared<Batch>();
  batch->push_back(message("one", 1));
  ASSERT_TRUE(testing::write_and_wait(io_, sink, batch).ok());
  EXPECT_TRUE(sink.readiness().ready);

  // Someone drops the table behind the sink's back: the next write fails.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE messages", nullptr, nullptr, nullptr), SQLITE_OK);
  auto next = std::make_shared<Batch>();
  next->push_back(message("two", 2));
  EXPECT_FALSE(testing::write_and_wait(io_, sink, next).ok());
  const auto failed = sink.readiness();
  EXPECT_FALSE(failed.ready);
  EXPECT_NE(failed.reason.find("the last write to '" + path_ + "' failed"), std::string::npos) << failed.reason;
  EXPECT_NE(failed.reason.find("no such table"), std::string::npos) << failed.reason;

  // The table is back: the retried write succeeds and the sink is ready again.
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE messages (id TEXT PRIMARY KEY, room TEXT NOT NULL, sender TEXT NOT NULL,"
                         " payload BLOB NOT NULL, created_at INTEGER NOT NULL, origin TEXT NOT NULL,"
                         " log_partition INTEGER, log_offset INTEGER) WITHOUT ROWID",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EXPECT_TRUE(testing::write_and_wait(io_, sink, next).ok());
  EXPECT_TRUE(sink.readiness().ready) << sink.readiness().reason;
  EXPECT_TRUE(testing::stop_and_wait(io_, sink));
}

}  // namespace
}  // namespace nudge::plugins::sqlite
