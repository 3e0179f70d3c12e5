#include "frame_queue.hpp"

#include <gtest/gtest.h>

namespace nudge::plugins::websocket {
namespace {

FrameQueue::Frame frame(std::string text) { return std::make_shared<const std::string>(std::move(text)); }

TEST(FrameQueue, KeepsOrderAcrossPushesAndPops) {
  FrameQueue queue;
  EXPECT_TRUE(queue.empty());
  queue.push_back(frame("a"));
  queue.push_back(frame("b"));
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(*queue.front(), "a");
  queue.pop_front();
  queue.push_back(frame("c"));
  EXPECT_EQ(*queue.front(), "b");
  queue.pop_front();
  EXPECT_EQ(*queue.front(), "c");
  queue.pop_front();
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.size(), 0u);
}

TEST(FrameQueue, ReleasesAPoppedFrameAtOnce) {
  FrameQueue queue;
  auto shared = frame("broadcast");
  queue.push_back(shared);
  queue.push_back(frame("next"));
  EXPECT_EQ(shared.use_count(), 2);
  queue.pop_front();
  EXPECT_EQ(shared.use_count(), 1) << "a written frame must not stay referenced by the queue";
}

TEST(FrameQueue, KeepFrontLeavesTheFramesInFlight) {
  FrameQueue queue;
  for (const char* text : {"written", "x", "y", "z", "w"}) queue.push_back(frame(text));
  queue.pop_front();  // "written" is out; "x" and "y" are in flight
  queue.keep_front(2);
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(*queue.front(), "x");
  queue.pop_front();
  EXPECT_EQ(*queue.front(), "y");
  queue.pop_front();
  EXPECT_TRUE(queue.empty());
  queue.keep_front(0);  // harmless when empty
  EXPECT_TRUE(queue.empty());
  queue.push_back(frame("a"));
  queue.keep_front(0);
  EXPECT_TRUE(queue.empty());
}

TEST(FrameQueue, GatherTakesTheOldestFramesThatFit) {
  FrameQueue queue;
  for (int i = 0; i < 5; ++i) queue.push_back(frame(std::string(static_cast<std::size_t>(i + 1), 'a')));
  queue.pop_front();
  std::array<std::pair<const char*, std::size_t>, 3> buffers{};
  struct Buffer {
    Buffer() = default;
    Buffer(const char* d, std::size_t s) : data(d), size(s) {}
    const char* data = nullptr;
    std::size_t size = 0;
  };
  std::array<Buffer, 3> three;
  EXPECT_EQ(queue.gather(three), 3u);
  EXPECT_EQ(three[0].size, 2u);
  EXPECT_EQ(three[2].size, 4u);
  std::array<Buffer, 8> eight;
  EXPECT_EQ(queue.gather(eight), 4u);
  EXPECT_EQ(eight[3].size, 5u);
  EXPECT_EQ(eight[4].size, 0u);
  (void)buffers;
}

TEST(FrameQueue, ManyCyclesStayCorrect) {
  FrameQueue queue;
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 1000; ++round) {
    for (int i = 0; i < round % 37; ++i) queue.push_back(frame(std::to_string(next_in++)));
    for (int i = 0; i < round % 23 && !queue.empty(); ++i) {
      ASSERT_EQ(*queue.front(), std::to_string(next_out++));
      queue.pop_front();
    }
  }
  while (!queue.empty()) {
    ASSERT_EQ(*queue.front(), std::to_string(next_out++));
    queue.pop_front();
  }
  EXPECT_EQ(next_in, next_out);
}

TEST(FrameQueue, CountsTheBytesQueued) {
  FrameQueue queue;
  queue.push_back(frame("abc"));
  queue.push_back(frame("de"));
  EXPECT_EQ(queue.bytes(), 5u);
  queue.pop_front();
  EXPECT_EQ(queue.bytes(), 2u);
  queue.push_back(frame("fghij"));
  queue.keep_front(1);
  EXPECT_EQ(queue.bytes(), 2u);
  queue.pop_front();
  EXPECT_EQ(queue.bytes(), 0u);
}

TEST(FrameQueue, AQueuedFrameIsReplacedInPlaceUnlessItIsBeingWritten) {
  FrameQueue queue;
  queue.push_back(frame("data"));
  const auto pong = queue.push_back(frame("pong-1"));
  queue.push_back(frame("more"));
  EXPECT_TRUE(queue.replace(pong, 1, frame("pong-22")));  // "data" in flight, the pong is not
  EXPECT_EQ(queue.bytes(), 4u + 7u + 4u);
  EXPECT_FALSE(queue.replace(pong, 2, frame("pong-3"))) << "a frame being written keeps its bytes";
  queue.pop_front();
  EXPECT_EQ(*queue.front(), "pong-22");
  EXPECT_TRUE(queue.holds(pong));
  queue.pop_front();
  EXPECT_FALSE(queue.holds(pong));
  EXPECT_FALSE(queue.replace(pong, 0, frame("late"))) << "written: nothing to replace";
  queue.pop_front();
  const auto next = queue.push_back(frame("x"));
  EXPECT_NE(next, pong) << "sequence numbers are not given twice while frames are popped";
}

}  // namespace
}  // namespace nudge::plugins::websocket
