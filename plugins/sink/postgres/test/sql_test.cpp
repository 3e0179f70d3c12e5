#include <optional>
#include <random>

#include <gtest/gtest.h>

#include "sql.hpp"

namespace nudge::plugins::postgres {
namespace {

/// An independent reader of one-dimensional PostgreSQL array literals, written
/// from the manual's rules ("8.15.6. Array Input and Output Syntax"): elements
/// between braces, separated by commas; a double-quoted element keeps
/// everything, with backslash escaping the next character; an unquoted
/// element is trimmed, and the bare word NULL (any case) is a null.
std::optional<std::vector<std::optional<std::string>>> parse_array(std::string_view text) {
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return std::nullopt;
  std::vector<std::optional<std::string>> out;
  std::size_t i = 1;
  const std::size_t end = text.size() - 1;
  if (i == end) return out;
  while (true) {
    while (i < end && text[i] == ' ') ++i;
    std::string item;
    bool quoted = false;
    if (i < end && text[i] == '"') {
      quoted = true;
      ++i;
      while (true) {
        if (i >= end) return std::nullopt;
        if (text[i] == '\\') {
          if (i + 1 >= end) return std::nullopt;
          item += text[i + 1];
          i += 2;
        } else if (text[i] == '"') {
          ++i;
          break;
        } else {
          item += text[i++];
        }
      }
      while (i < end && text[i] == ' ') ++i;
    } else {
      while (i < end && text[i] != ',') {
        if (text[i] == '"' || text[i] == '{' || text[i] == '}' || text[i] == '\\') return std::nullopt;
        item += text[i++];
      }
      while (!item.empty() && item.back() == ' ') item.pop_back();
    }
    if (!quoted && (item == "NULL" || item == "null")) out.emplace_back(std::nullopt);
    else out.emplace_back(item);
    if (i == end) return out;
    if (text[i] != ',') return std::nullopt;
    ++i;
  }
}

TEST(ArrayLiteralTest, QuotesAndEscapes) {
  EXPECT_EQ(text_array_literal({}), "{}");
  EXPECT_EQ(text_array_literal({""}), "{\"\"}");
  EXPECT_EQ(text_array_literal({"a", "b c"}), "{\"a\",\"b c\"}");
  EXPECT_EQ(text_array_literal({"say \"hi\""}), "{\"say \\\"hi\\\"\"}");
  EXPECT_EQ(text_array_literal({"C:\\dir\\"}), "{\"C:\\\\dir\\\\\"}");
  EXPECT_EQ(text_array_literal({"{a,b}"}), "{\"{a,b}\"}");
  // Quoted, so the word NULL stays a string.
  EXPECT_EQ(text_array_literal({"NULL"}), "{\"NULL\"}");
}

TEST(ArrayLiteralTest, RoundTripsTrickyStrings) {
  const std::vector<std::string> items = {"",
                                          "NULL",
                                          "null",
                                          " padded ",
                                          "'); DROP TABLE x; --",
                                          "\"",
                                          "\\",
                                          "\\\"",
                                          "a,b",
                                          "{",
                                          "}",
                                          "{}",
                                          "{\"a\"}",
                                          "\\x00",
                                          "tab\there",
                                          "line\nbreak",
                                          "caf\xc3\xa9 \xf0\x9f\x98\x80",
                                          ",",
                                          "\"\"",
                                          "\\\\",
                                          "$1",
                                          "E'\\n'"};
  const auto parsed = parse_array(text_array_literal(items));
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->size(), items.size());
  for (std::size_t n = 0; n < items.size(); ++n) {
    ASSERT_TRUE((*parsed)[n].has_value()) << items[n];
    EXPECT_EQ(*(*parsed)[n], items[n]);
  }
}

TEST(ArrayLiteralTest, RoundTripsEveryNonNulByteAndRandomStrings) {
  std::string all;
  for (int b = 1; b < 256; ++b) all += static_cast<char>(b);
  std::vector<std::string> items = {all};
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(1, 255), length(0, 40);
  for (int n = 0; n < 2000; ++n) {
    std::string s(static_cast<std::size_t>(length(rng)), ' ');
    for (auto& c : s) c = static_cast<char>(byte(rng));
    items.push_back(s);
  }
  const auto parsed = parse_array(text_array_literal(items));
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->size(), items.size());
  for (std::size_t n = 0; n < items.size(); ++n) EXPECT_EQ((*parsed)[n].value_or("<null>"), items[n]) << n;
}

TEST(HexTest, AllByteValues) {
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes += static_cast<char>(b);
  std::string hex;
  append_hex(hex, bytes);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(0x7f * 2, 4), "7f80");
  EXPECT_EQ(hex.substr(496), "f8f9fafbfcfdfeff");
  for (int b = 0; b < 256; ++b) EXPECT_EQ(std::stoi(hex.substr(static_cast<std::size_t>(b) * 2, 2), nullptr, 16), b);
  std::string empty;
  append_hex(empty, "");
  EXPECT_EQ(empty, "");
}

// The UTF-8 repair itself is nudge::repair_utf8's (sdk/test/text_test.cpp);
// here what a text column adds to it.
TEST(Utf8RepairTest, NulAndBadBytesBecomeReplacementCharacters) {
  const std::string fffd = "\xef\xbf\xbd";
  std::string out;
  EXPECT_TRUE(repair_text(std::string_view("a\0b", 3), out));
  EXPECT_EQ(out, "a" + fffd + "b");  // NUL, which text cannot hold
  EXPECT_TRUE(repair_text(std::string_view("\xe2\x82\0\xff", 4), out));
  EXPECT_EQ(out, fffd + fffd + fffd);  // truncated sequence, NUL, never-valid byte
  EXPECT_FALSE(repair_text("caf\xc3\xa9", out));
  EXPECT_EQ(out, "caf\xc3\xa9");
}

MessagePtr message(std::string room, std::string sender, std::string payload, std::int64_t ms,
                   LogPosition position = {}) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = std::move(room);
  m->sender = std::move(sender);
  m->payload = std::move(payload);
  m->timestamp_ms = ms;
  m->origin = "node-1";
  m->log_position = position;
  return m;
}

TEST(EncodeBatchTest, BuildsOneArrayPerColumn) {
  Batch batch = {message("lobby", "ann", "hi", 1700000000123, {2, 41}),
                 message("a\"b", "c\\d", std::string("\0\xff", 2), -5)};
  const auto e = encode_batch(batch);
  EXPECT_EQ(e.ids, "{" + batch[0]->id.to_string() + "," + batch[1]->id.to_string() + "}");
  EXPECT_EQ(e.rooms, "{\"lobby\",\"a\\\"b\"}");
  EXPECT_EQ(e.senders, "{\"ann\",\"c\\\\d\"}");
  EXPECT_EQ(e.payloads, "{\"6869\",\"00ff\"}");
  EXPECT_EQ(e.timestamps, "{1700000000123,-5}");
  EXPECT_EQ(e.origins, "{\"node-1\",\"node-1\"}");
  EXPECT_EQ(e.partitions, "{2,NULL}");
  EXPECT_EQ(e.offsets, "{41,NULL}");
  EXPECT_EQ(e.repaired_texts, 0u);
}

TEST(EncodeBatchTest, EmptyPayloadAndRepairedText) {
  Batch batch = {message("r\xff", "s", "", 0)};
  const auto e = encode_batch(batch);
  EXPECT_EQ(e.payloads, "{\"\"}");
  EXPECT_EQ(e.rooms, "{\"r\xef\xbf\xbd\"}");
  EXPECT_EQ(e.repaired_texts, 1u);
  EXPECT_EQ(encode_batch({}).ids, "{}");
}

TEST(EncodeBatchTest, LargePayloadsAreSplitAcrossStatements) {
  Batch batch;
  for (int i = 0; i < 10; ++i) batch.push_back(message("r", "s", std::string(300, 'x'), 1));
  // 1000 bytes a statement: three messages (900), then three, three, one.
  std::vector<std::size_t> sizes;
  for (auto first = batch.cbegin(); first != batch.cend();) {
    const auto last = statement_end(first, batch.cend(), 1000);
    sizes.push_back(static_cast<std::size_t>(last - first));
    first = last;
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3, 3, 3, 1}));
  // A message larger than the budget still goes, alone.
  Batch big = {message("r", "s", std::string(5000, 'x'), 1), message("r", "s", "y", 1)};
  EXPECT_EQ(statement_end(big.cbegin(), big.cend(), 1000) - big.cbegin(), 1);
  EXPECT_EQ(statement_end(batch.cbegin(), batch.cend()), batch.cend());
  const auto part = encode_batch(batch.cbegin() + 1, batch.cbegin() + 3);
  EXPECT_EQ(part.ids, "{" + batch[1]->id.to_string() + "," + batch[2]->id.to_string() + "}");
}

TEST(SqlTextTest, NamesAreQuotedAndParametersBound) {
  std::string error;
  const auto table = *parse_table_name("archive.order", error);
  const auto insert = insert_sql(table);
  EXPECT_NE(insert.find("INSERT INTO \"archive\".\"order\""), std::string::npos);
  EXPECT_NE(insert.find("ON CONFLICT (id) DO NOTHING"), std::string::npos);
  EXPECT_NE(insert.find("$8::bigint[]"), std::string::npos);
  const auto create = create_table_sql(table);
  EXPECT_NE(create.find("CREATE TABLE IF NOT EXISTS \"archive\".\"order\" (id uuid PRIMARY KEY, "), std::string::npos);
  EXPECT_NE(create.find("stored_at timestamptz NOT NULL DEFAULT now()"), std::string::npos);
  EXPECT_NE(create.find("CREATE INDEX IF NOT EXISTS \"order_room_id_idx\" ON \"archive\".\"order\" (room, id)"),
            std::string::npos);
  EXPECT_EQ(create.find("created_at)"), std::string::npos);  // the (room, created_at) index is no longer made
  const auto latest = history_sql(table, false);
  EXPECT_NE(latest.find("FROM \"archive\".\"order\" AS m WHERE m.room = $1 ORDER BY m.id DESC LIMIT $2"),
            std::string::npos)
      << latest;
  const auto after = history_sql(table, true);
  EXPECT_NE(after.find("WHERE m.room = $1 AND m.id > $3::uuid ORDER BY m.id ASC LIMIT $2"), std::string::npos) << after;
  EXPECT_EQ(after.find("'"), std::string::npos);  // nothing but bound parameters
  for (const auto& c : columns()) {
    if (!c.added_later) continue;
    EXPECT_TRUE(std::string(c.definition).find("NOT NULL") == std::string::npos ||
                std::string(c.definition).find("DEFAULT") != std::string::npos)
        << c.name << ": a column added to an existing table must be nullable or have a default";
  }
}

}  // namespace
}  // namespace nudge::plugins::postgres
