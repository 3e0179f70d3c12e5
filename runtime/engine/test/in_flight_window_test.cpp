#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "engine/in_flight_window.hpp"

namespace nudge::runtime {
namespace {

/// Runs what is ready. An io_context that ran out of work stays stopped until restarted.
void poll(boost::asio::io_context& io) {
  io.restart();
  io.poll();
}

TEST(InFlightWindow, ReadersWaitWhileFullAndResumeWhenRoomFrees) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 2, 1 << 20);
  int resumed = 0;

  window.acquire(100);
  window.when_ready([&] { ++resumed; });  // room left: resumes at once (posted)
  poll(io);
  EXPECT_EQ(resumed, 1);

  window.acquire(100);
  EXPECT_FALSE(window.has_room());
  window.when_ready([&] { ++resumed; });
  window.when_ready([&] { ++resumed; });
  poll(io);
  EXPECT_EQ(resumed, 1) << "a full window must hold readers back";
  EXPECT_EQ(window.waiting(), 2u);

  window.release(100);
  poll(io);
  EXPECT_EQ(resumed, 3) << "every waiting reader resumes once there is room";
  EXPECT_EQ(window.waiting(), 0u);
}

TEST(InFlightWindow, NeverResumesInlineSoCallersCannotRecurse) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 1, 1 << 20);
  bool resumed = false;
  window.when_ready([&] { resumed = true; });
  EXPECT_FALSE(resumed);
  poll(io);
  EXPECT_TRUE(resumed);
}

TEST(InFlightWindow, DrainWaitersRunOnceNothingIsInFlight) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 10, 1 << 20);
  bool drained = false;
  window.acquire(100);
  window.acquire(100);
  window.when_empty([&] { drained = true; });
  window.release(100);
  poll(io);
  EXPECT_FALSE(drained);
  window.release(100);
  poll(io);
  EXPECT_TRUE(drained);
  EXPECT_EQ(window.in_flight(), 0u);
}

TEST(InFlightWindow, BoundsABurstOfPublishersToCapacityPlusWaiters) {
  // Simulates 100 clients each sending as fast as the window allows, while
  // the durable stage confirms one message per turn of the loop.
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 8, 1 << 20);
  std::size_t peak = 0;
  int sent = 0;
  std::function<void()> client = [&] {
    if (sent >= 1000) return;
    ++sent;
    window.acquire(100);
    peak = std::max(peak, window.in_flight());
    window.when_ready(client);
  };
  for (int c = 0; c < 100; ++c) window.when_ready(client);
  while (sent < 1000 || window.in_flight() > 0) {
    poll(io);
    if (window.in_flight() > 0) window.release(100);
  }
  EXPECT_EQ(sent, 1000);
  EXPECT_LE(peak, 8u + 100u) << "in flight may exceed capacity by one per waiting reader, no more";
}

TEST(InFlightWindow, ReadersWaitOnceTheBytesReachTheirBoundWhateverTheCount) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 1000, 300);
  int resumed = 0;
  window.acquire(100);
  window.acquire(100);
  EXPECT_TRUE(window.has_room()) << "200 of 300 bytes";
  window.acquire(100);
  EXPECT_FALSE(window.has_room()) << "300 of 300 bytes, 3 of 1000 messages";
  EXPECT_EQ(window.bytes_in_flight(), 300u);
  window.when_ready([&] { ++resumed; });
  poll(io);
  EXPECT_EQ(resumed, 0) << "the byte bound must hold readers back";
  window.release(100);
  poll(io);
  EXPECT_EQ(resumed, 1) << "freed bytes resume the reader";
  EXPECT_EQ(window.bytes_in_flight(), 200u);
}

TEST(InFlightWindow, AMessageLargerThanTheByteBoundGoesThroughAlone) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 1000, 300);
  int resumed = 0;
  window.when_ready([&] { ++resumed; });
  poll(io);
  EXPECT_EQ(resumed, 1) << "nothing in flight: room for any message";
  window.acquire(5000);
  window.when_ready([&] { ++resumed; });
  poll(io);
  EXPECT_EQ(resumed, 1) << "nothing else goes beside it";
  window.release(5000);
  poll(io);
  EXPECT_EQ(resumed, 2) << "and the pipeline does not stall behind it";
  EXPECT_EQ(window.bytes_in_flight(), 0u);
  EXPECT_EQ(window.in_flight(), 0u);
}

TEST(InFlightWindow, ARaisedBoundResumesWaitingReadersAndALoweredOneHoldsThem) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 10, 1000);
  int resumed = 0;
  window.acquire(600);
  window.set_capacity(10, 500);  // a reload lowers the byte bound under what is in flight
  window.when_ready([&] { ++resumed; });
  poll(io);
  EXPECT_EQ(resumed, 0);
  window.set_capacity(10, 2000);
  poll(io);
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(window.byte_capacity(), 2000u);
}

TEST(InFlightWindow, AMessageCountsItsBytesAndAFixedOverhead) {
  Message empty;
  EXPECT_EQ(in_flight_bytes(empty), kInFlightMessageOverhead) << "a flood of empty messages is bounded too";
  Message m;
  m.room = "room";
  m.sender = "alice";
  m.origin = "web-1";
  m.payload = std::string(1000, 'x');
  m.headers = {{"k", "vv"}};
  EXPECT_EQ(in_flight_bytes(m), kInFlightMessageOverhead + 4 + 5 + 5 + 1000 + kInFlightHeaderOverhead + 3);
}

}  // namespace
}  // namespace nudge::runtime
