#include <gtest/gtest.h>

#include "config.hpp"
#include "static_files.hpp"

namespace nudge::plugins::websocket {
namespace {

TEST(WebSocketConfig, DefaultsAreThoseOfCarefulServers) {
  const auto schema = WebSocketConfig::schema();
  auto value = [&](const char* key) { return *schema.find(key)->default_value; };
  EXPECT_EQ(std::get<std::string>(value("listen")), "127.0.0.1:8080");
  EXPECT_EQ(std::get<std::int64_t>(value("max_message_bytes")), 64 * 1024);
  EXPECT_EQ(std::get<std::int64_t>(value("handshake_timeout_ms")), 10000);
  EXPECT_EQ(std::get<std::int64_t>(value("idle_timeout_ms")), 60000);
  EXPECT_EQ(std::get<std::string>(value("path")), "/ws");
  EXPECT_TRUE(std::get<std::vector<std::string>>(value("allowed_origins")).empty());
  EXPECT_EQ(std::get<double>(value("rate_limit_per_second")), 50.0);
  EXPECT_EQ(std::get<std::int64_t>(value("rate_limit_burst")), 100);
  EXPECT_EQ(std::get<std::int64_t>(value("rate_limit_strikes")), 20);
  EXPECT_EQ(std::get<std::int64_t>(value("max_connections_per_address")), 100);
}

TEST(WebSocketConfig, RateAndAddressLimitsHaveRanges) {
  const auto schema = WebSocketConfig::schema();
  auto check = [&](const char* key, ConfigValue v) { return schema.find(key)->validate(v); };
  EXPECT_EQ(check("rate_limit_per_second", 0.0), "");  // 0 disables
  EXPECT_EQ(check("rate_limit_per_second", 2.5), "");
  EXPECT_NE(check("rate_limit_per_second", -1.0), "");
  EXPECT_EQ(check("rate_limit_burst", std::int64_t{1}), "");
  EXPECT_NE(check("rate_limit_burst", std::int64_t{0}), "");
  EXPECT_NE(check("rate_limit_strikes", std::int64_t{0}), "");
  EXPECT_EQ(check("max_connections_per_address", std::int64_t{0}), "");  // 0 disables
  EXPECT_NE(check("max_connections_per_address", std::int64_t{-1}), "");
}

TEST(WebSocketConfig, FromConfigReadsTheLimits) {
  std::map<std::string, ConfigValue, std::less<>> values;
  const auto schema = WebSocketConfig::schema();
  for (const auto& f : schema.fields()) values.emplace(f.key, *f.default_value);
  values["rate_limit_per_second"] = 5.0;
  values["rate_limit_burst"] = std::int64_t{7};
  values["rate_limit_strikes"] = std::int64_t{3};
  values["max_connections_per_address"] = std::int64_t{0};
  const auto cfg = WebSocketConfig::from(Config(values, {}));
  EXPECT_EQ(cfg.rate_limit_per_second, 5.0);
  EXPECT_EQ(cfg.rate_limit_burst, 7);
  EXPECT_EQ(cfg.rate_limit_strikes, 3);
  EXPECT_EQ(cfg.max_connections_per_address, 0);
}

TEST(WebSocketConfig, ChecksSayWhatWasExpected) {
  const auto schema = WebSocketConfig::schema();
  EXPECT_EQ(schema.find("listen")->validate(std::string("8080")), "must be host:port, e.g. \"127.0.0.1:8080\"");
  EXPECT_EQ(schema.find("listen")->validate(std::string("0.0.0.0:0")), "");
  EXPECT_EQ(schema.find("path")->validate(std::string("ws")), "must start with '/'");
  EXPECT_NE(schema.find("max_message_bytes")->validate(std::int64_t{10}), "");
}

TEST(WebSocketConfig, FromConfigSplitsTheListenAddress) {
  std::map<std::string, ConfigValue, std::less<>> values;
  const auto schema = WebSocketConfig::schema();
  for (const auto& f : schema.fields()) values.emplace(f.key, *f.default_value);
  values["listen"] = std::string("0.0.0.0:9000");
  const auto cfg = WebSocketConfig::from(Config(values, {"listen"}));
  EXPECT_EQ(cfg.host, "0.0.0.0");
  EXPECT_EQ(cfg.port, 9000);
}

TEST(StaticFiles, ServesFilesUnderTheRootAndNothingElse) {
  const std::filesystem::path root = NUDGE_WEB_DIR;
  EXPECT_EQ(resolve_static_path(root, "/"), root / "index.html");
  EXPECT_EQ(resolve_static_path(root, "/app.js?v=1"), root / "app.js");
  EXPECT_FALSE(resolve_static_path(root, "/../chat-embedded.toml"));
  EXPECT_FALSE(resolve_static_path(root, "/%2e%2e/chat-embedded.toml"));
  EXPECT_FALSE(resolve_static_path(root, "/.hidden"));
  EXPECT_FALSE(resolve_static_path(root, "/missing.html"));
  EXPECT_FALSE(resolve_static_path(root, "relative"));
  EXPECT_FALSE(resolve_static_path("", "/"));
  EXPECT_EQ(content_type_for("a.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(content_type_for("index.html"), "text/html; charset=utf-8");
}

}  // namespace
}  // namespace nudge::plugins::websocket
