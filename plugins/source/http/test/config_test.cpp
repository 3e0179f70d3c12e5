#include <gtest/gtest.h>

#include <stdexcept>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::http {
namespace {

const std::string kKey = "0123456789abcdef0123";

TEST(HttpConfig, DefaultsBoundEverythingAClientCanMakeTheServerHold) {
  const auto schema = HttpConfig::schema();
  auto value = [&](const char* key) { return *schema.find(key)->default_value; };
  EXPECT_EQ(std::get<std::string>(value("listen")), "localhost:8090");
  EXPECT_EQ(std::get<std::int64_t>(value("max_body_bytes")), 64 * 1024);
  EXPECT_EQ(std::get<std::int64_t>(value("max_header_bytes")), 8 * 1024);
  EXPECT_EQ(std::get<std::int64_t>(value("max_batch_messages")), 100);
  EXPECT_EQ(std::get<std::int64_t>(value("max_connections")), 1024);
  EXPECT_EQ(std::get<std::int64_t>(value("max_connections_per_address")), 64);
  EXPECT_EQ(std::get<std::int64_t>(value("max_requests_in_flight")), 1024);
  EXPECT_EQ(std::get<std::int64_t>(value("header_timeout_ms")), 10000);
  EXPECT_EQ(std::get<std::int64_t>(value("idempotency_max_entries")), 100000);
  EXPECT_FALSE(std::get<bool>(value("allow_anonymous")));
}

TEST(HttpConfig, WithoutAKeyOrAnonymousAccessItRefusesToStartAndSaysWhy) {
  try {
    HttpConfig::from(testing::make_config(HttpConfig::schema()));
    FAIL() << "an open publish API was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no authentication"), std::string::npos) << e.what();
  }
  // An unset variable leaves an empty entry: still no key.
  EXPECT_THROW(
      HttpConfig::from(testing::make_config(HttpConfig::schema(), {{"api_keys", std::vector<std::string>{""}}})),
      std::invalid_argument);
  EXPECT_NO_THROW(HttpConfig::from(
      testing::make_config(HttpConfig::schema(), {{"jwt_secret", std::string("0123456789abcdef0123456789abcdef")}})))
      << "tokens alone are authentication";
  EXPECT_NE(HttpConfig::schema().find("jwt_secret")->validate(std::string("too short")), "");
  const auto anonymous = HttpConfig::from(testing::make_config(HttpConfig::schema(), {{"allow_anonymous", true}}));
  EXPECT_TRUE(anonymous.allow_anonymous);
  const auto keyed =
      HttpConfig::from(testing::make_config(HttpConfig::schema(), {{"api_keys", std::vector<std::string>{"", kKey}}}));
  EXPECT_EQ(keyed.api_keys, std::vector<std::string>{kKey});
}

TEST(HttpConfig, AnEmptyListenTurnsTheSourceOffWithoutNeedingAKey) {
  const auto off = HttpConfig::from(testing::make_config(HttpConfig::schema(), {{"listen", std::string()}}));
  EXPECT_FALSE(off.enabled);
  const auto on = HttpConfig::from(
      testing::make_config(HttpConfig::schema(), {{"listen", std::string("127.0.0.1:0")}, {"allow_anonymous", true}}));
  EXPECT_TRUE(on.enabled);
  EXPECT_EQ(on.host, "127.0.0.1");
}

TEST(HttpConfig, ShortKeysBadAddressesAndOutOfRangeBoundsAreRefused) {
  const auto schema = HttpConfig::schema();
  auto check = [&](const char* key, ConfigValue v) { return schema.find(key)->validate(v); };
  EXPECT_NE(check("api_keys", std::vector<std::string>{"short"}), "");
  EXPECT_EQ(check("api_keys", std::vector<std::string>{kKey}), "");
  EXPECT_NE(check("listen", std::string("nope")), "");
  EXPECT_EQ(check("listen", std::string("0.0.0.0:8090")), "");
  EXPECT_NE(check("max_batch_messages", std::int64_t{0}), "");
  EXPECT_NE(check("max_body_bytes", std::int64_t{17 * 1024 * 1024}), "");
  EXPECT_NE(check("default_sender", std::string()), "");
  EXPECT_EQ(check("max_connections_per_address", std::int64_t{0}), "");  // 0 disables
}

}  // namespace
}  // namespace nudge::plugins::http
