#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "in_flight_window.hpp"

namespace nudge::runtime {
namespace {

/// Runs what is ready. An io_context that ran out of work stays stopped until restarted.
void poll(boost::asio::io_context& io) {
  io.restart();
  io.poll();
}

TEST(InFlightWindow, ReadersWaitWhileFullAndResumeWhenRoomFrees) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 2);
  int resumed = 0;

  window.acquire();
  window.when_ready([&] { ++resumed; });  // room left: resumes at once (posted)
  poll(io);
  EXPECT_EQ(resumed, 1);

  window.acquire();
  EXPECT_FALSE(window.has_room());
  window.when_ready([&] { ++resumed; });
  window.when_ready([&] { ++resumed; });
  poll(io);
  EXPECT_EQ(resumed, 1) << "a full window must hold readers back";
  EXPECT_EQ(window.waiting(), 2u);

  window.release();
  poll(io);
  EXPECT_EQ(resumed, 3) << "every waiting reader resumes once there is room";
  EXPECT_EQ(window.waiting(), 0u);
}

TEST(InFlightWindow, NeverResumesInlineSoCallersCannotRecurse) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 1);
  bool resumed = false;
  window.when_ready([&] { resumed = true; });
  EXPECT_FALSE(resumed);
  poll(io);
  EXPECT_TRUE(resumed);
}

TEST(InFlightWindow, DrainWaitersRunOnceNothingIsInFlight) {
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 10);
  bool drained = false;
  window.acquire();
  window.acquire();
  window.when_empty([&] { drained = true; });
  window.release();
  poll(io);
  EXPECT_FALSE(drained);
  window.release();
  poll(io);
  EXPECT_TRUE(drained);
  EXPECT_EQ(window.in_flight(), 0u);
}

TEST(InFlightWindow, BoundsABurstOfPublishersToCapacityPlusWaiters) {
  // Simulates 100 clients each sending as fast as the window allows, while
  // the durable stage confirms one message per turn of the loop.
  boost::asio::io_context io;
  InFlightWindow window(io.get_executor(), 8);
  std::size_t peak = 0;
  int sent = 0;
  std::function<void()> client = [&] {
    if (sent >= 1000) return;
    ++sent;
    window.acquire();
    peak = std::max(peak, window.in_flight());
    window.when_ready(client);
  };
  for (int c = 0; c < 100; ++c) window.when_ready(client);
  while (sent < 1000 || window.in_flight() > 0) {
    poll(io);
    if (window.in_flight() > 0) window.release();
  }
  EXPECT_EQ(sent, 1000);
  EXPECT_LE(peak, 8u + 100u) << "in flight may exceed capacity by one per waiting reader, no more";
}

}  // namespace
}  // namespace nudge::runtime
