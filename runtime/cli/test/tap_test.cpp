// `nudge tap` and GET /tap: the admin endpoint streaming a TapRegistry's
// events to a real HTTP client, its bounds, and the command's output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <sstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "cli/admin_client.hpp"
#include "cli/cli.hpp"
#include "cli/tap/tap.hpp"
#include "engine/admin_server.hpp"
#include "engine/metrics.hpp"
#include "engine/tap.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

MessagePtr message(std::string room, std::string text = "hello") {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = std::move(room);
  m->sender = "alice";
  m->payload = std::move(text);
  return m;
}

class TapEndpointTest : public ::testing::Test {
 protected:
  static constexpr const char* kToken = "s3cret-admin-token-0123456789";

  void start(TapLimits limits = {}, std::string token = kToken) {
    taps_.set_limits(limits);
    AdminAccess access;
    access.token = std::move(token);
    access.max_connections = 8;
    access.request_timeout = std::chrono::seconds(5);
    AdminHandlers handlers{[this] { return metrics_.prometheus(); }, [] { return std::vector<std::string>{}; },
                           [](std::function<void(unsigned, std::string)> answer) { answer(200, ""); }, &taps_};
    server_ = std::make_unique<AdminServer>(io_, std::move(handlers), std::move(access), metrics_);
    ASSERT_TRUE(server_->start("127.0.0.1:0").ok());
    loop_ = std::thread([this] { io_.run(); });
    std::string error;
    url_ = *parse_admin_url("http://127.0.0.1:" + std::to_string(server_->port()), error);
  }
  void TearDown() override {
    if (!loop_.joinable()) return;
    boost::asio::post(io_, [this] { server_->stop(); });
    work_.reset();
    io_.stop();
    loop_.join();
  }

  /// Runs `f` on the server's loop, where the registry lives, and waits for it.
  template <class F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }
  void record(TapPoint point, const MessagePtr& m) {
    on_loop([&] {
      taps_.record(point, "stage.x", *m);
      return 0;
    });
  }
  std::size_t attached() {
    return on_loop([this] { return taps_.attached(); });
  }
  bool wait_attached(std::size_t n) {
    for (int i = 0; i < 200; ++i) {
      if (attached() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  AdminHeaders bearer(const std::string& token = kToken) { return {{"Authorization", "Bearer " + token}}; }

  /// A tap streamed on its own thread into `out`, until its limit or `stop`.
  struct Streamed {
    std::ostringstream out, err;
    tap::Printer printer{tap::Format::json, out, err};
    AdminResponse response;
    std::atomic<bool> stop{false};
    std::thread thread;
  };
  std::unique_ptr<Streamed> stream(const std::string& path, const AdminHeaders& headers) {
    auto s = std::make_unique<Streamed>();
    s->thread = std::thread([this, s = s.get(), path, headers] {
      s->response = admin_stream(
          url_, path, headers, {}, [s](std::string_view data) { s->printer.feed(data); },
          [s] { return s->stop.load(); });
    });
    return s;
  }

  MetricsRegistry metrics_;
  TapRegistry taps_{metrics_};
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ = boost::asio::make_work_guard(io_);
  std::unique_ptr<AdminServer> server_;
  std::thread loop_;
  AdminUrl url_;
};

TEST_F(TapEndpointTest, StreamsOnlyTheStagesAndRoomsAskedForAndEndsAtItsLimit) {
  start();
  auto s = stream("/tap?stage=source,sink&room=r1&limit=3", bearer());
  ASSERT_TRUE(wait_attached(1));
  for (int i = 0; i < 3; ++i) {
    record(TapPoint::source_accepted, message("r2"));
    record(TapPoint::log_appended, message("r1"));
    record(TapPoint::source_accepted, message("r1", "m" + std::to_string(i)));
  }
  s->thread.join();
  EXPECT_EQ(s->response.status, 200u);
  EXPECT_TRUE(s->response.error.empty()) << s->response.error;
  EXPECT_TRUE(s->printer.ended()) << "the endpoint said the limit was reached";
  EXPECT_EQ(s->printer.events(), 3u);
  const std::string out = s->out.str();
  EXPECT_THAT(out, HasSubstr("\"text\":\"m0\""));
  EXPECT_THAT(out, HasSubstr("\"text\":\"m2\""));
  EXPECT_THAT(out, Not(HasSubstr("\"room\":\"r2\"")));
  EXPECT_THAT(out, Not(HasSubstr("\"stage\":\"log\"")));
  EXPECT_TRUE(wait_attached(0)) << "the tap detached at its end";
}

TEST_F(TapEndpointTest, WithoutTheTokenATapIsRefusedAndWithNoTokenConfiguredTapsAreOff) {
  start();
  auto none = admin_stream(url_, "/tap", {}, {}, [](std::string_view) { FAIL() << "no event without the token"; }, {});
  EXPECT_EQ(none.status, 401u);
  EXPECT_THAT(none.body, HasSubstr("GET /tap needs the header 'Authorization: Bearer <token>'"));
  auto wrong = admin_stream(url_, "/tap", bearer("not-the-token-0123456789"), {}, [](std::string_view) {}, {});
  EXPECT_EQ(wrong.status, 401u);
  EXPECT_EQ(metrics_.snapshot()["nudge_admin_refused{reason=\"unauthorized\"}"], 2);
  auto bad = admin_stream(url_, "/tap?stage=nope", bearer(), {}, [](std::string_view) {}, {});
  EXPECT_EQ(bad.status, 400u);
  EXPECT_THAT(bad.body, HasSubstr("stage: 'nope' is not one of"));
  EXPECT_EQ(attached(), 0u);
}

TEST_F(TapEndpointTest, NoTokenConfiguredTurnsTapsOff) {
  start({}, "");
  auto refused = admin_stream(url_, "/tap", bearer(), {}, [](std::string_view) {}, {});
  EXPECT_EQ(refused.status, 403u);
  EXPECT_THAT(refused.body, HasSubstr("GET /tap is turned off because no admin token is configured"));
  EXPECT_EQ(metrics_.snapshot()["nudge_admin_refused{reason=\"tap_disabled\"}"], 1);
}

TEST_F(TapEndpointTest, ATapPastMaxTapsIsRefusedWith429AndOneDetachingMakesRoom) {
  TapLimits limits;
  limits.max_taps = 1;
  start(limits);
  auto first = stream("/tap", bearer());
  ASSERT_TRUE(wait_attached(1));
  auto second = admin_stream(url_, "/tap", bearer(), {}, [](std::string_view) {}, {});
  EXPECT_EQ(second.status, 429u);
  EXPECT_THAT(second.body, HasSubstr("1 taps are attached already (admin.max_taps = 1)"));
  EXPECT_EQ(metrics_.snapshot()["nudge_admin_refused{reason=\"max_taps\"}"], 1);
  // The client going away detaches its tap, which makes room.
  first->stop = true;
  first->thread.join();
  EXPECT_EQ(first->response.error, "cancelled");
  EXPECT_TRUE(wait_attached(0)) << "a client that went away left its tap attached";
  auto third = stream("/tap?limit=1", bearer());
  ASSERT_TRUE(wait_attached(1));
  record(TapPoint::sink_written, message("r1"));
  third->thread.join();
  EXPECT_EQ(third->printer.events(), 1u);
}

TEST_F(TapEndpointTest, ATapperThatNeverReadsMissesEventsAndRecordingNeverWaitsForIt) {
  TapLimits limits;
  limits.queue_bytes = 16 * 1024;
  limits.events_per_second = 1000000;
  start(limits);
  boost::asio::io_context client;
  boost::asio::ip::tcp::socket reader(client);
  reader.open(boost::asio::ip::tcp::v4());
  reader.set_option(boost::asio::socket_base::receive_buffer_size(4096));
  reader.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  boost::asio::write(reader,
                     boost::asio::buffer("GET /tap?max_text=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                                         std::string(kToken) + "\r\n\r\n"));
  ASSERT_TRUE(wait_attached(1));
  // Never read: 2,000 events of 1 KiB are ~2 MB, far past the socket buffers and the queue.
  const std::string text(1024, 'x');
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i)
    on_loop([&] {
      for (int k = 0; k < 100; ++k) taps_.record(TapPoint::source_accepted, "source.x", *message("r1", text));
      return 0;
    });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto missed = metrics_.snapshot()["nudge_admin_tap_missed{reason=\"queue_full\"}"];
  const auto sent = metrics_.snapshot()["nudge_admin_tap_events"];
  EXPECT_GT(missed, 1000) << "a tapper that never reads misses events";
  EXPECT_EQ(missed + sent, 2000);
  EXPECT_LT(seconds, 5.0) << "recording waited for the tapper";
  std::printf("[ figures  ] a tapper that never reads: %lld of 2000 events queued, %lld missed\n",
              static_cast<long long>(sent), static_cast<long long>(missed));
}

TEST(TapPrinter, EventsGoToStdoutWholeAcrossPiecesAndNoticesToStderr) {
  std::ostringstream out, err;
  tap::Printer printer(tap::Format::json, out, err);
  printer.feed("{\"time\":\"2026-12-06T14:40:49.123Z\",\"stage\":\"source\",\"point\":\"acc");
  printer.feed("epted\",\"room\":\"r1\",\"sender\":\"al\",\"text\":\"hi\"}\n\n{\"notice\":\"missed\",\"missed\":5,");
  printer.feed("\"queue_full\":4,\"over_rate\":1}\n");
  EXPECT_EQ(out.str(),
            "{\"time\":\"2026-12-06T14:40:49.123Z\",\"stage\":\"source\",\"point\":\"accepted\",\"room\":\"r1\","
            "\"sender\":\"al\",\"text\":\"hi\"}\n");
  EXPECT_EQ(err.str(), "nudge tap: missed 5 events so far (queue full 4, over the rate 1)\n");
  EXPECT_EQ(printer.events(), 1u);
  EXPECT_EQ(printer.missed(), 5u);
  EXPECT_FALSE(printer.ended());
  printer.feed("{\"notice\":\"end\",\"reason\":\"limit\",\"events\":1,\"missed\":5}\n");
  EXPECT_TRUE(printer.ended());
}

TEST(TapPrinter, TheTextFormatIsOneShortLineForPeople) {
  EXPECT_EQ(tap::text_line("{\"time\":\"2026-12-06T14:40:49.123Z\",\"stage\":\"transform\",\"point\":\"rejected\","
                           "\"room\":\"r1\",\"sender\":\"alice\",\"text\":\"spam\",\"truncated\":true,"
                           "\"reason\":\"too long\"}"),
            "14:40:49.123 transform.rejected  #r1 alice: spam… (too long)");
}

TEST(CommandLine, TapTakesItsFiltersAndChecksThem) {
  auto cl = parse_command_line({"tap", "http://127.0.0.1:9101", "--stage", "source,sink", "--room", "r1", "--sample",
                                "0.5", "--limit", "10", "--max-text", "0", "--format", "text", "--token", "t"});
  EXPECT_EQ(cl.error, "");
  EXPECT_EQ(cl.command, "tap");
  EXPECT_EQ(cl.argument, "http://127.0.0.1:9101");
  EXPECT_EQ(cl.tap.stages, (std::vector<std::string>{"source", "sink"}));
  EXPECT_EQ(cl.tap.rooms, (std::vector<std::string>{"r1"}));
  EXPECT_DOUBLE_EQ(cl.tap.sample, 0.5);
  EXPECT_EQ(cl.tap.limit, 10u);
  EXPECT_EQ(cl.tap.max_text, 0);
  EXPECT_EQ(cl.tap.format, "text");
  EXPECT_EQ(cl.token, "t");
  EXPECT_EQ(parse_command_line({"tap", "--admin", "http://h:1"}).argument, "http://h:1");
  EXPECT_THAT(parse_command_line({"tap", "--stage", "sauce"}).error, HasSubstr("sauce"));
  EXPECT_THAT(parse_command_line({"tap", "--sample", "0"}).error, HasSubstr("must be a number in (0, 1]"));
  EXPECT_THAT(parse_command_line({"tap", "--format", "yaml"}).error, HasSubstr("yaml"));
  EXPECT_EQ(parse_command_line({"top", "--room", "r1"}).error, "--room is for 'nudge tap'");
}

}  // namespace
}  // namespace nudge::runtime
