#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "cli/cli.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CommandLine, ParsesCommandsFlagsAndOverrides) {
  auto cl = parse_command_line(
      {"run", "p.toml", "--set", "a.b=1", "--set=c.d=2", "--plugin-dir", "/x", "--log-level", "debug"});
  EXPECT_EQ(cl.error, "");
  EXPECT_EQ(cl.command, "run");
  EXPECT_EQ(cl.argument, "p.toml");
  EXPECT_EQ(cl.overrides, (std::vector<std::string>{"a.b=1", "c.d=2"}));
  ASSERT_EQ(cl.plugin_dirs.size(), 1u);
  EXPECT_EQ(cl.log_level, "debug");
  EXPECT_EQ(parse_command_line({}).command, "help");
  EXPECT_EQ(parse_command_line({"--version"}).command, "version");
}

TEST(CommandLine, ReloadTakesATokenAndNoOtherCommandDoes) {
  auto cl = parse_command_line({"reload", "http://127.0.0.1:9100", "--token", "0123456789abcdef"});
  EXPECT_EQ(cl.error, "");
  EXPECT_EQ(cl.token, "0123456789abcdef");
  EXPECT_EQ(parse_command_line({"reload", "--token=abc"}).token, "abc");
  EXPECT_EQ(parse_command_line({"run", "p.toml", "--token", "x"}).error,
            "--token is for 'nudge reload' and 'nudge tap'");
}

TEST(Cli, ReloadGivenAPipelineWithoutAnAdminTableOrWithAFreePortSaysWhatToDoInstead) {
  const std::string file = ::testing::TempDir() + "/reload-no-admin.toml";
  std::ofstream(file) << "[source.websocket]\nlisten = \"127.0.0.1:0\"\n";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run_cli({"reload", file}), 2);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("has no [admin] table"));
  std::ofstream(file) << "[admin]\nlisten = \"127.0.0.1:0\"\n";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run_cli({"reload", file}), 2);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("picks a free port; give the admin URL"));
}

TEST(CommandLine, MistakesAreExplained) {
  EXPECT_EQ(parse_command_line({"run"}).error, "'run' needs a pipeline file");
  EXPECT_EQ(parse_command_line({"describe"}).error, "'describe' needs a plugin name");
  EXPECT_EQ(parse_command_line({"frobnicate"}).error, "unknown command 'frobnicate'");
  EXPECT_EQ(parse_command_line({"run", "p", "--bogus"}).error, "unknown option '--bogus'");
  EXPECT_EQ(parse_command_line({"run", "p", "--set"}).error, "--set needs a value");
  EXPECT_EQ(parse_command_line({"run", "p", "--log-level", "loud"}).error, "unknown log level 'loud'");
  EXPECT_EQ(run_cli({"frobnicate"}), 2);
}

TEST(CommandLine, AFlagGivenToTheWrongCommandNamesTheCommandsThatTakeIt) {
  EXPECT_EQ(parse_command_line({"run", "p.toml", "--markdown"}).error, "--markdown is for 'nudge describe'");
  EXPECT_EQ(parse_command_line({"plugins", "--set=a.b=1"}).error,
            "--set is for 'nudge run', 'nudge validate', 'nudge replay' and 'nudge reload'");
  EXPECT_EQ(parse_command_line({"validate", "p.toml", "q.toml"}).error, "unexpected argument 'q.toml'");
  // --log-level and --log-format go before or after the command.
  EXPECT_EQ(parse_command_line({"--log-level", "warn", "plugins"}).log_level, "warn");
  EXPECT_EQ(parse_command_line({"plugins", "--log-format=json"}).log_format, "json");
}

TEST(CommandLine, TopAndDeployAreCommandsLikeTheOthers) {
  auto top = parse_command_line({"top", "http://127.0.0.1:9101", "--once", "--interval=250"});
  EXPECT_EQ(top.error, "");
  EXPECT_EQ(top.command, "top");
  EXPECT_EQ(top.argument, "http://127.0.0.1:9101");
  EXPECT_TRUE(top.once);
  EXPECT_EQ(top.interval, std::chrono::milliseconds(250));
  EXPECT_EQ(parse_command_line({"top", "--interval", "50"}).error,
            "--interval: must be milliseconds in [100, 3600000], got '50'");
  EXPECT_EQ(parse_command_line({"top", "--interval"}).error, "--interval needs a value");

  auto status = parse_command_line({"deploy", "status", "d.toml"});
  EXPECT_EQ(status.error, "");
  EXPECT_EQ(status.command, "deploy");
  EXPECT_EQ(status.argument, "status");
  EXPECT_EQ(status.subject, "d.toml");
  EXPECT_EQ(parse_command_line({"deploy", "up"}).error, "'deploy up' needs exactly one deployment file");
  EXPECT_EQ(parse_command_line({"deploy", "sideways", "d.toml"}).error, "unknown deploy command 'sideways'");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run_cli({"deploy"}), 2);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("Run 'nudge deploy --help' for usage."));
}

TEST(CommandLine, HelpIsGeneratedForEachCommand) {
  auto help = parse_command_line({"--help"});
  EXPECT_EQ(help.command, "help");
  EXPECT_THAT(help.help, HasSubstr("Usage: nudge [OPTIONS]"));
  EXPECT_THAT(help.help, HasSubstr("describe"));
  EXPECT_THAT(help.help, HasSubstr("GET /healthz, GET /readyz, GET /metrics"));
  EXPECT_THAT(help.help, Not(HasSubstr("__supervise")));
  auto run = parse_command_line({"run", "--help"});
  EXPECT_EQ(run.command, "help");
  EXPECT_THAT(run.help, HasSubstr("Usage: nudge run [OPTIONS] [PIPELINE]"));
  EXPECT_THAT(run.help, HasSubstr("--plugin-dir DIR"));
  EXPECT_EQ(parse_command_line({"help", "top"}).help, parse_command_line({"top", "-h"}).help);
  EXPECT_THAT(parse_command_line({"deploy", "--help"}).help, HasSubstr("status"));
}

TEST(Cli, RunRefusesAPortAlreadyInUseWithAReadableMessage) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor busy(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = busy.local_endpoint().port();
  const std::string file = ::testing::TempDir() + "/port-in-use.toml";
  std::ofstream(file) << "[source.websocket]\nlisten = \"127.0.0.1:" << port << "\"\n[fanout.memory]\n";
  ::testing::internal::CaptureStderr();
  const int code = run_cli({"run", file, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, HasSubstr("source.websocket: cannot listen on 127.0.0.1:" + std::to_string(port)));
  EXPECT_THAT(err, HasSubstr("another process listens there"));
}

TEST(Cli, ValidateListsEveryErrorAndExitsNonZero) {
  const std::string file = ::testing::TempDir() + "/broken.toml";
  std::ofstream(file) << "[source.websocket]\nlisten = 5\nmax_conections = 1\n";
  ::testing::internal::CaptureStderr();
  const int code = run_cli({"validate", file, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, HasSubstr(file + ":2:10: source.websocket.listen: expected string, got an integer"));
  EXPECT_THAT(
      err, HasSubstr(file + ":3:1: source.websocket: unknown key 'max_conections' (did you mean 'max_connections'?)"));
  EXPECT_THAT(err, HasSubstr("2 errors in " + file));
}

TEST(Cli, ValidateSaysWhereClientsHistoryComesFromOrWhyThereIsNone) {
  auto validate = [](const std::string& name, const std::string& toml) {
    const std::string file = ::testing::TempDir() + "/" + name + ".toml";
    std::ofstream(file) << "[source.websocket]\nlisten = \"127.0.0.1:0\"\n" << toml;
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(run_cli({"validate", file, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR}), 0) << name;
    return ::testing::internal::GetCapturedStdout();
  };
  EXPECT_THAT(validate("sink-with-history", "[fanout.memory]\n[sink.sqlite]\npath = \"/tmp/x.db\"\n"),
              HasSubstr("history: from sink.sqlite and the recent window of fanout.memory"));
  EXPECT_THAT(validate("window-only", "[fanout.memory]\n"),
              HasSubstr("history: from the recent window of fanout.memory alone (this pipeline has no sink)"));
  EXPECT_THAT(validate("none", "[fanout.memory]\nrecent_messages = 0\n"),
              HasSubstr("history: none, this pipeline has no sink; clients joining a room get no past messages"));
}

TEST(Cli, ValidateOfAMissingFileSaysSo) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run_cli({"validate", "/no/such/pipeline.toml", "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR}), 1);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("cannot open pipeline file"));
}

}  // namespace
}  // namespace nudge::runtime
