#include "options.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "url.hpp"

namespace nudge::bench {
namespace {

Options parse(std::vector<const char*> args) {
  args.insert(args.begin(), "nudge-bench");
  return parse_options(static_cast<int>(args.size()), args.data());
}

TEST(Options, Defaults) {
  const Options o = parse({});
  EXPECT_EQ(o.mode, Options::Mode::run);
  EXPECT_EQ(o.protocol, Protocol::nudge);
  EXPECT_EQ(o.connections, 100u);
  EXPECT_EQ(o.threads, 1u);
  EXPECT_FALSE(o.calibration_file.empty());
}

TEST(Options, ParsesValuesInBothSpellings) {
  const Options o = parse({"--url",
                           "ws://127.0.0.1:8081/ws",
                           "--url=ws://127.0.0.1:8082/ws",
                           "--connections=200",
                           "--rooms",
                           "10",
                           "--senders",
                           "20",
                           "--rate",
                           "100",
                           "--duration",
                           "10s",
                           "--warmup=500ms",
                           "--protocol",
                           "socketio",
                           "--socketio-ack",
                           "--watch-pid",
                           "1",
                           "--watch-pid",
                           "2"});
  EXPECT_EQ(o.urls.size(), 2u);
  EXPECT_EQ(o.connections, 200u);
  EXPECT_EQ(o.rooms, 10u);
  EXPECT_EQ(o.senders, 20u);
  EXPECT_EQ(o.rate, 100.0);
  EXPECT_EQ(o.duration, std::chrono::seconds(10));
  EXPECT_EQ(o.warmup, std::chrono::milliseconds(500));
  EXPECT_EQ(o.protocol, Protocol::socket_io);
  EXPECT_TRUE(o.socketio_ack);
  EXPECT_EQ(o.watch_pids, (std::vector<int>{1, 2}));
  EXPECT_TRUE(o.was_given("--rooms"));
  EXPECT_FALSE(o.was_given("--threads"));
}

TEST(Options, ReportsEveryErrorAtOnce) {
  try {
    parse({"--connections", "0", "--rate", "fast", "--bogus", "--protocol", "mqtt", "--threads"});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("--connections"), std::string::npos) << what;
    EXPECT_NE(what.find("--rate"), std::string::npos) << what;
    EXPECT_NE(what.find("unknown option '--bogus'"), std::string::npos) << what;
    EXPECT_NE(what.find("--protocol"), std::string::npos) << what;
    EXPECT_NE(what.find("--threads: needs a value"), std::string::npos) << what;
  }
  EXPECT_THROW(parse({"--connections", "10", "--senders", "11"}), std::invalid_argument);
  EXPECT_THROW(parse({"--connections", "10", "--rooms", "11"}), std::invalid_argument);
}

TEST(Options, Durations) {
  EXPECT_EQ(parse_duration("2"), std::chrono::seconds(2));
  EXPECT_EQ(parse_duration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_duration("40us"), std::chrono::microseconds(40));
  EXPECT_EQ(parse_duration("2m"), std::chrono::minutes(2));
  EXPECT_THROW(parse_duration("-1s"), std::invalid_argument);
  EXPECT_THROW(parse_duration("soon"), std::invalid_argument);
}

TEST(Url, Parses) {
  Url u = Url::parse("ws://127.0.0.1:8081/ws");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8081);
  EXPECT_EQ(u.target, "/ws");
  u = Url::parse("http://localhost:8000");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.target, "/");
  u = Url::parse("ws://[::1]:9000/socket.io/?EIO=4&transport=websocket");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.host_header(), "[::1]:9000");
  EXPECT_EQ(u.target, "/socket.io/?EIO=4&transport=websocket");
  EXPECT_EQ(Url::parse("ws://h").port, 80);
  EXPECT_THROW(Url::parse("wss://h/ws"), std::invalid_argument);
  EXPECT_THROW(Url::parse("tcp://h"), std::invalid_argument);
  EXPECT_THROW(Url::parse("ws://h:0/"), std::invalid_argument);
  EXPECT_THROW(Url::parse("ws://:80/"), std::invalid_argument);
}

}  // namespace
}  // namespace nudge::bench
