#include <gtest/gtest.h>

#include "engine/fail_points.hpp"

namespace nudge::runtime {
namespace {

TEST(FailPoints, UnsetOrEmptyArmsNothing) {
  std::string error;
  auto points = FailPoints::parse("", error);
  ASSERT_TRUE(points) << error;
  EXPECT_FALSE(points->any_armed());
  EXPECT_FALSE(points->after_sink_commit.armed());
}

TEST(FailPoints, ArmsAKillAtAGivenHit) {
  std::string error;
  auto points = FailPoints::parse("after_sink_commit:kill@3", error);
  ASSERT_TRUE(points) << error;
  EXPECT_TRUE(points->after_sink_commit.armed());
  EXPECT_EQ(points->after_sink_commit.name(), "after_sink_commit");
  ASSERT_TRUE(FailPoints::parse("after_sink_commit:kill", error)) << error;
}

TEST(FailPoints, RefusesWhatItDoesNotKnow) {
  std::string error;
  EXPECT_FALSE(FailPoints::parse("after_sink_comit:kill", error));
  EXPECT_NE(error.find("unknown fail point 'after_sink_comit'"), std::string::npos) << error;
  EXPECT_FALSE(FailPoints::parse("after_sink_commit:explode", error));
  EXPECT_NE(error.find("unknown action 'explode'"), std::string::npos) << error;
  EXPECT_FALSE(FailPoints::parse("after_sink_commit:kill@0", error));
  EXPECT_FALSE(FailPoints::parse("after_sink_commit:kill@x", error));
  EXPECT_FALSE(FailPoints::parse("after_sink_commit", error));
}

TEST(FailPoints, HitsBeforeTheArmedOneDoNothing) {
  std::string error;
  auto points = FailPoints::parse("after_sink_commit:kill@1000", error);
  ASSERT_TRUE(points) << error;
  struct Quiet final : Logger {
    bool enabled(LogLevel) const noexcept override { return true; }
    void write(LogLevel, std::string_view) override { ++lines; }
    int lines = 0;
  } logger;
  for (int i = 0; i < 999; ++i) points->after_sink_commit.hit(logger);
  EXPECT_EQ(logger.lines, 0);  // still alive, nothing said
}

}  // namespace
}  // namespace nudge::runtime
