// Where a replay starts and ends on each partition, from what the brokers
// answered (replay_plan.hpp); the replay itself runs in tests/e2e.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "replay_plan.hpp"

namespace nudge::plugins::kafka {
namespace {

using ::testing::HasSubstr;

PartitionFacts facts(std::int32_t partition, std::int64_t low, std::int64_t high) {
  PartitionFacts f;
  f.partition = partition;
  f.low = low;
  f.high = high;
  return f;
}

TEST(ReplayPlan, FromTheEarliestRecordHeldToTheEndNow) {
  const auto plan = plan_replay({}, {facts(0, 0, 100), facts(1, 0, 0)}, "t");
  EXPECT_EQ(plan.error, "");
  ASSERT_EQ(plan.partitions.size(), 2u);
  EXPECT_EQ(plan.partitions[0].start, 0);
  EXPECT_EQ(plan.partitions[0].end, 100);
  EXPECT_EQ(plan.partitions[0].reached, 0);
  EXPECT_EQ(plan.partitions[1].start, plan.partitions[1].end) << "an empty partition has nothing to read";
  EXPECT_TRUE(plan.notes.empty());
}

TEST(ReplayPlan, FromEarliestNotesWhatRetentionDeletedAndGoesOn) {
  const auto plan = plan_replay({}, {facts(0, 40, 100), facts(1, 0, 10)}, "t");
  EXPECT_EQ(plan.error, "");
  EXPECT_EQ(plan.partitions[0].start, 40);
  ASSERT_EQ(plan.notes.size(), 1u);
  EXPECT_THAT(plan.notes[0], HasSubstr("40 records of partitions [0] were deleted by retention"));
}

TEST(ReplayPlan, FromATimeStartsAtItsFirstRecordAndAPartitionWithNoneLaterReadsNothing) {
  LogReplay range;
  range.from_ms = 1000;
  auto a = facts(0, 0, 100);
  a.from_time_offset = 60;
  auto b = facts(1, 0, 50);
  b.from_time_offset = -1;  // nothing at or after the time
  const auto plan = plan_replay(range, {a, b}, "t");
  EXPECT_EQ(plan.error, "");
  EXPECT_EQ(plan.partitions[0].start, 60);
  EXPECT_EQ(plan.partitions[0].end, 100);
  EXPECT_EQ(plan.partitions[1].start, 50);
  EXPECT_EQ(plan.partitions[1].end, 50);
}

TEST(ReplayPlan, ATimeBeforeWhatRetentionKeptIsAnErrorNamingTheEarliestOffsetHeld) {
  LogReplay range;
  range.from_ms = 1796558400000;
  auto a = facts(0, 0, 100);
  a.from_time_offset = 0;  // nothing deleted: all of it is there
  auto b = facts(3, 250, 400);
  b.from_time_offset = 250;  // the earliest held record is already past the time
  const auto plan = plan_replay(range, {a, b}, "chat");
  EXPECT_THAT(plan.error, HasSubstr("the log no longer reaches back to 2026-12-06T12:00:00.000Z on topic 'chat'"));
  EXPECT_THAT(plan.error, HasSubstr("partition 3 starts at offset 250 (retention deleted the 250 records before it)"));
  EXPECT_THAT(plan.error, HasSubstr("--from earliest"));
}

TEST(ReplayPlan, ATimeWithinWhatRetentionKeptIsNoError) {
  LogReplay range;
  range.from_ms = 1000;
  auto a = facts(0, 250, 400);
  a.from_time_offset = 300;
  EXPECT_EQ(plan_replay(range, {a}, "t").error, "");
}

TEST(ReplayPlan, ToATimeEndsAtItsFirstRecordOrAtTheEndWhenNoneIsLater) {
  LogReplay range;
  range.to_ms = 5000;
  auto a = facts(0, 0, 100);
  a.to_time_offset = 70;
  auto b = facts(1, 0, 100);
  b.to_time_offset = -1;
  const auto plan = plan_replay(range, {a, b}, "t");
  EXPECT_EQ(plan.partitions[0].end, 70);
  EXPECT_EQ(plan.partitions[1].end, 100);
}

TEST(ReplayPlan, AGroupThatCommittedResumesThereWhateverTheStartAsked) {
  LogReplay range;
  range.from_ms = 1000;
  auto a = facts(0, 0, 100);
  a.from_time_offset = 10;
  a.committed = 80;
  const auto plan = plan_replay(range, {a}, "t");
  EXPECT_EQ(plan.error, "");
  EXPECT_EQ(plan.partitions[0].start, 80);
  ASSERT_EQ(plan.notes.size(), 1u);
  EXPECT_THAT(plan.notes[0], HasSubstr("continue from the offsets this group committed"));
}

TEST(ReplayPlan, AResumeWhoseOffsetsRetentionDeletedIsAnError) {
  auto a = facts(0, 90, 100);
  a.committed = 80;
  EXPECT_THAT(plan_replay({}, {a}, "t").error,
              HasSubstr("the group committed offset 80, but the log now starts at offset 90"));
}

TEST(ReplayPlan, StartOffsetsPerPartitionOthersFromTheEarliest) {
  LogReplay range;
  range.from_offsets = {{1, 30}, {2, 500}};
  const auto plan = plan_replay(range, {facts(0, 5, 100), facts(1, 0, 100), facts(2, 0, 100)}, "t");
  EXPECT_EQ(plan.error, "");
  EXPECT_EQ(plan.partitions[0].start, 5);
  EXPECT_EQ(plan.partitions[1].start, 30);
  EXPECT_EQ(plan.partitions[2].start, 100) << "past the end: nothing to read";
  range.from_offsets = {{0, 2}};
  EXPECT_THAT(plan_replay(range, {facts(0, 5, 100)}, "t").error,
              HasSubstr("partition 0: offset 2 was asked for, but the log starts at offset 5"));
}

TEST(ReplayPlan, TimesAreWrittenInUtc) { EXPECT_EQ(utc_text(1796558400250), "2026-12-06T12:00:00.250Z"); }

}  // namespace
}  // namespace nudge::plugins::kafka
