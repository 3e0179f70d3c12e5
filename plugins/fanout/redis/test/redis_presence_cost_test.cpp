// What presence costs in Redis commands, against a redis-server of this
// test's own (started on a free port, nothing saved), so its command counts
// (INFO commandstats) are this test's alone and SCRIPT FLUSH touches no one
// else. Skipped when there is no redis-server. What presence does is checked
// by the fanout conformance suite (tests/conformance).

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"
#include "redis_fanout.hpp"

namespace nudge::plugins::redis {
namespace {

using nudge::testing::make_config;
using nudge::testing::TestContext;
using std::chrono::milliseconds;

struct Events final : FanoutReceiver {
  std::vector<std::pair<std::string, PresenceEvent>> presence;
  void on_fanout_message(MessagePtr) override {}
  void on_presence(std::string_view room, const PresenceEvent& e) override { presence.emplace_back(room, e); }
  std::size_t count(PresenceChange change, const std::string& connection) const {
    return static_cast<std::size_t>(std::count_if(presence.begin(), presence.end(), [&](const auto& e) {
      return e.second.change == change && e.second.member.connection == connection;
    }));
  }
};

/// A Redis server of this test's own (redis-server on a free port, nothing
/// saved), so its command counts are this test's alone and SCRIPT FLUSH
/// touches no one else. Skipped when there is no redis-server.
class PrivateRedisPresenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/redis-server", X_OK) != 0 && ::access("/usr/local/bin/redis-server", X_OK) != 0)
      GTEST_SKIP() << "no redis-server to start";
    {
      boost::asio::io_context probe;
      boost::asio::ip::tcp::acceptor a(probe, {boost::asio::ip::make_address("127.0.0.1"), 0});
      port_ = a.local_endpoint().port();
    }
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const std::string port = std::to_string(port_);
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--loglevel", "warning", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !client_; ++i) {
      redisContext* c = redisConnect("127.0.0.1", port_);
      if (c && !c->err) client_ = c;
      else {
        if (c) redisFree(c);
        ::usleep(10000);
      }
    }
    ASSERT_NE(client_, nullptr) << "redis-server did not start on port " << port_;
  }
  void TearDown() override {
    if (client_) redisFree(client_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  Config config() {
    return make_config(RedisConfig::schema(), {{"url", "redis://127.0.0.1:" + std::to_string(port_)},
                                               {"channel", "nudge:test:presence"},
                                               {"presence_key_prefix", "nudge:test:presence:"},
                                               {"presence_ttl_ms", std::int64_t{600}},
                                               {"recent_messages", std::int64_t{0}}});
  }
  void command(const char* text) {
    auto* r = static_cast<redisReply*>(redisCommand(client_, text));
    ASSERT_NE(r, nullptr);
    freeReplyObject(r);
  }
  /// Calls of `name` (lower case) since the last CONFIG RESETSTAT.
  long long calls(const std::string& name) {
    auto* r = static_cast<redisReply*>(redisCommand(client_, "INFO commandstats"));
    if (!r || r->type != REDIS_REPLY_STRING) return -1;
    const std::string info(r->str, r->len);
    freeReplyObject(r);
    const auto at = info.find("cmdstat_" + name + ":calls=");
    if (at == std::string::npos) return 0;
    return std::stoll(info.substr(at + name.size() + 15));
  }

  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  redisContext* client_ = nullptr;
};

TEST_F(PrivateRedisPresenceTest, RoomsNobodyJoinedCostNoCommandAndCallsGoBySha) {
  boost::asio::io_context io;
  TestContext ca(io, "fanout.redis@a", "inst-a"), cb(io, "fanout.redis@b", "inst-b");
  RedisFanout a(config(), ca), b(config(), cb);
  Events ea, eb;
  ASSERT_TRUE(a.start(ea).ok());
  ASSERT_TRUE(b.start(eb).ok());
  for (int i = 0; i < 500; ++i) {
    a.set_room_interest("room-" + std::to_string(i), true);
    b.set_room_interest("room-" + std::to_string(i), true);
  }
  ASSERT_TRUE(nudge::testing::run_until(
      io, [&] { return a.connected() && b.connected(); }, std::chrono::seconds(10)));
  nudge::testing::run_for(io, milliseconds(200));
  command("CONFIG RESETSTAT");
  nudge::testing::run_for(io, milliseconds(600));  // six ticks (ttl/6 = 100 ms)
  const long long idle = calls("eval") + calls("evalsha");
  std::cout << "[ MEASURED ] 2 instances x 500 rooms with clients, no member, 600 ms: " << idle
            << " presence script calls" << std::endl;
  EXPECT_EQ(idle, 0) << "rooms nobody joined with presence must cost no command per tick";

  a.presence_join("room-1", {"alice", "a-1", "inst-a"});
  ASSERT_TRUE(nudge::testing::run_until(
      io, [&] { return eb.count(PresenceChange::join, "a-1") == 1; }, std::chrono::seconds(5)));
  nudge::testing::run_for(io, milliseconds(600));
  const long long busy = calls("evalsha");
  std::cout << "[ MEASURED ] one member in one room, 600 ms: " << busy << " EVALSHA, " << calls("eval") << " EVAL"
            << std::endl;
  EXPECT_EQ(calls("eval"), 0) << "the script was loaded at connect: calls go by EVALSHA";
  EXPECT_GE(busy, 6) << "a's refreshes and sweeps, b's sweeps of the room it heard the join in";
  EXPECT_LE(busy, 30) << "only room-1 is swept";

  // The server loses its scripts (as after a restart): calls go again by EVAL.
  command("SCRIPT FLUSH");
  command("CONFIG RESETSTAT");
  a.presence_join("room-1", {"anna", "a-2", "inst-a"});
  ASSERT_TRUE(nudge::testing::run_until(
      io, [&] { return eb.count(PresenceChange::join, "a-2") == 1; }, std::chrono::seconds(5)))
      << "a join sent by EVALSHA after SCRIPT FLUSH is sent again by EVAL";
  EXPECT_GE(calls("eval"), 1);

  bool stopped = false;
  b.stop([&] { stopped = true; });
  nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(5));
  stopped = false;
  a.stop([&] { stopped = true; });
  nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(5));
}

}  // namespace
}  // namespace nudge::plugins::redis
