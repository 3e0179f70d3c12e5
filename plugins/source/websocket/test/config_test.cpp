#include <gtest/gtest.h>

#include <stdexcept>
#include <tuple>

#include "config.hpp"

namespace nudge::plugins::websocket {
namespace {

TEST(WebSocketConfig, DefaultsAreThoseOfCarefulServers) {
  const auto schema = WebSocketConfig::schema();
  auto value = [&](const char* key) { return *schema.find(key)->default_value; };
  EXPECT_EQ(std::get<std::string>(value("listen")), "localhost:8080");
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

TEST(WebSocketConfig, SocketIoIsOnAtItsStandardPathWithItsStandardHeartbeat) {
  const auto schema = WebSocketConfig::schema();
  auto value = [&](const char* key) { return *schema.find(key)->default_value; };
  EXPECT_TRUE(std::get<bool>(value("socketio")));
  EXPECT_EQ(std::get<std::string>(value("socketio_path")), "/socket.io/");
  EXPECT_EQ(std::get<std::int64_t>(value("ping_interval_ms")), 25000);  // the reference server's
  EXPECT_EQ(std::get<std::int64_t>(value("ping_timeout_ms")), 20000);
  EXPECT_EQ(std::get<std::string>(value("socketio_default_room")), "general");
  EXPECT_EQ(std::get<std::int64_t>(value("history_messages")), 50);
  auto check = [&](const char* key, ConfigValue v) { return schema.find(key)->validate(v); };
  EXPECT_NE(check("socketio_path", std::string("socket.io")), "");
  EXPECT_NE(check("socketio_default_room", std::string("no spaces")), "");
  EXPECT_EQ(check("history_messages", std::int64_t{0}), "");  // none
  EXPECT_NE(check("history_messages", std::int64_t{-1}), "");

  WebSocketConfig cfg;
  cfg.path = "/ws";
  cfg.socketio_path = "/ws/";
  ASSERT_EQ(cfg.problems().size(), 1u);
  EXPECT_NE(cfg.problems()[0].find("different paths"), std::string::npos);
  cfg.socketio = false;
  EXPECT_TRUE(cfg.problems().empty());
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

std::map<std::string, ConfigValue, std::less<>> default_values() {
  std::map<std::string, ConfigValue, std::less<>> values;
  const auto schema = WebSocketConfig::schema();
  for (const auto& f : schema.fields()) values.emplace(f.key, *f.default_value);
  return values;
}

TEST(WebSocketConfig, AuthAndTlsAreOffByDefault) {
  const auto cfg = WebSocketConfig::from(Config(default_values(), {}));
  EXPECT_FALSE(cfg.auth_enabled());
  EXPECT_FALSE(cfg.tls_enabled());
  EXPECT_EQ(cfg.auth_identity_claim, "sub");
  EXPECT_EQ(cfg.auth_leeway_ms, 5000);
  EXPECT_TRUE(cfg.auth_close_on_expiry);
  EXPECT_TRUE(cfg.problems().empty());
}

TEST(WebSocketConfig, TheSecretIsEmptyOrLongEnough) {
  const auto schema = WebSocketConfig::schema();
  const auto* secret = schema.find("auth_jwt_secret");
  EXPECT_EQ(secret->validate(std::string()), "");
  EXPECT_EQ(secret->validate(std::string(32, 'k')), "");
  EXPECT_NE(secret->validate(std::string(31, 'k')).find("at least 32 bytes"), std::string::npos);
  EXPECT_NE(schema.find("auth_identity_claim")->validate(std::string()), "");
  EXPECT_NE(schema.find("auth_leeway_ms")->validate(std::int64_t{-1}), "");
  EXPECT_NE(schema.find("auth_leeway_ms")->validate(std::int64_t{300001}), "");
}

TEST(WebSocketConfig, TlsCertAndKeyGoTogether) {
  for (const auto& [cert, key, ok] : {std::tuple{"", "", true}, std::tuple{"c.pem", "k.pem", true},
                                      std::tuple{"c.pem", "", false}, std::tuple{"", "k.pem", false}}) {
    auto values = default_values();
    values["tls_cert_file"] = std::string(cert);
    values["tls_key_file"] = std::string(key);
    if (ok) {
      EXPECT_NO_THROW(WebSocketConfig::from(Config(values, {})));
      continue;
    }
    try {
      WebSocketConfig::from(Config(values, {}));
      ADD_FAILURE() << "cert '" << cert << "' and key '" << key << "' must be refused";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("set both or neither"), std::string::npos) << e.what();
    }
  }
  auto values = default_values();
  values["tls_cert_file"] = std::string("c.pem");
  values["tls_key_file"] = std::string("k.pem");
  EXPECT_TRUE(WebSocketConfig::from(Config(values, {})).tls_enabled());
}

TEST(WebSocketConfig, OneSourceForTheSecretAndEveryProblemAtOnce) {
  auto values = default_values();
  values["auth_jwt_secret"] = std::string(32, 'k');
  EXPECT_TRUE(WebSocketConfig::from(Config(values, {})).auth_enabled());
  values["auth_jwt_secret_file"] = std::string("/etc/nudge/jwt.key");
  values["tls_key_file"] = std::string("k.pem");
  try {
    WebSocketConfig::from(Config(values, {}));
    ADD_FAILURE() << "two secrets and a lone key must be refused";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tls_key_file is set but tls_cert_file is not"), std::string::npos) << what;
    EXPECT_NE(what.find("auth_jwt_secret and auth_jwt_secret_file are both set"), std::string::npos) << what;
  }
  values.erase("auth_jwt_secret");
  values["auth_jwt_secret"] = std::string();
  values["tls_key_file"] = std::string();
  const auto cfg = WebSocketConfig::from(Config(values, {}));
  EXPECT_TRUE(cfg.auth_enabled());  // from the file alone
}

}  // namespace
}  // namespace nudge::plugins::websocket
