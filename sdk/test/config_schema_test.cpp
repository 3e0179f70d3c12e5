#include <gtest/gtest.h>

#include "nudge/sdk/config.hpp"

namespace nudge {
namespace {

TEST(ConfigSchema, FieldsKeepDeclarationOrderTypesAndDefaults) {
  ConfigSchema s;
  s.integer("batch_size", 500, "rows per batch").range(1, 10000);
  s.required("path", ConfigType::string, "database file");
  s.string_list("origins", {"a"}, "allowed origins");
  ASSERT_EQ(s.fields().size(), 3u);
  EXPECT_EQ(s.fields()[0].key, "batch_size");
  EXPECT_FALSE(s.fields()[0].required());
  EXPECT_TRUE(s.find("path")->required());
  EXPECT_EQ(s.find("nope"), nullptr);
  EXPECT_THROW(s.boolean("path", true, "twice"), std::logic_error);
}

TEST(ConfigField, ValidateReportsWhatWasExpected) {
  ConfigSchema s;
  auto& batch = s.integer("batch_size", 500, "").range(1, 10000);
  EXPECT_EQ(batch.validate(std::int64_t{5}), "");
  EXPECT_EQ(batch.validate(std::int64_t{0}), "must be in [1, 10000], got 0");
  auto& mode = s.string("mode", "wal", "").one_of({"wal", "delete"});
  EXPECT_EQ(mode.validate(std::string("truncate")), R"(must be one of "wal", "delete", got "truncate")");
  auto& listen = s.string("listen", "127.0.0.1:1", "").with_check([](const ConfigValue& v) {
    std::string host;
    std::uint16_t port = 0;
    return parse_host_port(std::get<std::string>(v), host, port) ? "" : "must be host:port";
  });
  EXPECT_EQ(listen.validate(std::string("nope")), "must be host:port");
}

TEST(Config, TypedGettersAndProgrammingErrors) {
  Config c({{"n", std::int64_t{3}}, {"s", std::string("x")}, {"f", 1.5}}, {"n"});
  EXPECT_EQ(c.get_int("n"), 3);
  EXPECT_EQ(c.get_number("n"), 3.0);
  EXPECT_EQ(c.get_string("s"), "x");
  EXPECT_EQ(c.get_number("f"), 1.5);
  EXPECT_TRUE(c.is_set("n"));
  EXPECT_FALSE(c.is_set("s"));
  EXPECT_THROW(c.get_string("n"), std::logic_error);
  EXPECT_THROW(c.get_int("missing"), std::logic_error);
}

TEST(ParseHostPort, AcceptsHostsAndRejectsGarbage) {
  std::string host;
  std::uint16_t port = 0;
  EXPECT_TRUE(parse_host_port("127.0.0.1:8080", host, port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  EXPECT_TRUE(parse_host_port("[::1]:0", host, port));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(parse_host_port("127.0.0.1", host, port));
  EXPECT_FALSE(parse_host_port("h:70000", host, port));
  EXPECT_FALSE(parse_host_port(":80", host, port));
  EXPECT_FALSE(parse_host_port("a:b:1", host, port));
}

}  // namespace
}  // namespace nudge
