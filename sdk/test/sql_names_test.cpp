#include <string>

#include <gtest/gtest.h>

#include "nudge/sdk/sql_names.hpp"

namespace nudge::sql {
namespace {

const IdentifierRule kPostgres{63, true};
const IdentifierRule kAnyCase{63, false};

TEST(SqlIdentifierTest, LowerCaseRule) {
  for (const char* good : {"messages", "_x", "chat_2024", "order", "a"})
    EXPECT_TRUE(is_identifier(good, kPostgres)) << good;
  EXPECT_TRUE(is_identifier(std::string(63, 'a'), kPostgres));
  for (const char* bad : {"", "Messages", "1messages", "messages;drop table x", "a.b", "\"m\"", "`m`", "mes sages",
                          "caf\xc3\xa9", "x'y", "a-b"})
    EXPECT_FALSE(is_identifier(bad, kPostgres)) << bad;
  EXPECT_FALSE(is_identifier(std::string(64, 'a'), kPostgres));
  EXPECT_TRUE(is_identifier(std::string(64, 'a'), IdentifierRule{64, true}));
}

TEST(SqlIdentifierTest, AnyCaseRule) {
  EXPECT_TRUE(is_identifier("Chat_Messages", kAnyCase));
  EXPECT_FALSE(is_identifier("9lives", kAnyCase));
  EXPECT_FALSE(is_identifier("msgs; DROP TABLE x", kAnyCase));
  EXPECT_EQ(kAnyCase.describe(), "a SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)");
}

TEST(QualifiedNameTest, ParsesQuotesAndDisplays) {
  std::string error;
  const auto plain = parse_qualified_name("messages", kPostgres, "schema", error);
  ASSERT_TRUE(plain) << error;
  EXPECT_EQ(plain->qualifier, "");
  EXPECT_EQ(plain->quoted('"'), "\"messages\"");
  EXPECT_EQ(plain->display(), "messages");

  const auto qualified = parse_qualified_name("archive.chat_2024", kPostgres, "schema", error);
  ASSERT_TRUE(qualified) << error;
  EXPECT_EQ(qualified->qualifier, "archive");
  EXPECT_EQ(qualified->name, "chat_2024");
  EXPECT_EQ(qualified->quoted('`'), "`archive`.`chat_2024`");
  EXPECT_EQ(qualified->display(), "archive.chat_2024");
}

TEST(QualifiedNameTest, ErrorsNameThePartAndTheRule) {
  std::string error;
  EXPECT_FALSE(parse_qualified_name("Archive.m", kPostgres, "database", error));
  EXPECT_EQ(error,
            "the database 'Archive' must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 "
            "characters)");
  EXPECT_FALSE(parse_qualified_name(".messages", kPostgres, "schema", error));
  EXPECT_NE(error.find("the schema '' must be"), std::string::npos) << error;
  for (const char* bad : {"", "a.b.c", "messages.", "Messages"}) {
    error.clear();
    EXPECT_FALSE(parse_qualified_name(bad, kPostgres, "schema", error)) << bad;
    EXPECT_NE(error.find("optionally qualified with its schema (\"archive.messages\")"), std::string::npos)
        << bad << ": " << error;
  }
  EXPECT_FALSE(parse_qualified_name(std::string(64, 's') + ".m", kPostgres, "schema", error));
  EXPECT_NE(error.find("the schema '"), std::string::npos);
}

}  // namespace
}  // namespace nudge::sql
