// The websocket source as the runtime runs it: the built plugin library
// loaded through its descriptor, real WebSocket clients connected to it, and
// Plugin::reconfigure / Plugin::readiness called on the open source.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/dll/shared_library.hpp>

#include "nudge/sdk/export.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::websocket {
namespace {

namespace beast = boost::beast;
namespace ws = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using namespace std::chrono_literals;

/// The pipeline as the source sees it: every message is durable at once.
class AckingIngress final : public Ingress {
 public:
  explicit AckingIngress(boost::asio::io_context& io) : io_(io) {}
  void publish(MessagePtr message, Completion on_durable) override {
    published.push_back(message);
    boost::asio::post(io_, [done = std::move(on_durable)] { done(Status::success()); });
  }
  void when_ready(std::function<void()> resume) override { boost::asio::post(io_, std::move(resume)); }
  void set_room_interest(std::string_view, bool) override {}
  bool has_history() const override { return false; }
  void read_history(HistoryQuery, HistoryHandler done) override {
    boost::asio::post(
        io_, [done = std::move(done)] { done(Status::error(StatusCode::unavailable, "no history here"), {}); });
  }
  std::vector<MessagePtr> published;

 private:
  boost::asio::io_context& io_;
};

/// A blocking WebSocket client of its own (its calls run on a thread of the
/// test while the test's loop runs the source); reads give up after 5 s.
class Client {
 public:
  void connect(std::uint16_t port) {
    ws_.next_layer().connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    timeval limit{5, 0};
    ::setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ws_.handshake("127.0.0.1:" + std::to_string(port), "/ws");
  }
  void send(const std::string& text) { ws_.write(boost::asio::buffer(text)); }
  /// The next text frame, or "closed <code>" / "error <what>".
  std::string read() {
    beast::flat_buffer buffer;
    beast::error_code ec;
    ws_.read(buffer, ec);
    if (ec == ws::error::closed) return "closed " + std::to_string(ws_.reason().code);
    if (ec) return "error " + ec.message();
    return beast::buffers_to_string(buffer.data());
  }
  /// Frames until one contains `part` (kept in `seen`); false after 20 others.
  bool read_until(const std::string& part, std::vector<std::string>& seen) {
    for (int i = 0; i < 20; ++i) {
      seen.push_back(read());
      if (seen.back().find(part) != std::string::npos) return true;
      if (seen.back().starts_with("closed") || seen.back().starts_with("error")) return false;
    }
    return false;
  }
  bool is_open() const { return ws_.is_open(); }

 private:
  boost::asio::io_context io_;
  ws::stream<tcp::socket> ws_{io_};
};

std::string send_frame(const std::string& room, const std::string& text, const std::string& ref) {
  return R"({"type":"send","room":")" + room + R"(","text":")" + text + R"(","ref":")" + ref + R"("})";
}

std::string join_frame(const std::string& room) { return R"({"type":"join","room":")" + room + R"("})"; }

/// Sends a join and waits for the server's "joined".
void join(Client& client, const std::string& room) {
  std::vector<std::string> seen;
  client.send(join_frame(room));
  EXPECT_TRUE(client.read_until(R"("joined")", seen)) << room;
}

class WebSocketReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    library_.load(NUDGE_WEBSOCKET_PLUGIN_FILE, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    descriptor_ = library_.get_alias<const PluginDescriptor*()>("nudge_plugin_descriptor")();
    ASSERT_EQ(descriptor_->abi_version, kAbiVersion);
    ASSERT_EQ(descriptor_->kind, PluginKind::source);
  }
  void TearDown() override {
    if (source_) {
      bool stopped = false;
      source_->stop([&] { stopped = true; });
      EXPECT_TRUE(testing::run_until(
          io_, [&] { return stopped; }, 5s));
      source_.reset();
    }
  }

  Config config(std::map<std::string, ConfigValue> values) {
    values.emplace("listen", std::string("127.0.0.1:0"));
    return testing::make_config(descriptor_->schema(), values);
  }

  /// Creates and starts the source; returns the port it listens on.
  std::uint16_t start(const Config& c) {
    std::string error;
    Plugin* made = descriptor_->create(c, context_, &error);
    EXPECT_NE(made, nullptr) << error;
    source_.reset(static_cast<Source*>(made));
    const auto status = source_->start(ingress_);
    EXPECT_TRUE(status.ok()) << status.message();
    // The source logs where it listens; its port is not on the interface.
    const std::regex listening(R"(listening on ws://127\.0\.0\.1:([0-9]+)/ws)");
    for (const auto& [level, line] : context_.logger().lines()) {
      std::smatch m;
      if (std::regex_search(line, m, listening)) return static_cast<std::uint16_t>(std::stoi(m[1]));
    }
    ADD_FAILURE() << "no 'listening on' line";
    return 0;
  }

  /// Runs `work` on a thread of its own while the loop runs the source.
  template <class Work>
  auto on_client(Work work) {
    auto future = std::async(std::launch::async, std::move(work));
    EXPECT_TRUE(testing::run_until(
        io_, [&] { return future.wait_for(0s) == std::future_status::ready; }, 20s))
        << "the client did not finish";
    return future.get();
  }

  boost::dll::shared_library library_;
  const PluginDescriptor* descriptor_ = nullptr;
  boost::asio::io_context io_;
  testing::TestContext context_{io_, "source.websocket"};
  AckingIngress ingress_{io_};
  std::unique_ptr<Source> source_;
};

TEST_F(WebSocketReloadTest, DeclaresTheLimitsLiveAndListenTlsAndPathsNot) {
  const auto schema = descriptor_->schema();
  for (const auto* key :
       {"max_message_bytes", "max_connections", "handshake_timeout_ms", "idle_timeout_ms", "max_send_queue",
        "rate_limit_per_second", "rate_limit_burst", "rate_limit_strikes", "max_connections_per_address",
        "allowed_origins", "history_messages", "catch_up_max_messages"})
    EXPECT_TRUE(schema.find(key)->live) << key;
  for (const auto* key : {"listen", "path", "socketio_path", "static_dir", "tls_cert_file", "tls_key_file",
                          "auth_jwt_secret", "resend_window_ms", "ping_interval_ms"})
    EXPECT_FALSE(schema.find(key)->live) << key;
}

TEST_F(WebSocketReloadTest, ReadyOnceListeningAndCountsRoomsWithLocalClients) {
  std::string error;
  std::unique_ptr<Plugin> idle(descriptor_->create(config({}), context_, &error));
  ASSERT_TRUE(idle) << error;
  EXPECT_FALSE(idle->readiness().ready) << "not listening before start()";

  const auto port = start(config({}));
  ASSERT_NE(port, 0);
  EXPECT_TRUE(source_->readiness().ready) << source_->readiness().reason;
  auto& metrics = context_.metrics();
  EXPECT_EQ(metrics.gauge_value("rooms"), 0);

  Client a, b;
  on_client([&] {
    a.connect(port);
    b.connect(port);
    join(a, "general");
    join(b, "general");
    join(b, "random");
    return 0;
  });
  EXPECT_EQ(metrics.gauge_value("rooms"), 2) << "general (a, b) and random (b)";
  EXPECT_EQ(metrics.gauge_value("connections_open"), 2);
  on_client([&] {
    b.send(R"({"type":"leave","room":"random"})");
    a.send(R"({"type":"leave","room":"general"})");
    std::this_thread::sleep_for(100ms);
    return 0;
  });
  testing::run_for(io_, 50ms);
  EXPECT_EQ(metrics.gauge_value("rooms"), 1) << "general keeps b";

  source_->stop_intake();
  EXPECT_FALSE(source_->readiness().ready) << "not ready once intake stopped";
}

TEST_F(WebSocketReloadTest, AConnectionOpenBeforeAReloadGetsTheNewLimitsAndStaysOpen) {
  const auto port = start(config({{"max_message_bytes", std::int64_t{256}}}));
  ASSERT_NE(port, 0);
  Client a, b;
  on_client([&] {
    a.connect(port);
    b.connect(port);
    join(a, "general");
    join(b, "general");
    return 0;
  });

  // Larger frames, a much lower rate: 3 frames at once, then one per 2 s.
  const Status applied = source_->reconfigure(config({{"max_message_bytes", std::int64_t{4096}},
                                                      {"rate_limit_per_second", 0.5},
                                                      {"rate_limit_burst", std::int64_t{3}},
                                                      {"rate_limit_strikes", std::int64_t{100}}}));
  ASSERT_TRUE(applied.ok()) << applied.message();

  const std::string big(1000, 'x');  // over the old 256-byte limit
  const auto after = on_client([&] {
    std::vector<std::string> seen;
    a.send(send_frame("general", big, "r1"));
    const bool acked = a.read_until(R"("ref":"r1")", seen);
    // The bucket held ~99 tokens, capped to the new burst of 3: r1 took one.
    a.send(send_frame("general", "two", "r2"));
    a.send(send_frame("general", "three", "r3"));
    a.send(send_frame("general", "four", "r4"));
    const bool limited = a.read_until("rate_limited", seen);
    return std::make_tuple(acked, limited, seen);
  });
  const auto& [acked, limited, seen] = after;
  std::string all;
  for (const auto& frame : seen) all += frame + "\n";
  EXPECT_TRUE(acked) << "a 1000-byte frame passes the new 4096-byte limit on a connection opened under 256\n" << all;
  EXPECT_NE(all.find(R"("type":"ack","ref":"r1")"), std::string::npos) << all;
  EXPECT_TRUE(limited) << "the fourth frame finds the new burst of 3 spent\n" << all;
  ASSERT_FALSE(ingress_.published.empty());
  EXPECT_EQ(ingress_.published.front()->payload, big);
  EXPECT_EQ(context_.metrics().value("frames_rate_limited"), 1u);

  // Still open: a token comes back after 2 s at 0.5/s.
  const auto later = on_client([&] {
    std::this_thread::sleep_for(2100ms);
    std::vector<std::string> seen2;
    a.send(send_frame("general", "five", "r5"));
    return a.read_until(R"("ref":"r5")", seen2) && a.is_open();
  });
  EXPECT_TRUE(later) << "the connection stays open and refills at the new rate";

  // A lower limit applies too: b's 1000-byte frame is now too big.
  ASSERT_TRUE(source_
                  ->reconfigure(config({{"max_message_bytes", std::int64_t{512}},
                                        {"rate_limit_per_second", 0.5},
                                        {"rate_limit_burst", std::int64_t{3}},
                                        {"rate_limit_strikes", std::int64_t{100}}}))
                  .ok());
  const auto closed = on_client([&] {
    b.send(send_frame("general", big, "b1"));
    std::vector<std::string> seen3;
    b.read_until("never", seen3);
    return seen3.back();
  });
  EXPECT_EQ(closed, "closed 1009") << "over the new 512-byte limit";
  EXPECT_EQ(context_.metrics().gauge_value("connections_open"), 1) << "a is still connected";
}

TEST_F(WebSocketReloadTest, ARestartOnlyKeyIsRefusedAndNothingChanges) {
  const auto port = start(config({{"max_message_bytes", std::int64_t{256}}}));
  ASSERT_NE(port, 0);
  const Status refused =
      source_->reconfigure(config({{"max_message_bytes", std::int64_t{4096}}, {"path", std::string("/chat")}}));
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("path"), std::string::npos) << refused.message();

  Client a;
  const auto result = on_client([&] {
    a.connect(port);  // still at /ws
    std::vector<std::string> seen;
    a.send(join_frame("general"));
    EXPECT_TRUE(a.read_until(R"("joined")", seen));
    a.send(send_frame("general", std::string(1000, 'x'), "r1"));
    a.read_until("never", seen);
    return seen.back();
  });
  EXPECT_EQ(result, "closed 1009") << "the old 256-byte limit is still in force";
}

}  // namespace
}  // namespace nudge::plugins::websocket
