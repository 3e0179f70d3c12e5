// Deployment files (`nudge deploy`): validation and the nginx.conf made from them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/deploy/deploy.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::filesystem::path kDeployDir = std::filesystem::path(NUDGE_SOURCE_DIR) / "deploy";

constexpr const char* kGood = R"([deployment]
name = "chat"
listen = "127.0.0.1:8000"
state_dir = "var/deploy/chat"

[shared]
REDIS_URL = "redis://127.0.0.1:6379"
KAFKA_BROKERS = "127.0.0.1:9092"

[[instance]]
name = "chat-1"
pipeline = "../pipelines/chat.toml"
listen = "127.0.0.1:8101"
admin = "127.0.0.1:9101"

[[instance]]
name = "chat-2"
pipeline = "../pipelines/chat.toml"
listen = "127.0.0.1:8102"
admin = "127.0.0.1:9102"
env = { NUDGE_TABLE = "messages_2" }
)";

class DeployConfigTest : public ::testing::Test {
 protected:
  Diagnostics diags_;

  std::optional<Deployment> load(std::string_view text) {
    diags_ = {};
    return load_deployment_text(text, "chat.toml", kDeployDir, diags_);
  }

  /// The diagnostic naming `key_path`, or a failure listing them all.
  const Diagnostic* find(const std::string& key_path) const {
    for (const auto& d : diags_.items())
      if (d.key_path == key_path) return &d;
    ADD_FAILURE() << "no diagnostic for '" << key_path << "'; got:\n" << diags_.to_string();
    return nullptr;
  }
};

TEST_F(DeployConfigTest, GoodFileParses) {
  auto d = load(kGood);
  ASSERT_TRUE(d) << diags_.to_string();
  EXPECT_EQ(d->name, "chat");
  EXPECT_EQ(d->listen, (HostPort{"127.0.0.1", 8000}));
  EXPECT_EQ(d->state_dir, kDeployDir / "var/deploy/chat");
  EXPECT_EQ(d->public_url(), "http://127.0.0.1:8000/");
  EXPECT_EQ(d->ready_timeout_s, 60);
  ASSERT_EQ(d->shared.size(), 2u);
  EXPECT_EQ(d->shared[0].first, "REDIS_URL");  // the file's order, not sorted
  EXPECT_EQ(d->shared[1].first, "KAFKA_BROKERS");
  ASSERT_EQ(d->instances.size(), 2u);
  EXPECT_EQ(d->instances[0].name, "chat-1");
  EXPECT_EQ(d->instances[0].pipeline, (kDeployDir / "../pipelines/chat.toml").lexically_normal());
  EXPECT_EQ(d->instances[0].listen.to_string(), "127.0.0.1:8101");
  EXPECT_EQ(d->instances[1].admin.to_string(), "127.0.0.1:9102");
  ASSERT_EQ(d->instances[1].env.size(), 1u);
  EXPECT_EQ(d->instances[1].env[0], (std::pair<std::string, std::string>{"NUDGE_TABLE", "messages_2"}));
}

TEST_F(DeployConfigTest, ReportsEveryProblemAtOnceWithLineAndKey) {
  // An unknown key, a port used twice, an instance without a pipeline, a duplicate name.
  auto d = load(R"([deployment]
name = "chat"
listen = "127.0.0.1:8000"
colour = "blue"

[[instance]]
name = "chat-1"
pipeline = "../pipelines/chat.toml"
listen = "127.0.0.1:8101"
admin = "127.0.0.1:9101"

[[instance]]
name = "chat-2"
listen = "127.0.0.1:8101"
admin = "127.0.0.1:9102"

[[instance]]
name = "chat-1"
pipeline = "../pipelines/chat.toml"
listen = "127.0.0.1:8103"
admin = "127.0.0.1:9103"
)");
  EXPECT_FALSE(d);
  EXPECT_EQ(diags_.items().size(), 4u) << diags_.to_string();

  const auto* unknown = find("deployment");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->line, 4);
  EXPECT_THAT(unknown->to_string(), HasSubstr("chat.toml:4:1: deployment: unknown key 'colour'"));

  const auto* port = find("instance.chat-2.listen");
  ASSERT_TRUE(port);
  EXPECT_EQ(port->line, 14);
  EXPECT_THAT(port->message, HasSubstr("port 8101 is already used by instance.chat-1.listen (chat.toml:9)"));

  const auto* missing = find("instance.chat-2.pipeline");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->line, 12);  // the [[instance]] header
  EXPECT_THAT(missing->to_string(), HasSubstr("chat.toml:12:1: instance.chat-2.pipeline: missing required key"));

  const auto* duplicate = find("instance.chat-1.name");
  ASSERT_TRUE(duplicate);
  EXPECT_EQ(duplicate->line, 18);
  EXPECT_THAT(duplicate->message, HasSubstr("duplicate instance name 'chat-1' (first at chat.toml:7)"));
}

TEST_F(DeployConfigTest, UnknownKeySuggestsTheClosest) {
  load(R"([deployment]
name = "chat"
listen = "127.0.0.1:8000"
[[instance]]
name = "chat-1"
pipline = "../pipelines/chat.toml"
listen = "127.0.0.1:8101"
admin = "127.0.0.1:9101"
)");
  const auto* typo = find("instance.chat-1");
  ASSERT_TRUE(typo);
  EXPECT_EQ(typo->line, 6);
  EXPECT_THAT(typo->message, HasSubstr("unknown key 'pipline' (did you mean 'pipeline'?)"));
  EXPECT_TRUE(find("instance.chat-1.pipeline"));  // and so the real key is missing
}

TEST_F(DeployConfigTest, BadValuesAreNamedWithWhatWasExpected) {
  load(R"([deployment]
name = "chat"
listen = "8000"
ready_timeout_s = 0
[shared]
1BAD = "x"
[[instance]]
name = "chat 1"
pipeline = "no-such-pipeline.toml"
listen = "127.0.0.1:70000"
admin = 9101
[cluster]
)");
  const auto* listen = find("deployment.listen");
  ASSERT_TRUE(listen);
  EXPECT_THAT(listen->message, HasSubstr("expected \"host:port\""));
  EXPECT_THAT(find("deployment.ready_timeout_s")->message, HasSubstr("must be in [1, 3600], got 0"));
  EXPECT_THAT(find("shared.1BAD")->message, HasSubstr("environment variable name"));
  EXPECT_THAT(find("instance[1].name")->message, HasSubstr("letters, digits"));
  EXPECT_THAT(find("instance[1].pipeline")->message, HasSubstr("no such pipeline file"));
  EXPECT_THAT(find("instance[1].listen")->message, HasSubstr("port in [1, 65535]"));
  EXPECT_THAT(find("instance[1].admin")->message, HasSubstr("expected a string"));
  EXPECT_THAT(find("cluster")->message, HasSubstr("unknown table 'cluster'"));
}

TEST_F(DeployConfigTest, NeedsDeploymentAndInstances) {
  load("[shared]\nA = \"b\"\n");
  EXPECT_TRUE(find("deployment"));
  EXPECT_TRUE(find("instance"));
}

TEST_F(DeployConfigTest, InvalidTomlIsOneDiagnostic) {
  EXPECT_FALSE(load("[deployment\nname = 1\n"));
  ASSERT_EQ(diags_.items().size(), 1u);
  EXPECT_THAT(diags_.items()[0].message, HasSubstr("invalid TOML"));
}

TEST_F(DeployConfigTest, ShippedDeploymentIsValid) {
  Diagnostics diags;
  auto d = load_deployment(kDeployDir / "chat.toml", diags);
  ASSERT_TRUE(d) << diags.to_string();
  EXPECT_EQ(d->instances.size(), 3u);
  for (const auto& [variable, value] : d->shared) {
    if (variable == "REDIS_URL" || variable == "KAFKA_BROKERS" || variable == "DATABASE_URL") {
      EXPECT_FALSE(server_addresses(value).empty()) << variable;
    }
  }
}

TEST(DeployNginx, ConfigHasTheUpstreamsAndWebSocketHeaders) {
  Diagnostics diags;
  auto d = load_deployment_text(kGood, "chat.toml", kDeployDir, diags);
  ASSERT_TRUE(d) << diags.to_string();
  const std::string conf = nginx_config(*d, false);
  EXPECT_THAT(conf, HasSubstr("upstream nudge_chat {\n    least_conn;"));
  EXPECT_THAT(conf, HasSubstr("upstream nudge_chat_sticky {\n    ip_hash;"));
  EXPECT_THAT(conf, HasSubstr("server 127.0.0.1:8101 max_fails=1 fail_timeout=2s;  # chat-1"));
  EXPECT_THAT(conf, HasSubstr("server 127.0.0.1:8102 max_fails=1 fail_timeout=2s;  # chat-2"));
  EXPECT_THAT(conf, HasSubstr("listen 127.0.0.1:8000;"));
  EXPECT_THAT(conf, HasSubstr("proxy_http_version 1.1;"));
  EXPECT_THAT(conf, HasSubstr("proxy_set_header Upgrade $http_upgrade;"));
  EXPECT_THAT(conf, HasSubstr("proxy_set_header Connection $connection_upgrade;"));
  EXPECT_THAT(conf, HasSubstr("proxy_read_timeout 1h;"));
  EXPECT_THAT(conf, HasSubstr("location /socket.io/ {\n      proxy_pass http://nudge_chat_sticky;"));
  EXPECT_THAT(conf, HasSubstr("location / {\n      proxy_pass http://nudge_chat;"));
  // Everything nginx writes stays in the state folder.
  const std::string state = (kDeployDir / "var/deploy/chat/nginx").string();
  for (const char* key : {"error_log ", "pid ", "access_log ", "client_body_temp_path ", "proxy_temp_path ",
                          "fastcgi_temp_path ", "uwsgi_temp_path ", "scgi_temp_path "})
    EXPECT_THAT(conf, HasSubstr(key + state)) << key;
  EXPECT_THAT(conf, Not(HasSubstr("user ")));
  EXPECT_THAT(nginx_config(*d, true), HasSubstr("user nobody nogroup;"));
}

TEST(DeployAddresses, SharedValuesNameTheirServers) {
  EXPECT_EQ(server_addresses("redis://127.0.0.1:6379"), (std::vector<HostPort>{{"127.0.0.1", 6379}}));
  EXPECT_EQ(server_addresses("postgresql://nudge:secret@db.local:5433/nudge?sslmode=disable"),
            (std::vector<HostPort>{{"db.local", 5433}}));
  EXPECT_EQ(server_addresses("postgresql://nudge@db/nudge"), (std::vector<HostPort>{{"db", 5432}}));
  EXPECT_EQ(server_addresses("k1:9092,k2:9093"), (std::vector<HostPort>{{"k1", 9092}, {"k2", 9093}}));
  EXPECT_EQ(server_addresses("nats://[::1]:4222"), (std::vector<HostPort>{{"::1", 4222}}));
  EXPECT_TRUE(server_addresses("e2e.chat.123").empty());
  EXPECT_TRUE(server_addresses("e2e:123:recent:").empty());
  EXPECT_TRUE(server_addresses("messages").empty());
}

TEST(DeployAddresses, HostPort) {
  EXPECT_EQ(parse_host_port("127.0.0.1:8000"), (HostPort{"127.0.0.1", 8000}));
  EXPECT_EQ(parse_host_port("[::1]:8000")->to_string(), "[::1]:8000");
  EXPECT_FALSE(parse_host_port("8000"));
  EXPECT_FALSE(parse_host_port("host:0"));
  EXPECT_FALSE(parse_host_port("host:65536"));
  EXPECT_FALSE(parse_host_port("::1:80"));
}

}  // namespace
}  // namespace nudge::runtime
