// `nudge replay`: its arguments and times, and the errors it gives before
// touching any server (the replay itself runs against Kafka in tests/e2e).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <fstream>

#include "cli/cli.hpp"
#include "cli/replay/replay_args.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;

// 2026-12-06T12:00:00Z
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1796558400));
constexpr std::int64_t kNowMs = 1796558400000;

std::optional<std::int64_t> time_of(const std::string& text) {
  std::string error;
  return parse_replay_time(text, kNow, error);
}

TEST(ReplayTime, ReadsIso8601InUtcOrWithAnOffset) {
  EXPECT_EQ(time_of("2026-12-06T12:00:00Z"), kNowMs);
  EXPECT_EQ(time_of("2026-12-06T12:00:00"), kNowMs) << "no zone means UTC";
  EXPECT_EQ(time_of("2026-12-06 12:00"), kNowMs);
  EXPECT_EQ(time_of("2026-12-06"), kNowMs - 12 * 3600 * 1000);
  EXPECT_EQ(time_of("2026-12-06T12:00:00.250Z"), kNowMs + 250);
  EXPECT_EQ(time_of("2026-12-06T12:00:00.123456789Z"), kNowMs + 123);
  EXPECT_EQ(time_of("2026-12-06T13:00:00+01:00"), kNowMs);
  EXPECT_EQ(time_of("2026-12-06T07:30:00-0430"), kNowMs);
}

TEST(ReplayTime, ReadsADurationAgo) {
  EXPECT_EQ(time_of("90s"), kNowMs - 90'000);
  EXPECT_EQ(time_of("15m"), kNowMs - 15 * 60'000);
  EXPECT_EQ(time_of("2h"), kNowMs - 2 * 3'600'000);
  EXPECT_EQ(time_of("7d"), kNowMs - 7 * 86'400'000LL);
  EXPECT_EQ(time_of("1w"), kNowMs - 7 * 86'400'000LL);
}

TEST(ReplayTime, RefusesWhatIsNotATimeAndSaysWhatIs) {
  for (const char* bad : {"", "yesterday", "2026-13-01", "2026-02-31", "2026-12-06T25:00", "2026-12-06T12:00:00.Z",
                          "2026-12-06T12:00:00+1", "12:00", "2h30m", "-2h", "h", "2026-12-06Tx", "99999999999999d"}) {
    std::string error;
    EXPECT_FALSE(parse_replay_time(bad, kNow, error)) << bad;
    EXPECT_THAT(error, HasSubstr("is not a time: use ISO 8601")) << bad;
  }
}

TEST(ReplayRange, DefaultsToEverythingTheLogHoldsUpToItsEndNow) {
  std::string error;
  const auto range = parse_replay_range("", "", "", kNow, error);
  ASSERT_TRUE(range) << error;
  EXPECT_EQ(range->group, "");
  EXPECT_FALSE(range->from_ms);
  EXPECT_TRUE(range->from_offsets.empty());
  EXPECT_FALSE(range->to_ms);
  EXPECT_TRUE(parse_replay_range("earliest", "now", "g", kNow, error));
}

TEST(ReplayRange, TakesTimesOffsetsAndAGroup) {
  std::string error;
  auto range = parse_replay_range("2h", "2026-12-06T11:30:00Z", "restore-1", kNow, error);
  ASSERT_TRUE(range) << error;
  EXPECT_EQ(range->group, "restore-1");
  EXPECT_EQ(range->from_ms, kNowMs - 2 * 3'600'000);
  EXPECT_EQ(range->to_ms, kNowMs - 30 * 60'000);
  range = parse_replay_range("0:1200,3:5000", "", "", kNow, error);
  ASSERT_TRUE(range) << error;
  EXPECT_EQ(range->from_offsets, (std::map<std::int32_t, std::int64_t>{{0, 1200}, {3, 5000}}));
  EXPECT_FALSE(range->from_ms);
}

TEST(ReplayRange, MistakesAreExplained) {
  std::string error;
  EXPECT_FALSE(parse_replay_range("0:12,0:13", "", "", kNow, error));
  EXPECT_THAT(error, HasSubstr("partition 0 is named twice"));
  EXPECT_FALSE(parse_replay_range("0:12,", "", "", kNow, error));
  EXPECT_THAT(error, HasSubstr("is not a list of PARTITION:OFFSET"));
  EXPECT_FALSE(parse_replay_range("x:1", "", "", kNow, error));
  EXPECT_FALSE(parse_replay_range("soon", "", "", kNow, error));
  EXPECT_THAT(error, HasSubstr("--from: 'soon' is not a time"));
  EXPECT_FALSE(parse_replay_range("", "later", "", kNow, error));
  EXPECT_THAT(error, HasSubstr("--to: 'later' is not a time"));
  EXPECT_FALSE(parse_replay_range("1h", "2h", "", kNow, error));
  EXPECT_EQ(error, "--to must be later than --from");
}

TEST(ReplayCommandLine, TakesItsFlagsAndNoOtherCommandDoes) {
  auto cl = parse_command_line(
      {"replay", "p.toml", "--from", "2h", "--to", "now", "--group", "g", "--quiet", "--set", "sink.postgres.table=t"});
  EXPECT_EQ(cl.error, "");
  EXPECT_EQ(cl.command, "replay");
  EXPECT_EQ(cl.argument, "p.toml");
  EXPECT_EQ(cl.replay.from, "2h");
  EXPECT_EQ(cl.replay.to, "now");
  EXPECT_EQ(cl.replay.group, "g");
  EXPECT_TRUE(cl.replay.quiet);
  EXPECT_EQ(cl.overrides, std::vector<std::string>{"sink.postgres.table=t"});
  EXPECT_EQ(parse_command_line({"replay"}).error, "'replay' needs a pipeline file");
  EXPECT_EQ(parse_command_line({"run", "p.toml", "--group", "g"}).error, "--group is for 'nudge replay'");
  EXPECT_EQ(run_cli({"replay", "p.toml", "--from", "soon"}), 2);
}

class ReplayCommand : public ::testing::Test {
 protected:
  /// Runs `nudge replay` on a pipeline of `tables`; stderr into `err`.
  int replay(const std::string& tables, std::string& err) {
    const std::string file = ::testing::TempDir() + "/replay-" +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
                             std::to_string(::getpid()) + ".toml";
    std::ofstream(file) << tables;
    ::testing::internal::CaptureStderr();
    const int code = run_cli({"replay", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--plugin-dir",
                              NUDGE_BUILD_PLUGIN_DIR, "--log-level", "warn"});
    err = ::testing::internal::GetCapturedStderr();
    return code;
  }
};

TEST_F(ReplayCommand, APipelineWithoutALogOrASinkIsRefusedSayingWhichIsMissing) {
  std::string err;
  const std::string source = "[source.scripted]\nreport = \"/tmp/x\"\n";
  EXPECT_EQ(replay(source + "[sink.testsink]\npath = \"/tmp/x\"\n", err), 1);
  EXPECT_THAT(err, HasSubstr("has no [log.*] table: there is no log to replay from"));
  EXPECT_EQ(replay(source + "[log.scripted]\nreport = \"/tmp/x\"\n", err), 1);
  EXPECT_THAT(err, HasSubstr("has no [sink.*] table: there is no sink to replay into"));
}

TEST_F(ReplayCommand, ALogThatCannotReplaySaysSo) {
  std::string err;
  const std::string report = ::testing::TempDir() + "/replay-report-" + std::to_string(::getpid());
  EXPECT_EQ(
      replay("[log.scripted]\nreport = \"" + report + "\"\n[sink.testsink]\npath = \"" + report + ".sink\"\n", err), 1);
  EXPECT_THAT(err, HasSubstr("log.scripted: this log cannot replay"));
}

}  // namespace
}  // namespace nudge::runtime
