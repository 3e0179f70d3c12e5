// nudge-bench against its own discard server, in process: the whole path
// (connect, join, scheduled sends, deliveries, acks, accounting) on loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include <boost/asio/write.hpp>

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
              (protocol == Protocol::nudge ? "/ws" : "/socket.io/")};
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
  const RunResult r = run_load(shape(Protocol::nudge));
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
  Options o = shape(Protocol::socket_io);
  o.socketio_ack = true;
  const RunResult r = run_load(o);
  EXPECT_EQ(r.connections_open, 24u);
  EXPECT_EQ(r.expected_window, r.sent_window * 8);
  EXPECT_EQ(r.deliveries_window, r.expected_window);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.acks_window, r.sent_window);
}

TEST_F(SelfTest, RoomsSpanTheUrlsAndEveryFrameReadCountsTowardTheCeiling) {
  Options o = shape(Protocol::nudge);
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
  Options o = shape(Protocol::nudge);
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

/// A server that answers every connection with `reply` (nothing: it closes at once), on a thread of its own.
class RawServer {
 public:
  explicit RawServer(std::string reply) : reply_(std::move(reply)) {
    thread_ = std::thread([this] {
      for (;;) {
        asio::ip::tcp::socket s(ioc_);
        boost::system::error_code ec;
        acceptor_.accept(s, ec);
        if (ec || stopping_) return;
        char request[4096];
        if (!reply_.empty()) {
          s.read_some(asio::buffer(request), ec);
          asio::write(s, asio::buffer(reply_), ec);
        }
        s.close(ec);
      }
    });
  }
  ~RawServer() {
    stopping_ = true;
    boost::system::error_code ec;
    asio::ip::tcp::socket poke(ioc_);
    poke.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/ws"; }

 private:
  std::string reply_;
  asio::io_context ioc_;
  asio::ip::tcp::acceptor acceptor_{ioc_, {asio::ip::make_address("127.0.0.1"), 0}};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

TEST_F(SelfTest, AHandshakeCutShortIsNotReportedAsAnHttpStatus) {
  // Beast presets 500 in the response before every handshake: a connection closed before any answer used to be
  // counted as "HTTP 500", as if the server had answered so.
  RawServer closes("");
  Options o = shape(Protocol::nudge);
  o.urls = {closes.url()};
  o.connections = 3;
  o.rooms = 1;
  o.senders = 1;
  const RunResult r = run_load(o);
  EXPECT_EQ(r.connect_failures, 3u);
  EXPECT_EQ(r.connect_failure_reasons.count("HTTP 500"), 0u);
  for (const auto& [reason, n] : r.connect_failure_reasons) EXPECT_EQ(reason.rfind("handshake: ", 0), 0u) << reason;
}

TEST_F(SelfTest, ADeclinedUpgradeIsReportedWithItsStatus) {
  RawServer busy("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  Options o = shape(Protocol::nudge);
  o.urls = {busy.url()};
  o.connections = 3;
  o.rooms = 1;
  o.senders = 1;
  const RunResult r = run_load(o);
  EXPECT_EQ(r.connect_failures, 3u);
  EXPECT_EQ(r.connect_failure_reasons.at("HTTP 503"), 3u);
}

}  // namespace
}  // namespace nudge::bench
