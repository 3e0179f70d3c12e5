#include <gtest/gtest.h>

#include <filesystem>

#include <boost/asio/io_context.hpp>
#include <sqlite3.h>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"
#include "sqlite_sink.hpp"

namespace nudge::plugins::sqlite {
namespace {

Config config_for(const std::string& path) {
  return testing::make_config(SqliteConfig::schema(), {{"path", path}});
}

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
  ASSERT_TRUE(testing::run_until(io_, [&] { return replayed; }, std::chrono::seconds(10)));
  EXPECT_TRUE(first.ok()) << first.message();
  EXPECT_TRUE(replay.ok()) << replay.message();
  EXPECT_EQ(rows().size(), 100u);
  EXPECT_EQ(context_.metrics().value("rows_inserted"), 100u);
  EXPECT_EQ(context_.metrics().value("rows_duplicate"), 100u);
  bool stopped = false;
  sink.stop([&] { stopped = true; });
  EXPECT_TRUE(stopped);
}

TEST_F(SqliteSinkTest, PayloadsAreStoredByteForByte) {
  SqliteSink sink(config_for(path_), context_);
  ASSERT_TRUE(sink.start().ok());
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  const std::vector<std::string> payloads = {every_byte, "emoji \xF0\x9F\x98\x80 and 'quotes' \"double\" \\back\\",
                                             "'); DROP TABLE messages; --", "", std::string(70000, 'x')};
  Batch batch;
  for (std::size_t n = 0; n < payloads.size(); ++n) batch.push_back(message(payloads[n], static_cast<int>(n)));
  std::size_t inserted = 0;
  ASSERT_TRUE(sink.write_now(batch, inserted).ok());
  EXPECT_EQ(inserted, payloads.size());
  const auto stored = rows();
  ASSERT_EQ(stored.size(), payloads.size());
  for (std::size_t n = 0; n < payloads.size(); ++n) {
    EXPECT_EQ(stored[n].first, batch[n]->id.to_string());
    EXPECT_EQ(stored[n].second, payloads[n]) << "payload " << n;
  }
}

TEST_F(SqliteSinkTest, StartFailsClearlyWhenTheFileCannotBeOpened) {
  SqliteSink sink(config_for("/proc/nope/chat.db"), context_);
  const auto status = sink.start();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("/proc/nope/chat.db"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace nudge::plugins::sqlite
