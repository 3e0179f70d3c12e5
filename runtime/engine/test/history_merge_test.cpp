#include "engine/history_merge.hpp"

#include <gtest/gtest.h>

namespace nudge::runtime {
namespace {

/// Messages with ids 1..n in id order (the id's last byte).
MessagePtr msg(std::uint8_t n) {
  std::array<std::uint8_t, 16> bytes{};
  bytes[15] = n;
  auto m = std::make_shared<Message>();
  m->id = MessageId(bytes);
  m->room = "r";
  return m;
}

std::vector<int> ids(const std::vector<MessagePtr>& v) {
  std::vector<int> out;
  for (const auto& m : v) out.push_back(m->id.bytes()[15]);
  return out;
}

std::vector<MessagePtr> range(int from, int to) {
  std::vector<MessagePtr> v;
  for (int i = from; i <= to; ++i) v.push_back(msg(static_cast<std::uint8_t>(i)));
  return v;
}

HistoryQuery query(std::size_t limit, std::optional<int> after = std::nullopt) {
  HistoryQuery q;
  q.room = "r";
  q.limit = limit;
  if (after) q.after = msg(static_cast<std::uint8_t>(*after))->id;
  return q;
}

TEST(HistoryMerge, WindowHoldingTheLastSeenIdAnswersAlone) {
  const auto window = range(10, 20);
  const auto answer = answer_from_window(query(100, 14), window);
  ASSERT_TRUE(answer);
  EXPECT_EQ(ids(*answer), (std::vector<int>{15, 16, 17, 18, 19, 20}));
  // Caught up: an empty answer, not a trip to the sink.
  ASSERT_TRUE(answer_from_window(query(100, 20), window));
  EXPECT_TRUE(answer_from_window(query(100, 20), window)->empty());
  // Paged: the first `limit` after the id.
  EXPECT_EQ(ids(*answer_from_window(query(2, 14), window)), (std::vector<int>{15, 16}));
}

TEST(HistoryMerge, WindowNotReachingBackDefersToTheSink) {
  const auto window = range(10, 20);
  EXPECT_FALSE(answer_from_window(query(100, 5), window));  // older than the window
  EXPECT_FALSE(answer_from_window(query(30), window));      // fewer than asked for
  EXPECT_EQ(ids(*answer_from_window(query(3), window)), (std::vector<int>{18, 19, 20}));
}

TEST(HistoryMerge, SinkAnswerIsCompletedByTheWindowWithoutDuplicates) {
  // The sink has written up to 12; the window holds 10..15.
  const auto merged = merge_history(query(100, 8), range(9, 12), range(10, 15));
  EXPECT_EQ(ids(merged), (std::vector<int>{9, 10, 11, 12, 13, 14, 15}));
}

TEST(HistoryMerge, LastNTakesTheNewestAndCatchingUpTheOldest) {
  EXPECT_EQ(ids(merge_history(query(3), range(1, 5), range(4, 7))), (std::vector<int>{5, 6, 7}));
  EXPECT_EQ(ids(merge_history(query(3, 2), range(3, 5), range(4, 7))), (std::vector<int>{3, 4, 5}));
}

TEST(HistoryMerge, OrdersByIdWhateverTheInputOrder) {
  std::vector<MessagePtr> shuffled{msg(5), msg(3), msg(4)};
  EXPECT_EQ(ids(merge_history(query(10), shuffled, {})), (std::vector<int>{3, 4, 5}));
}

}  // namespace
}  // namespace nudge::runtime
