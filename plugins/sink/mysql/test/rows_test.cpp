#include <numeric>

#include <gtest/gtest.h>

#include "rows.hpp"
#include "sql.hpp"

namespace nudge::plugins::mysql {
namespace {

std::string repaired(std::string_view text, std::size_t max_chars = 1000) {
  std::string out;
  repair_text(text, max_chars, out);
  return out;
}

TEST(RepairTextTest, ValidTextIsKept) {
  std::string out;
  for (std::string_view text : {std::string_view(""), std::string_view("lobby"),
                                std::string_view("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"),
                                std::string_view("'); DROP TABLE x; --\\\""), std::string_view("nul\0inside", 10)}) {
    EXPECT_FALSE(repair_text(text, 1000, out)) << text;
    EXPECT_EQ(out, text);
  }
}

TEST(RepairTextTest, InvalidBytesBecomeReplacementCharacters) {
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(repaired("a\xff"
                     "b"),
            "a" + r + "b");
  EXPECT_EQ(repaired("\xc0\xaf"), r + r);                  // overlong '/'
  EXPECT_EQ(repaired("\xed\xa0\x80"), r + r + r);          // a UTF-16 surrogate
  EXPECT_EQ(repaired("\xf4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(repaired("\xe6\x97"), r);                      // truncated: one replacement
  EXPECT_EQ(repaired("\xf0\x9f\x98"), r);
  std::string out;
  EXPECT_TRUE(repair_text("\x80", 10, out));
}

TEST(RepairTextTest, CutsAtTheColumnsLengthInCharacters) {
  std::string out;
  EXPECT_FALSE(repair_text(std::string(128, 'a'), 128, out));
  EXPECT_TRUE(repair_text(std::string(129, 'a'), 128, out));
  EXPECT_EQ(out, std::string(128, 'a'));
  // Characters, not bytes: 128 four-byte emoji fit in VARCHAR(128) utf8mb4.
  std::string emoji;
  for (int i = 0; i < 130; ++i) emoji += "\xf0\x9f\x98\x80";
  EXPECT_TRUE(repair_text(emoji, 128, out));
  EXPECT_EQ(out, emoji.substr(0, 128 * 4));
  EXPECT_FALSE(repair_text(emoji.substr(0, 128 * 4), 128, out));
}

TEST(CivilTimeTest, ConvertsUnixMillisecondsToUtc) {
  bool clamped = true;
  EXPECT_EQ(utc_civil_time(0, clamped), (CivilTime{1970, 1, 1, 0, 0, 0, 0}));
  EXPECT_FALSE(clamped);
  EXPECT_EQ(utc_civil_time(1700000000123, clamped), (CivilTime{2023, 11, 14, 22, 13, 20, 123}));
  EXPECT_EQ(utc_civil_time(-1, clamped), (CivilTime{1969, 12, 31, 23, 59, 59, 999}));
  EXPECT_EQ(utc_civil_time(-1000, clamped), (CivilTime{1969, 12, 31, 23, 59, 59, 0}));
  EXPECT_EQ(utc_civil_time(951782400000, clamped), (CivilTime{2000, 2, 29, 0, 0, 0, 0}));  // a leap day
  EXPECT_EQ(utc_civil_time(kMaxDatetimeMs, clamped), (CivilTime{9999, 12, 31, 23, 59, 59, 999}));
  EXPECT_FALSE(clamped);
  EXPECT_EQ(utc_civil_time(kMinDatetimeMs, clamped), (CivilTime{1000, 1, 1, 0, 0, 0, 0}));
  EXPECT_FALSE(clamped);
}

TEST(CivilTimeTest, UnixMsIsTheInverseOfUtcCivilTime) {
  EXPECT_EQ(unix_ms(CivilTime{1970, 1, 1, 0, 0, 0, 0}), 0);
  EXPECT_EQ(unix_ms(CivilTime{2023, 11, 14, 22, 13, 20, 123}), 1700000000123);
  EXPECT_EQ(unix_ms(CivilTime{1969, 12, 31, 23, 59, 59, 999}), -1);
  for (std::int64_t ms :
       {kMinDatetimeMs, kMinDatetimeMs + 1, std::int64_t{-1000}, std::int64_t{-1}, std::int64_t{0},
        std::int64_t{951782400000}, std::int64_t{1764300012345}, kMaxDatetimeMs - 1, kMaxDatetimeMs}) {
    bool clamped = false;
    EXPECT_EQ(unix_ms(utc_civil_time(ms, clamped)), ms);
  }
  // Every millisecond of a day, and a step through the whole range.
  for (std::int64_t ms = 1700000000000; ms < 1700000000000 + 86400000; ms += 997) {
    bool clamped = false;
    ASSERT_EQ(unix_ms(utc_civil_time(ms, clamped)), ms);
  }
  for (std::int64_t ms = kMinDatetimeMs; ms < kMaxDatetimeMs; ms += 86400000LL * 365 + 12345) {
    bool clamped = false;
    ASSERT_EQ(unix_ms(utc_civil_time(ms, clamped)), ms);
  }
}

TEST(CivilTimeTest, ClampsToDatetimesRange) {
  bool clamped = false;
  EXPECT_EQ(utc_civil_time(kMaxDatetimeMs + 1, clamped), (CivilTime{9999, 12, 31, 23, 59, 59, 999}));
  EXPECT_TRUE(clamped);
  EXPECT_EQ(utc_civil_time(INT64_MAX, clamped), (CivilTime{9999, 12, 31, 23, 59, 59, 999}));
  EXPECT_EQ(utc_civil_time(INT64_MIN, clamped), (CivilTime{1000, 1, 1, 0, 0, 0, 0}));
  EXPECT_TRUE(clamped);
}

MessagePtr message(std::string room, std::string payload, std::int64_t ms, LogPosition position = {}) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = std::move(room);
  m->sender = "alice";
  m->payload = std::move(payload);
  m->timestamp_ms = ms;
  m->origin = "eu-1";
  m->log_position = position;
  return m;
}

TEST(EncodeBatchTest, RowsCarryEveryColumn) {
  Batch batch = {message("lobby", "hi", 1700000000123, {3, 9000000000}), message("room\xff", "", 253402300800000),
                 message(std::string(200, 'r'), std::string(300, '\0'), 0)};
  const auto e = encode_batch(batch);
  ASSERT_EQ(e.rows.size(), 3u);
  EXPECT_EQ(e.rows[0].id, batch[0]->id.to_string());
  EXPECT_EQ(e.rows[0].id.size(), 36u);
  EXPECT_EQ(e.rows[0].room, "lobby");
  EXPECT_EQ(e.rows[0].sender, "alice");
  EXPECT_EQ(e.rows[0].origin, "eu-1");
  EXPECT_EQ(e.rows[0].payload.data(), batch[0]->payload.data());  // not copied
  EXPECT_EQ(e.rows[0].created_at, (CivilTime{2023, 11, 14, 22, 13, 20, 123}));
  EXPECT_EQ(e.rows[0].log_partition, 3);
  EXPECT_EQ(e.rows[0].log_offset, 9000000000);
  EXPECT_FALSE(e.rows[1].log_partition);
  EXPECT_FALSE(e.rows[1].log_offset);
  EXPECT_EQ(e.rows[1].room, "room\xef\xbf\xbd");
  EXPECT_EQ(e.rows[2].room, std::string(128, 'r'));
  EXPECT_EQ(e.rows[2].payload, std::string(300, '\0'));
  EXPECT_EQ(e.texts_repaired, 2u);
  EXPECT_EQ(e.timestamps_clamped, 1u);
}

TEST(PacketSizeTest, LengthEncodedIntegers) {
  EXPECT_EQ(lenenc_size(0), 1u);
  EXPECT_EQ(lenenc_size(250), 1u);
  EXPECT_EQ(lenenc_size(251), 3u);
  EXPECT_EQ(lenenc_size(65535), 3u);
  EXPECT_EQ(lenenc_size(65536), 4u);
  EXPECT_EQ(lenenc_size(16777215), 4u);
  EXPECT_EQ(lenenc_size(16777216), 9u);
}

TEST(PacketSizeTest, RowBytes) {
  Row row;
  row.id = std::string(36, 'x');
  row.room = "lobby";
  row.sender = "alice";
  row.origin = "eu-1";
  std::string payload(1000, 'p');
  row.payload = payload;
  // types 16 + null bitmap 1 + id 37 + room 6 + sender 6 + payload 1003 + datetime 12 + origin 5
  EXPECT_EQ(row_packet_bytes(row), 16u + 1 + 37 + 6 + 6 + 1003 + 12 + 5);
  row.log_partition = 1;
  row.log_offset = 2;
  EXPECT_EQ(row_packet_bytes(row), 16u + 1 + 37 + 6 + 6 + 1003 + 12 + 5 + 4 + 8);
}

std::vector<std::size_t> counts(const ChunkPlan& plan) {
  std::vector<std::size_t> out;
  std::size_t next = 0;
  for (const auto& c : plan.chunks) {
    EXPECT_EQ(c.first, next);  // consecutive, nothing skipped
    next += c.count;
    out.push_back(c.count);
  }
  return out;
}

TEST(ChunkPlanTest, SmallRowsGoInStatementsOfAtMost500) {
  const std::size_t mib16 = 16 * 1024 * 1024;
  EXPECT_EQ(counts(plan_chunks(std::vector<std::size_t>(500, 100), mib16, 500)), (std::vector<std::size_t>{500}));
  EXPECT_EQ(counts(plan_chunks(std::vector<std::size_t>(1, 100), mib16, 500)), (std::vector<std::size_t>{1}));
  EXPECT_EQ(counts(plan_chunks(std::vector<std::size_t>(1234, 100), mib16, 500)),
            (std::vector<std::size_t>{500, 500, 234}));
  EXPECT_TRUE(plan_chunks({}, mib16, 500).chunks.empty());
}

TEST(ChunkPlanTest, StatementsStayBelowMaxAllowedPacket) {
  const std::size_t max_packet = 16 * 1024 * 1024;
  const std::size_t mib = 1024 * 1024;
  // 20 rows of 1 MiB: 15 fit below 16 MiB with the statement's overhead.
  const auto plan = plan_chunks(std::vector<std::size_t>(20, mib + 100), max_packet, 500);
  EXPECT_EQ(counts(plan), (std::vector<std::size_t>{15, 5}));
  for (const auto& c : plan.chunks) EXPECT_LE(c.count * (mib + 100) + kStatementOverheadBytes, max_packet);

  // Mixed sizes: greedy, in order, each statement within the limit.
  std::vector<std::size_t> sizes = {10, 600, 300, 300, 50, 700, 1};
  const auto mixed = plan_chunks(sizes, 1000 + kStatementOverheadBytes, 500);
  EXPECT_EQ(counts(mixed), (std::vector<std::size_t>{3, 2, 2}));  // 910, 350, 701
  for (const auto& c : mixed.chunks) {
    const auto bytes = std::accumulate(sizes.begin() + static_cast<long>(c.first),
                                       sizes.begin() + static_cast<long>(c.first + c.count), std::size_t{0});
    EXPECT_LE(bytes, 1000u);
  }
  // A row exactly at the budget fits alone.
  EXPECT_EQ(counts(plan_chunks({1000, 1000}, 1000 + kStatementOverheadBytes, 500)), (std::vector<std::size_t>{1, 1}));
}

TEST(ChunkPlanTest, ARowOverTheLimitIsReported) {
  const auto plan = plan_chunks({10, 20, 2000, 10}, 1000 + kStatementOverheadBytes, 500);
  EXPECT_TRUE(plan.chunks.empty());
  ASSERT_TRUE(plan.too_large);
  EXPECT_EQ(*plan.too_large, 2u);
  EXPECT_FALSE(plan_chunks({10}, 1000 + kStatementOverheadBytes, 500).too_large);
  EXPECT_TRUE(plan_chunks({10}, 100, 500).too_large);  // max_packet below the overhead
}

TEST(SqlTest, InsertHasOnePlaceholderGroupPerRow) {
  TableName table{"", "messages"};
  EXPECT_EQ(insert_sql(table, 1),
            "INSERT INTO `messages` (id, room, sender, payload, created_at, origin, log_partition, log_offset) "
            "VALUES (?,?,?,?,?,?,?,?) ON DUPLICATE KEY UPDATE id = id");
  const auto sql = insert_sql(TableName{"archive", "m"}, 500);
  EXPECT_EQ(sql.rfind("INSERT INTO `archive`.`m` ", 0), 0u);
  EXPECT_EQ(std::count(sql.begin(), sql.end(), '?'), 4000);
  EXPECT_EQ(std::count(sql.begin(), sql.end(), '('), 501);
}

TEST(SqlTest, CreateTable) {
  const auto sql = create_table_sql(TableName{"", "messages"});
  EXPECT_EQ(sql.rfind("CREATE TABLE IF NOT EXISTS `messages` (id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin", 0),
            0u);
  for (const char* part :
       {"room VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL", "sender VARCHAR(255)",
        "payload LONGBLOB NOT NULL", "created_at DATETIME(3) NOT NULL", "origin VARCHAR(255)", "log_partition INT NULL",
        "log_offset BIGINT NULL", "stored_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)", "PRIMARY KEY (id)",
        "INDEX room_id_idx (room, id)", ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"})
    EXPECT_NE(sql.find(part), std::string::npos) << part;
  EXPECT_EQ(columns().size(), 9u);
  EXPECT_EQ(kRoomChars, 128u);
}

TEST(SqlTest, HistoryAndIndexStatements) {
  const TableName table{"archive", "m"};
  EXPECT_EQ(history_sql(table, false),
            "SELECT id, room, sender, payload, created_at, origin, log_partition, log_offset FROM `archive`.`m` "
            "WHERE room = ? AND OCTET_LENGTH(room) = ? ORDER BY id DESC LIMIT ?");
  EXPECT_EQ(history_sql(table, true),
            "SELECT id, room, sender, payload, created_at, origin, log_partition, log_offset FROM `archive`.`m` "
            "WHERE room = ? AND OCTET_LENGTH(room) = ? AND id > ? ORDER BY id ASC LIMIT ?");
  // CREATE INDEX IF NOT EXISTS: MariaDB 10.1.4 and later only.
  EXPECT_EQ(create_index_sql(table, parse_server_info("10.11.19-MariaDB-0+deb12u1", true)),
            "CREATE INDEX IF NOT EXISTS room_id_idx ON `archive`.`m` (room, id)");
  EXPECT_EQ(create_index_sql(table, parse_server_info("5.5.5-10.0.38-MariaDB", false)),
            "CREATE INDEX room_id_idx ON `archive`.`m` (room, id)");
  EXPECT_EQ(create_index_sql(table, parse_server_info("8.0.36", false)),
            "CREATE INDEX room_id_idx ON `archive`.`m` (room, id)");
  const auto check = room_id_index_sql(TableName{"", "messages"});
  EXPECT_NE(check.find("TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'"), std::string::npos) << check;
  EXPECT_NE(check.find("SEQ_IN_INDEX = 1 AND COLUMN_NAME = 'room'"), std::string::npos) << check;
  EXPECT_NE(check.find("SEQ_IN_INDEX = 2 AND COLUMN_NAME = 'id'"), std::string::npos) << check;
}

TEST(SqlTest, InformationSchemaQueries) {
  EXPECT_EQ(table_engine_sql(TableName{"", "messages"}),
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'");
  EXPECT_NE(unique_id_index_sql(TableName{"arch", "m"}).find("TABLE_SCHEMA = 'arch' AND TABLE_NAME = 'm'"),
            std::string::npos);
}

}  // namespace
}  // namespace nudge::plugins::mysql
