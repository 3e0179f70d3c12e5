#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::mysql {
namespace {

using nudge::testing::config_errors;
using nudge::testing::make_config;

constexpr const char* kUrl = "mysql://nudge:nudge@127.0.0.1:3306/nudge";

std::vector<std::string> errors_for(const std::map<std::string, ConfigValue>& values) {
  return config_errors(MysqlConfig::schema(), values);
}

MysqlUrl url_of(const std::string& text) {
  std::string error;
  auto url = parse_url(text, error);
  EXPECT_TRUE(url) << text << ": " << error;
  return url.value_or(MysqlUrl{});
}

std::string url_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(parse_url(text, error)) << text;
  return error;
}

TEST(MysqlConfigTest, DefaultsApply) {
  std::string error;
  const auto config = MysqlConfig::from(make_config(MysqlConfig::schema(), {{"url", std::string(kUrl)}}, &error));
  EXPECT_EQ(error, "");
  EXPECT_EQ(config.url.user, "nudge");
  EXPECT_EQ(config.url.password, "nudge");
  EXPECT_EQ(config.url.host, "127.0.0.1");
  EXPECT_EQ(config.url.port, 3306);
  EXPECT_EQ(config.url.database, "nudge");
  EXPECT_EQ(config.table.schema, "");
  EXPECT_EQ(config.table.name, "messages");
  EXPECT_EQ(config.connect_timeout_ms, 5000);
  EXPECT_EQ(config.statement_timeout_ms, 30000);
  EXPECT_EQ(config.wait_for_database_ms, 30000);
}

TEST(MysqlConfigTest, EveryKeyIsDescribed) {
  const auto schema = MysqlConfig::schema();
  for (const auto& field : schema.fields()) EXPECT_FALSE(field.description.empty()) << field.key;
  EXPECT_TRUE(schema.find("url")->required());
  EXPECT_EQ(schema.fields().size(), 6u);
  EXPECT_TRUE(schema.find("health_check_interval_ms")->live);
}

TEST(MysqlConfigTest, UrlIsRequired) {
  const auto errors = errors_for({});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "url: missing required key");
}

TEST(MysqlUrlTest, ParsesTheParts) {
  auto u = url_of("mariadb://chat%40eu:p%40ss:w%2Frd@db.example.com:3307/chat_2024");
  EXPECT_EQ(u.user, "chat@eu");
  EXPECT_EQ(u.password, "p@ss:w/rd");
  EXPECT_EQ(u.host, "db.example.com");
  EXPECT_EQ(u.port, 3307);
  EXPECT_EQ(u.database, "chat_2024");

  u = url_of("mysql://root@localhost/nudge");  // no password, default port
  EXPECT_EQ(u.user, "root");
  EXPECT_EQ(u.password, "");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 3306);

  u = url_of("mysql://u:@[::1]:3310/d");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 3310);
  EXPECT_EQ(u.password, "");
  EXPECT_EQ(url_of("mysql://u@[fe80::1]/d").port, 3306);
  // An unencoded '@' in the password: the last '@' ends the user part.
  EXPECT_EQ(url_of("mysql://u:a@b@h/d").password, "a@b");
  EXPECT_EQ(url_of("mysql://u@h/my%20db").database, "my db");
}

TEST(MysqlUrlTest, RejectsWhatIsNotAMysqlUrl) {
  EXPECT_EQ(url_error(""), "must not be empty");
  EXPECT_NE(url_error("postgresql://u@h/db").find("must start with mysql:// or mariadb://"), std::string::npos);
  EXPECT_NE(url_error("MYSQL://u@h/db").find("must start with"), std::string::npos);
  EXPECT_NE(url_error("host=h dbname=x").find("must start with"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h").find("must name a database"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/").find("must name a database"), std::string::npos);
  EXPECT_NE(url_error("mysql://h/db").find("must name a user"), std::string::npos);
  EXPECT_NE(url_error("mysql://:pw@h/db").find("must name a user"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@/db").find("must name a host"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@:3306/db").find("must name a host"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h:0/db").find("invalid port '0'"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h:65536/db").find("invalid port"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h:33o6/db").find("invalid port"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h:/db").find("invalid port"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h h/db").find("invalid host name"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@[::1/db").find("IPv6"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@[::1]x/db").find("IPv6"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@[zz]/db").find("IPv6"), std::string::npos);
  EXPECT_NE(url_error("mysql://u%zz@h/db").find("%-escape"), std::string::npos);
  EXPECT_NE(url_error("mysql://u:p%4@h/db").find("%-escape"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/db%").find("%-escape"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/a/b").find("invalid database name"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/a.b").find("invalid database name"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/" + std::string(65, 'd')).find("invalid database name"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/db?ssl-mode=REQUIRED").find("query parameters"), std::string::npos);
  EXPECT_NE(url_error("mysql://u@h/db#x").find("query parameters"), std::string::npos);
}

TEST(MysqlUrlTest, RedactedUrlHasNoPassword) {
  EXPECT_EQ(url_of(kUrl).redacted(), "mysql://nudge@127.0.0.1:3306/nudge");
  EXPECT_EQ(url_of("mariadb://u:s%40cret@h/db").redacted(), "mysql://u@h:3306/db");
  EXPECT_EQ(url_of("mysql://u:secret@[::1]:3307/db").redacted(), "mysql://u@[::1]:3307/db");
}

TEST(MysqlConfigTest, AllErrorsAreReportedAtOnce) {
  const auto errors = errors_for({{"url", std::string("postgresql://x")},
                                  {"table", std::string("Messages")},
                                  {"connect_timeout_ms", std::int64_t{10}},
                                  {"statement_timeout_ms", std::int64_t{-1}},
                                  {"wait_for_database_ms", std::int64_t{4000000}},
                                  {"chanel", std::string("x")}});
  EXPECT_EQ(errors.size(), 6u);
}

TEST(MysqlConfigTest, TableNames) {
  std::string error;
  auto plain = parse_table_name("messages", error);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->quoted(), "`messages`");
  EXPECT_EQ(plain->schema_expression(), "DATABASE()");
  auto qualified = parse_table_name("archive.chat_2024", error);
  ASSERT_TRUE(qualified);
  EXPECT_EQ(qualified->schema, "archive");
  EXPECT_EQ(qualified->quoted(), "`archive`.`chat_2024`");
  EXPECT_EQ(qualified->display(), "archive.chat_2024");
  EXPECT_EQ(qualified->schema_expression(), "'archive'");
  // A keyword is fine: names are always quoted.
  EXPECT_TRUE(parse_table_name("order", error));
  EXPECT_TRUE(parse_table_name(std::string(64, 'a'), error));

  for (const char* bad : {"", "Messages", "1messages", "messages;drop table x", "a.b.c", ".messages", "messages.",
                          "`messages`", "mes sages", "caf\xc3\xa9", "x'y"}) {
    error.clear();
    EXPECT_FALSE(parse_table_name(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  EXPECT_FALSE(parse_table_name(std::string(65, 'a'), error));
  EXPECT_FALSE(parse_table_name(std::string(65, 's') + ".m", error));
  EXPECT_EQ(errors_for({{"url", std::string(kUrl)}, {"table", std::string("x.y.z")}}).size(), 1u);
}

TEST(MysqlConfigTest, Timeouts) {
  MysqlConfig c;
  c.connect_timeout_ms = 1000;
  EXPECT_EQ(c.connect_timeout_s(), 1u);
  c.connect_timeout_ms = 2500;
  EXPECT_EQ(c.connect_timeout_s(), 3u);
  c.statement_timeout_ms = 30000;
  EXPECT_EQ(c.io_timeout_s(), 33u);  // 32.5 s, rounded up
  c.statement_timeout_ms = 0;
  EXPECT_EQ(c.io_timeout_s(), 0u);  // no statement timeout, no read timeout
}

// The example in README.md is a valid [sink.mysql] table.
TEST(MysqlConfigTest, ReadmeExampleParses) {
  std::ifstream file(NUDGE_MYSQL_README);
  ASSERT_TRUE(file) << NUDGE_MYSQL_README;
  std::stringstream text;
  text << file.rdbuf();
  const std::string readme = text.str();
  const auto start = readme.find("```toml\n");
  ASSERT_NE(start, std::string::npos);
  const auto end = readme.find("```", start + 8);
  const auto table = toml::parse(readme.substr(start + 8, end - start - 8));
  const auto* sink = table["sink"]["mysql"].as_table();
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
  // Every key of the schema is in the README's reference table.
  const auto schema = MysqlConfig::schema();
  for (const auto& field : schema.fields())
    EXPECT_NE(readme.find("| `" + field.key + "` |"), std::string::npos) << field.key;
}

}  // namespace
}  // namespace nudge::plugins::mysql
