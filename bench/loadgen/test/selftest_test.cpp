// nudge-bench against its own discard server, in process: the whole path
// (connect, join, scheduled sends, deliveries, acks, accounting) on loopback.
#include <gtest/gtest.h>

#include <thread>

#include <boost/asio/executor_work_guard.hpp>

#include "discard_server.hpp"
#include "load_run.hpp"
#include "report.hpp"

namespace nudge::bench {
namespace {

namespace asio = boost::asio;

class SelfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.emplace(ioc_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    server_->start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    server_->stop();
    guard_.reset();
    ioc_.stop();
    thread_.join();
  }
  Options shape(Protocol protocol) {
    Options o;
    o.protocol = protocol;
    o.urls = {"ws://127.0.0.1:" + std::to_string(server_->port()) +
              (protocol == Protocol::kNudge ? "/ws" : "/socket.io/")};
    o.connections = 24;
    o.rooms = 3;
    o.senders = 6;
    o.rate = 300;
    o.duration = std::chrono::milliseconds(1000);
    o.warmup = std::chrono::milliseconds(300);
    o.drain = std::chrono::seconds(3);
    o.threads = 2;
    return o;
  }

  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_{ioc_.get_executor()};
  std::optional<DiscardServer> server_;
  std::thread thread_;
};

TEST_F(SelfTest, NudgeProtocolEveryMessageReachesEveryMemberOfItsRoomOnce) {
  const RunResult r = run_load(shape(Protocol::kNudge));
  EXPECT_EQ(r.connections_open, 24u);
  EXPECT_EQ(r.connect_failures, 0u);
  // 300 msg/s for 1 s, each to the 8 members of its room.
  EXPECT_NEAR(static_cast<double>(r.sent_window), 300, 3);
  EXPECT_EQ(r.expected_window, r.sent_window * 8);
  EXPECT_EQ(r.deliveries_window, r.expected_window);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(r.reordered, 0u);
  EXPECT_EQ(r.misrouted, 0u);
  EXPECT_EQ(r.acks_window, r.sent_window);
  EXPECT_EQ(r.unanswered, 0u);
  EXPECT_EQ(r.delivery.count(), r.deliveries_window);
  EXPECT_GT(r.delivery.value_at_percentile(50), 0);
  EXPECT_LT(r.delivery.value_at_percentile(50), 1'000'000'000);
  EXPECT_TRUE(r.senders_kept_up());
  EXPECT_NE(to_json(r).find("\"deliveries\": " + std::to_string(r.deliveries_window)), std::string::npos);
}

TEST_F(SelfTest, SocketIoProtocolWithAcks) {
  Options o = shape(Protocol::kSocketIo);
  o.socketio_ack = true;
  const RunResult r = run_load(o);
  EXPECT_EQ(r.connections_open, 24u);
  EXPECT_EQ(r.expected_window, r.sent_window * 8);
  EXPECT_EQ(r.deliveries_window, r.expected_window);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.acks_window, r.sent_window);
}

TEST_F(SelfTest, RoomsSpanTheUrlsAndEveryFrameReadCountsTowardTheCeiling) {
  Options o = shape(Protocol::kNudge);
  // Two URLs to the one server stand for two instances: each room of 8 has 4 members on each,
  // so a message reaches 4 members on the sender's instance (itself included) and 4 on the other.
  o.urls.push_back(o.urls.front());
  o.ceiling = 1;  // any reading is over it
  const RunResult r = run_load(o);
  EXPECT_EQ(r.deliveries_window, r.expected_window);
  EXPECT_EQ(r.cross_instance_window * 2, r.deliveries_window);
  EXPECT_DOUBLE_EQ(r.cross_instance_share(), 0.5);
  // Deliveries and acks at least; the sender's own message and every ack are frames the generator reads.
  EXPECT_GE(r.frames_window, r.deliveries_window + r.acks_window - r.acks_window / 50);
  EXPECT_GT(r.ceiling_share(), kCeilingShare);
  EXPECT_NE(to_json(r).find("\"cross_instance_share\": 0.5"), std::string::npos);
}

TEST_F(SelfTest, ConnectionsToNowhereAreCountedAsFailures) {
  Options o = shape(Protocol::kNudge);
  // A port nobody listens on: bind one, then close it.
  asio::io_context ioc;
  asio::ip::tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = a.local_endpoint().port();
  a.close();
  o.urls = {"ws://127.0.0.1:" + std::to_string(port) + "/ws"};
  o.connections = 5;
  o.rooms = 1;
  o.senders = 1;
  const RunResult r = run_load(o);
  EXPECT_EQ(r.connections_open, 0u);
  EXPECT_EQ(r.connect_failures, 5u);
  EXPECT_EQ(r.sent_window, 0u);
}

}  // namespace
}  // namespace nudge::bench
