#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

#include <unistd.h>

#include "engine/pipeline_config.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;

class PipelineConfigTest : public ::testing::Test {
 protected:
  PluginRegistry registry_{{NUDGE_TEST_PLUGIN_DIR, NUDGE_BUILD_PLUGIN_DIR}};
  std::map<std::string, std::string, std::less<>> env_;
  std::vector<std::string> overrides_;
  Diagnostics diags_;

  std::optional<PipelineSpec> load(std::string_view text) {
    diags_ = {};
    LoadOptions options;
    options.overrides = overrides_;
    options.lookup = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
    return load_pipeline_text(text, "test.toml", "/pipelines", registry_, options, diags_);
  }

  /// The single diagnostic expected, as text.
  std::string only_error() {
    EXPECT_EQ(diags_.items().size(), 1u) << diags_.to_string();
    return diags_.items().empty() ? "" : diags_.items().front().to_string();
  }
};

constexpr const char* kValid = R"(
[pipeline]
name = "t"
max_in_flight = 64

[source.websocket]
listen = "127.0.0.1:0"

[sink.testsink]
path = "/tmp/x"
batch_size = 7
ratio = 2
tags = ["a", "b"]
)";

TEST_F(PipelineConfigTest, AValidPipelineGetsTypedValuesAndDefaults) {
  auto spec = load(kValid);
  ASSERT_TRUE(spec) << diags_.to_string();
  EXPECT_EQ(spec->settings.name, "t");
  EXPECT_EQ(spec->settings.max_in_flight, 64);
  EXPECT_EQ(spec->settings.max_in_flight_bytes, 64 * 1024 * 1024);  // 64 KiB messages: about 1000 in flight
  EXPECT_EQ(spec->settings.shutdown_grace_ms, 10000);
  EXPECT_FALSE(spec->settings.instance_id.empty());
  const Config& c = spec->sink->config;
  EXPECT_EQ(c.get_string("path"), "/tmp/x");
  EXPECT_EQ(c.get_int("batch_size"), 7);
  EXPECT_EQ(c.get_number("ratio"), 2.0);  // an integer where a number is expected
  EXPECT_FALSE(c.get_bool("verbose"));    // default
  EXPECT_EQ(c.get_strings("tags"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(c.is_set("batch_size"));
  EXPECT_FALSE(c.is_set("mode"));
  EXPECT_EQ(spec->sink_settings.batch_max_messages, 500);  // a runtime key's default
  EXPECT_EQ(spec->sources.at(0).config.get_string("listen"), "127.0.0.1:0");
}

TEST_F(PipelineConfigTest, UnknownPluginListsWhatIsAvailableAndWhereItLooked) {
  EXPECT_FALSE(load("[source.websocket]\n[sink.postgress]\nurl = \"x\"\n"));
  const auto error = only_error();
  EXPECT_THAT(error, HasSubstr("test.toml:2:7: sink.postgress: unknown sink plugin 'postgress'"));
  EXPECT_THAT(error, HasSubstr("available sink plugins:"));
  EXPECT_THAT(error, HasSubstr("testsink"));
  EXPECT_THAT(error, HasSubstr(NUDGE_TEST_PLUGIN_DIR));
}

TEST_F(PipelineConfigTest, PluginOfTheWrongKindForItsTable) {
  EXPECT_FALSE(load("[source.websocket]\n[fanout.testsink]\n"));
  EXPECT_THAT(only_error(), HasSubstr("fanout.testsink: plugin 'testsink' is a sink plugin, not a fanout"));
}

TEST_F(PipelineConfigTest, SdkAbiMismatchIsRefusedNamingBothNumbers) {
  EXPECT_FALSE(load("[source.websocket]\n[sink.wrongabi]\n"));
  const auto error = only_error();
  EXPECT_THAT(error, HasSubstr("built against SDK ABI version " + std::to_string(kAbiVersion + 41)));
  EXPECT_THAT(error, HasSubstr("this nudge uses SDK ABI version " + std::to_string(kAbiVersion)));
  EXPECT_THAT(error, HasSubstr("rebuild the plugin"));
}

TEST_F(PipelineConfigTest, MissingRequiredKeyNamesTheTableAndKey) {
  EXPECT_FALSE(load("[source.websocket]\n\n[sink.testsink]\nbatch_size = 3\n"));
  EXPECT_THAT(only_error(),
              HasSubstr("test.toml:3:1: sink.testsink.path: missing required key (string: where to write)"));
}

TEST_F(PipelineConfigTest, UnknownKeySuggestsTheClosestOne) {
  EXPECT_FALSE(load("[source.websocket]\n[sink.testsink]\npath = \"x\"\nbatch_sise = 3\n"));
  EXPECT_THAT(only_error(),
              HasSubstr("test.toml:4:1: sink.testsink: unknown key 'batch_sise' (did you mean 'batch_size'?)"));
}

TEST_F(PipelineConfigTest, WrongTypeSaysWhatWasExpected) {
  EXPECT_FALSE(load("[source.websocket]\n[sink.testsink]\npath = \"x\"\nbatch_size = \"ten\"\n"));
  EXPECT_THAT(only_error(),
              HasSubstr("test.toml:4:14: sink.testsink.batch_size: expected integer, got a string \"ten\""));
}

TEST_F(PipelineConfigTest, OutOfRangeAndNotOneOf) {
  EXPECT_FALSE(load("[source.websocket]\n[sink.testsink]\npath = \"x\"\nbatch_size = 0\nmode = \"slow\"\n"));
  ASSERT_EQ(diags_.items().size(), 2u) << diags_.to_string();
  EXPECT_THAT(diags_.to_string(), HasSubstr("sink.testsink.batch_size: must be in [1, 10000], got 0"));
  EXPECT_THAT(diags_.to_string(), HasSubstr("sink.testsink.mode: must be one of \"fast\", \"safe\", got \"slow\""));
}

TEST_F(PipelineConfigTest, TheInFlightByteBoundIsReadAndKeptInItsRange) {
  const std::string rest = "[source.websocket]\nlisten = \"127.0.0.1:0\"\n[sink.testsink]\npath = \"x\"\n";
  auto spec = load("[pipeline]\nmax_in_flight_bytes = 1048576\n" + rest);
  ASSERT_TRUE(spec) << diags_.to_string();
  EXPECT_EQ(spec->settings.max_in_flight_bytes, 1048576);
  EXPECT_FALSE(load("[pipeline]\nmax_in_flight_bytes = 1000\n" + rest));
  EXPECT_THAT(only_error(), HasSubstr("pipeline.max_in_flight_bytes: must be in [65536, 1099511627776], got 1000"));
}

TEST_F(PipelineConfigTest, MalformedTomlGivesLineAndColumn) {
  EXPECT_FALSE(load("[source.websocket]\nlisten = \"127.0.0.1:1\n"));
  const auto error = only_error();
  EXPECT_THAT(error, HasSubstr("test.toml:2:"));
  EXPECT_THAT(error, HasSubstr("invalid TOML"));
}

TEST_F(PipelineConfigTest, UnsetVariableWithoutDefault) {
  EXPECT_FALSE(load("[source.websocket]\nlisten = \"${LISTEN}\"\n"));
  EXPECT_THAT(only_error(),
              HasSubstr("test.toml:2:10: source.websocket.listen: environment variable 'LISTEN' is not set"));
}

TEST_F(PipelineConfigTest, VariablesDefaultsAndPipelineDir) {
  env_["PORT"] = "9001";
  env_["BATCH"] = "12";
  auto spec = load(R"(
[source.websocket]
listen = "127.0.0.1:${PORT}"
static_dir = "${PIPELINE_DIR}/web"
[sink.testsink]
path = "${DATA:-/var/lib/nudge}/x.db"
batch_size = "${BATCH}"
)");
  ASSERT_TRUE(spec) << diags_.to_string();
  EXPECT_EQ(spec->sources.at(0).config.get_string("listen"), "127.0.0.1:9001");
  EXPECT_EQ(spec->sources.at(0).config.get_string("static_dir"), "/pipelines/web");
  EXPECT_EQ(spec->sink->config.get_string("path"), "/var/lib/nudge/x.db");
  EXPECT_EQ(spec->sink->config.get_int("batch_size"), 12) << "a number may come from a variable";
}

TEST_F(PipelineConfigTest, EveryErrorIsReportedAtOnce) {
  EXPECT_FALSE(load(R"(
[pipline]
[source.websocket]
listn = "x"
max_connections = -1
[sink.testsink]
batch_size = "many"
[fanout.nope]
)"));
  const auto all = diags_.to_string();
  EXPECT_EQ(diags_.items().size(), 6u) << all;
  EXPECT_THAT(all, HasSubstr("unknown table 'pipline' (did you mean 'pipeline'?)"));
  EXPECT_THAT(all, HasSubstr("unknown key 'listn' (did you mean 'listen'?)"));
  EXPECT_THAT(all, HasSubstr("source.websocket.max_connections: must be in [1, 1000000], got -1"));
  EXPECT_THAT(all, HasSubstr("sink.testsink.batch_size: expected integer"));
  EXPECT_THAT(all, HasSubstr("sink.testsink.path: missing required key"));
  EXPECT_THAT(all, HasSubstr("unknown fanout plugin 'nope'"));
}

TEST_F(PipelineConfigTest, OverridesFromTheCommandLineKeepTheirType) {
  overrides_ = {"source.websocket.listen=127.0.0.1:7000", "sink.testsink.batch_size=42", "sink.testsink.verbose=true",
                "pipeline.name=override"};
  auto spec = load(kValid);
  ASSERT_TRUE(spec) << diags_.to_string();
  EXPECT_EQ(spec->sources.at(0).config.get_string("listen"), "127.0.0.1:7000");
  EXPECT_EQ(spec->sink->config.get_int("batch_size"), 42);
  EXPECT_TRUE(spec->sink->config.get_bool("verbose"));
  EXPECT_EQ(spec->settings.name, "override");
}

TEST_F(PipelineConfigTest, BadOverridesAreReported) {
  overrides_ = {"nodots=1", "sink.testsink.batch_size=0"};
  EXPECT_FALSE(load(kValid));
  const auto all = diags_.to_string();
  EXPECT_EQ(diags_.items().size(), 2u) << all;
  EXPECT_THAT(all, HasSubstr("--set: nodots: expected a dotted key"));
  EXPECT_THAT(all, HasSubstr("--set: sink.testsink.batch_size: must be in [1, 10000], got 0"));
}

TEST_F(PipelineConfigTest, AStageNeedsSomethingToFeedIt) {
  EXPECT_FALSE(load("[sink.testsink]\npath = \"x\"\n"));
  EXPECT_THAT(only_error(), HasSubstr("a pipeline needs a [source.*] table"));
  EXPECT_FALSE(load("[fanout.memory]\n"));
  EXPECT_THAT(diags_.to_string(), HasSubstr("a pipeline needs a [source.*] table"));
}

TEST_F(PipelineConfigTest, OnePluginPerKind) {
  EXPECT_FALSE(load("[source.websocket]\n[sink.testsink]\npath = \"x\"\n[sink.sqlite]\npath = \"y\"\n"));
  EXPECT_THAT(diags_.to_string(), HasSubstr("a pipeline has at most one sink; found 2"));
}

TEST_F(PipelineConfigTest, SeveralSourcesLoadInFileOrderButNoPluginTwice) {
  auto spec = load(
      "[source.websocket]\nlisten = \"127.0.0.1:0\"\n[source.scripted]\nreport = \"r\"\n"
      "[sink.testsink]\npath = \"x\"\n");
  ASSERT_TRUE(spec) << diags_.to_string();
  ASSERT_EQ(spec->sources.size(), 2u);
  EXPECT_EQ(spec->sources[0].key_path, "source.websocket");
  EXPECT_EQ(spec->sources[1].key_path, "source.scripted");
  spec = load("[source.scripted]\nreport = \"r\"\n[source.websocket]\nlisten = \"127.0.0.1:0\"\n");
  ASSERT_TRUE(spec) << diags_.to_string();
  EXPECT_EQ(spec->sources[0].key_path, "source.scripted");
  // Each source's table is checked against its own schema.
  EXPECT_FALSE(load("[source.websocket]\nlisten = \"127.0.0.1:0\"\n[source.scripted]\nreprot = \"r\"\n"));
  EXPECT_THAT(diags_.to_string(), HasSubstr("source.scripted: unknown key 'reprot'"));
  // The same plugin twice cannot be written: TOML has one table per name.
  EXPECT_FALSE(load("[source.websocket]\nlisten = \"127.0.0.1:0\"\n[source.websocket]\nlisten = \"127.0.0.1:1\"\n"));
  EXPECT_FALSE(diags_.empty());
}

TEST_F(PipelineConfigTest, TheAdminTableTakesOneTokenOfSixteenVisibleCharactersAndBoundsConnections) {
  const std::string stages = "[source.websocket]\nlisten = \"127.0.0.1:0\"\n";
  auto spec = load("[admin]\n" + stages);
  ASSERT_TRUE(spec && spec->admin) << diags_.to_string();
  EXPECT_EQ(spec->admin->listen, "127.0.0.1:9100");
  EXPECT_EQ(spec->admin->token, "");
  EXPECT_EQ(spec->admin->max_connections, 16u);
  EXPECT_TRUE(spec->admin->allowed_hosts.empty());

  env_["NUDGE_ADMIN_TOKEN"] = "0123456789abcdef";
  spec = load(
      "[admin]\ntoken = \"${NUDGE_ADMIN_TOKEN}\"\nallowed_hosts = [\"nudge-1.internal\"]\n"
      "max_connections = 4\n" +
      stages);
  ASSERT_TRUE(spec && spec->admin) << diags_.to_string();
  EXPECT_EQ(spec->admin->token, "0123456789abcdef");
  EXPECT_EQ(spec->admin->allowed_hosts, std::vector<std::string>{"nudge-1.internal"});
  EXPECT_EQ(spec->admin->max_connections, 4u);

  EXPECT_FALSE(load("[admin]\ntoken = \"short\"\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("test.toml:2:9: admin.token: must be at least 16 bytes, got 5"));
  EXPECT_FALSE(load("[admin]\ntoken = \"0123456789 abcdef\"\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("admin.token: must be visible ASCII characters, without spaces"));
  EXPECT_FALSE(load("[admin]\ntoken = \"0123456789abcdef\"\ntoken_file = \"/etc/t\"\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("admin: token and token_file are both set: use one"));
  EXPECT_FALSE(load("[admin]\nmax_connections = 0\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("admin.max_connections: must be in [1, 10000], got 0"));
}

TEST_F(PipelineConfigTest, TapBoundsHaveDefaultsAndTapsCannotFillTheAdminConnections) {
  const std::string stages = "[source.websocket]\nlisten = \"127.0.0.1:0\"\n";
  auto spec = load("[admin]\n" + stages);
  ASSERT_TRUE(spec && spec->admin) << diags_.to_string();
  EXPECT_EQ(spec->admin->max_taps, 2u);
  EXPECT_EQ(spec->admin->tap_queue_bytes, 1024u * 1024u);
  EXPECT_EQ(spec->admin->tap_events_per_second, 1000u);

  spec = load("[admin]\nmax_taps = 5\ntap_queue_bytes = 8192\ntap_events_per_second = 50\n" + stages);
  ASSERT_TRUE(spec && spec->admin) << diags_.to_string();
  EXPECT_EQ(spec->admin->max_taps, 5u);
  EXPECT_EQ(spec->admin->tap_queue_bytes, 8192u);
  EXPECT_EQ(spec->admin->tap_events_per_second, 50u);

  // The default gives way to a small max_connections; an explicit value is an error.
  spec = load("[admin]\nmax_connections = 2\n" + stages);
  ASSERT_TRUE(spec && spec->admin) << diags_.to_string();
  EXPECT_EQ(spec->admin->max_taps, 1u);
  EXPECT_FALSE(load("[admin]\nmax_connections = 4\nmax_taps = 4\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("admin.max_taps: must be less than max_connections (4), got 4"));
  EXPECT_FALSE(load("[admin]\ntap_queue_bytes = 100\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("admin.tap_queue_bytes: must be in [4096, 67108864], got 100"));
  EXPECT_FALSE(load("[admin]\ntap_events_per_second = 0\n" + stages));
  EXPECT_THAT(only_error(), HasSubstr("admin.tap_events_per_second: must be in [1, 1000000], got 0"));
}

TEST_F(PipelineConfigTest, TheAdminTokenFileIsReadLessItsNewlineAndATooShortOneIsAnError) {
  const std::string file = ::testing::TempDir() + "/admin-token-" + std::to_string(::getpid());
  AdminSettings admin;
  admin.token_file = file;
  std::string token;
  std::remove(file.c_str());
  auto status = read_admin_token(admin, token);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("admin.token_file: cannot read '" + file + "'"));
  std::ofstream(file) << "fedcba9876543210fedcba\n";
  ASSERT_TRUE(read_admin_token(admin, token).ok());
  EXPECT_EQ(token, "fedcba9876543210fedcba");
  std::ofstream(file) << "tiny\n";
  status = read_admin_token(admin, token);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("must be at least 16 bytes, got 4"));
  EXPECT_EQ(token, "") << "no half-read token";
  std::remove(file.c_str());
  AdminSettings inline_token;
  inline_token.token = "0123456789abcdef";
  ASSERT_TRUE(read_admin_token(inline_token, token).ok());
  EXPECT_EQ(token, "0123456789abcdef");
}

TEST_F(PipelineConfigTest, AClientReadsTheAdminTableAloneWithoutLoadingPlugins) {
  const std::string file = ::testing::TempDir() + "/admin-only-" + std::to_string(::getpid()) + ".toml";
  // The stages name a plugin that does not exist and a variable this shell lacks: neither matters.
  std::ofstream(file) << "[admin]\nlisten = \"127.0.0.1:9200\"\ntoken = \"${ADMIN_T:-0123456789abcdef}\"\n"
                      << "[source.nosuch]\nsecret = \"${NOT_SET_ANYWHERE}\"\n";
  LoadOptions options;
  options.overrides = {"admin.listen=127.0.0.1:9300", "source.nosuch.x=1"};
  options.lookup = [](std::string_view) { return std::nullopt; };
  Diagnostics diags;
  auto admin = load_admin_settings(file, options, diags);
  ASSERT_TRUE(admin) << diags.to_string();
  EXPECT_EQ(admin->listen, "127.0.0.1:9300");
  EXPECT_EQ(admin->token, "0123456789abcdef");
  // No table, no endpoint; but --set admin.listen makes one, as it does for `nudge run` (and `nudge deploy`).
  std::ofstream(file) << "[source.nosuch]\n";
  EXPECT_TRUE(load_admin_settings(file, options, diags));
  EXPECT_FALSE(load_admin_settings(file, {}, diags));
  EXPECT_TRUE(diags.empty()) << "no [admin] table is not an error of the file";
  std::remove(file.c_str());
}

}  // namespace
}  // namespace nudge::runtime
