#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::postgres {
namespace {

using nudge::testing::config_errors;
using nudge::testing::make_config;

constexpr const char* kUrl = "postgresql://nudge:nudge@127.0.0.1:5432/nudge";

std::vector<std::string> errors_for(const std::map<std::string, ConfigValue>& values) {
  return config_errors(PostgresConfig::schema(), values);
}

TEST(PostgresConfigTest, DefaultsApply) {
  std::string error;
  const auto config = PostgresConfig::from(make_config(PostgresConfig::schema(), {{"url", std::string(kUrl)}}, &error));
  EXPECT_EQ(error, "");
  EXPECT_EQ(config.url, kUrl);
  EXPECT_EQ(config.table.schema, "");
  EXPECT_EQ(config.table.name, "messages");
  EXPECT_EQ(config.connect_timeout_ms, 5000);
  EXPECT_EQ(config.statement_timeout_ms, 30000);
  EXPECT_EQ(config.wait_for_database_ms, 30000);
  EXPECT_EQ(config.application_name, "nudge");
}

TEST(PostgresConfigTest, EveryKeyIsDescribed) {
  const auto schema = PostgresConfig::schema();
  for (const auto& field : schema.fields()) EXPECT_FALSE(field.description.empty()) << field.key;
  EXPECT_TRUE(schema.find("url")->required());
}

TEST(PostgresConfigTest, UrlIsRequired) {
  const auto errors = errors_for({});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "url: missing required key");
}

TEST(PostgresConfigTest, AcceptsUrisAndKeyValueStrings) {
  for (const char* url : {kUrl, "postgres://u@db.example.com/chat", "postgresql:///nudge?host=/var/run/postgresql",
                          "postgresql://a,b:5433/x?target_session_attrs=read-write",
                          "host=127.0.0.1 dbname=nudge user=nudge", "dbname = 'my db' sslmode=require"})
    EXPECT_EQ(check_url(url), "") << url;
}

TEST(PostgresConfigTest, RejectsBadUrls) {
  EXPECT_EQ(check_url(""), "must not be empty");
  EXPECT_NE(check_url("mysql://u@h/db").find("must start with postgresql://"), std::string::npos);
  EXPECT_NE(check_url("http://h/db").find("must start with postgresql://"), std::string::npos);
  EXPECT_NE(check_url("just some words").find("is not a PostgreSQL connection string"), std::string::npos);
  EXPECT_NE(check_url("postgresql://h/db?no_such_option=1").find("is not a PostgreSQL connection string"),
            std::string::npos);
  EXPECT_NE(check_url("host=h bogus=1").find("is not a PostgreSQL connection string"), std::string::npos);
  EXPECT_NE(check_url("postgresql://h/db?connect_timeout=3").find("connect_timeout_ms"), std::string::npos);
  EXPECT_NE(check_url("host=h application_name=x").find("'application_name' key"), std::string::npos);
  EXPECT_NE(check_url("host=h client_encoding=LATIN1").find("client_encoding"), std::string::npos);
}

TEST(PostgresConfigTest, AllErrorsAreReportedAtOnce) {
  const auto errors = errors_for({{"url", std::string("mysql://x")},
                                  {"table", std::string("Messages")},
                                  {"connect_timeout_ms", std::int64_t{10}},
                                  {"statement_timeout_ms", std::int64_t{-1}},
                                  {"application_name", std::string("tab\there")},
                                  {"chanel", std::string("x")}});
  EXPECT_EQ(errors.size(), 6u);
}

TEST(PostgresConfigTest, TableNames) {
  std::string error;
  auto plain = parse_table_name("messages", error);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->quoted(), "\"messages\"");
  EXPECT_EQ(plain->index_quoted(), "\"messages_room_id_idx\"");
  auto qualified = parse_table_name("archive.chat_2024", error);
  ASSERT_TRUE(qualified);
  EXPECT_EQ(qualified->schema, "archive");
  EXPECT_EQ(qualified->quoted(), "\"archive\".\"chat_2024\"");
  EXPECT_EQ(qualified->display(), "archive.chat_2024");
  // A keyword is fine: names are always quoted.
  EXPECT_TRUE(parse_table_name("user", error));
  EXPECT_TRUE(parse_table_name(std::string(kMaxTableName, 'a'), error));

  for (const char* bad : {"", "Messages", "1messages", "messages;drop table x", "a.b.c", ".messages", "messages.",
                          "\"messages\"", "mes sages", "caf\xc3\xa9"}) {
    error.clear();
    EXPECT_FALSE(parse_table_name(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  EXPECT_FALSE(parse_table_name(std::string(kMaxTableName + 1, 'a'), error));
  EXPECT_NE(error.find("index name"), std::string::npos);
  EXPECT_FALSE(parse_table_name(std::string(64, 's') + ".m", error));
  EXPECT_EQ(errors_for({{"url", std::string(kUrl)}, {"table", std::string("x.y.z")}}).size(), 1u);
}

TEST(PostgresConfigTest, ConninfoCarriesTheSinkParameters) {
  PostgresConfig c;
  c.url = kUrl;
  c.connect_timeout_ms = 2500;
  c.application_name = "nudge eu/1";
  EXPECT_EQ(c.conninfo(),
            std::string(kUrl) + "?connect_timeout=3&application_name=nudge%20eu%2F1&client_encoding=UTF8");
  c.url = "postgresql://h/db?sslmode=disable";
  EXPECT_EQ(c.conninfo(),
            "postgresql://h/db?sslmode=disable&connect_timeout=3&application_name=nudge%20eu%2F1&client_encoding=UTF8");
  c.url = "host=h dbname=db";
  c.connect_timeout_ms = 1000;  // libpq's minimum is 2 s
  c.application_name = "it's";
  EXPECT_EQ(c.conninfo(), "host=h dbname=db connect_timeout=2 application_name='it\\'s' client_encoding=UTF8");
  // What we build, libpq parses.
  EXPECT_EQ(check_url(c.conninfo()).find("is not"), std::string::npos);
}

TEST(PostgresConfigTest, RedactedUrlHasNoPassword) {
  EXPECT_EQ(redact_url(kUrl), "postgresql://nudge@127.0.0.1:5432/nudge");
  EXPECT_EQ(redact_url("postgresql://u:s%40cret@h/db?password=other"), "postgresql://u@h/db");
  EXPECT_EQ(redact_url("host=h port=6432 user=u password=secret dbname=d"), "postgresql://u@h:6432/d");
  EXPECT_EQ(redact_url("nonsense"), "(unparseable connection string)");
}

// The example in README.md is a valid [sink.postgres] table.
TEST(PostgresConfigTest, ReadmeExampleParses) {
  std::ifstream file(NUDGE_POSTGRES_README);
  ASSERT_TRUE(file) << NUDGE_POSTGRES_README;
  std::stringstream text;
  text << file.rdbuf();
  const std::string readme = text.str();
  const auto start = readme.find("```toml\n");
  ASSERT_NE(start, std::string::npos);
  const auto end = readme.find("```", start + 8);
  const auto table = toml::parse(readme.substr(start + 8, end - start - 8));
  const auto* sink = table["sink"]["postgres"].as_table();
  ASSERT_NE(sink, nullptr);
  std::map<std::string, ConfigValue> values;
  for (const auto& [key, node] : *sink) {
    // The runtime interpolates before validation; `${VAR:-default}` takes its default here.
    if (auto s = node.value<std::string>())
      values.emplace(std::string(key.str()), std::regex_replace(*s, std::regex(R"(\$\{[A-Za-z_]+:-([^}]*)\})"), "$1"));
    else if (auto i = node.value<std::int64_t>()) values.emplace(std::string(key.str()), *i);
  }
  const auto errors = errors_for(values);
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(values.size(), sink->size());
}

}  // namespace
}  // namespace nudge::plugins::postgres
