// Presence against a real NATS server (NATS_URL, or nats://127.0.0.1:4222),
// with three instances: two in this process, and one in a child process that
// is SIGKILLed, as an instance that dies would be. Skipped when NATS cannot
// be reached (`scripts/services/nats start`).

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config.hpp"
#include "nats_fanout.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::nats {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using nudge::testing::make_config;
using nudge::testing::TestContext;

constexpr std::int64_t kTtlMs = 1500;

std::string nats_url() {
  const char* env = std::getenv("NATS_URL");
  return env && *env ? env : "nats://127.0.0.1:4222";
}

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

class NatsPresenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string url = nats_url();
    const auto colon = url.rfind(':');
    boost::asio::io_context probe;
    boost::asio::ip::tcp::socket socket(probe);
    boost::system::error_code ec;
    const std::string host = url.substr(7, colon - 7);
    socket.connect({boost::asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec),
                    static_cast<std::uint16_t>(std::stoi(url.substr(colon + 1)))},
                   ec);
    if (ec) GTEST_SKIP() << "NATS is not reachable at '" << url << "'";
    tag_ = std::to_string(::getpid()) + "-" + std::to_string(Clock::now().time_since_epoch().count() % 1000000);
  }

  Config config() {
    return make_config(NatsConfig::schema(),
                       {{"url", nats_url()}, {"subject", "nudge.test.presence." + tag_}, {"presence_ttl_ms", kTtlMs}});
  }

  std::string tag_;
};

TEST_F(NatsPresenceTest, ThreeInstancesSeeJoinsAndLeavesAndASigkilledInstancesMembersLeaveWithinTheTtl) {
  const std::string room = "lobby-" + tag_;
  int ready_pipe[2];
  ASSERT_EQ(::pipe(ready_pipe), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Instance c: joins two members and runs until killed. Nothing of the
    // parent's loop is touched here.
    ::close(ready_pipe[0]);
    boost::asio::io_context io;
    TestContext context(io, "fanout.nats@c", "inst-c-" + tag_);
    NatsFanout c(config(), context);
    Events events;
    if (!c.start(events).ok()) ::_exit(2);
    c.set_room_interest(room, true);
    if (!nudge::testing::run_until(io, [&] { return c.connected(); }, std::chrono::seconds(10))) ::_exit(3);
    c.presence_join(room, {"carol", "c-1", "inst-c-" + tag_});
    c.presence_join(room, {"carol", "c-2", "inst-c-" + tag_});
    nudge::testing::run_for(io, milliseconds(100));
    (void)!::write(ready_pipe[1], "r", 1);
    for (;;) io.run_for(std::chrono::seconds(1));
  }
  ::close(ready_pipe[1]);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reaper{child};

  boost::asio::io_context io;
  TestContext ca(io, "fanout.nats@a", "inst-a-" + tag_), cb(io, "fanout.nats@b", "inst-b-" + tag_);
  NatsFanout a(config(), ca), b(config(), cb);
  Events ea, eb;
  ASSERT_TRUE(a.start(ea).ok());
  ASSERT_TRUE(b.start(eb).ok());
  a.set_room_interest(room, true);
  b.set_room_interest(room, true);
  ASSERT_TRUE(nudge::testing::run_until(io, [&] { return a.connected() && b.connected(); }, std::chrono::seconds(10)));
  nudge::testing::run_for(io, milliseconds(200));  // the subscriptions are live

  a.presence_join(room, {"alice", "a-1", std::string(ca.instance_id())});
  b.presence_join(room, {"bob", "b-1", std::string(cb.instance_id())});
  char byte = 0;
  ASSERT_EQ(::read(ready_pipe[0], &byte, 1), 1) << "instance c did not start";

  auto read_list = [&](NatsFanout& f) {
    std::optional<PresenceList> list;
    f.read_presence(room, [&](Status s, PresenceList l) {
      EXPECT_TRUE(s.ok()) << s.message();
      list = std::move(l);
    });
    EXPECT_TRUE(nudge::testing::run_until(io, [&] { return list.has_value(); }, std::chrono::seconds(5)));
    return list.value_or(PresenceList{});
  };
  ASSERT_TRUE(nudge::testing::run_until(
      io, [&] { return read_list(a).total == 4 && read_list(b).total == 4; }, std::chrono::seconds(10)))
      << "a and b do not both list alice, bob and c's two members";
  EXPECT_EQ(eb.count(PresenceChange::join, "a-1"), 1u) << "b heard alice join once";
  EXPECT_EQ(ea.count(PresenceChange::join, "b-1"), 1u) << "a heard bob join once";

  b.presence_leave(room, {"bob", "b-1", std::string(cb.instance_id())});
  ASSERT_TRUE(nudge::testing::run_until(io, [&] { return ea.count(PresenceChange::leave, "b-1") == 1; },
                                        std::chrono::seconds(5)));

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  const auto killed = Clock::now();
  std::optional<std::int64_t> a_ms, b_ms;
  ASSERT_TRUE(nudge::testing::run_until(
      io,
      [&] {
        auto gone = [&](Events& e) {
          return e.count(PresenceChange::leave, "c-1") >= 1 && e.count(PresenceChange::leave, "c-2") >= 1;
        };
        const auto now_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count();
        if (!a_ms && gone(ea)) a_ms = now_ms;
        if (!b_ms && gone(eb)) b_ms = now_ms;
        return a_ms && b_ms;
      },
      milliseconds(3 * kTtlMs)))
      << "the SIGKILLed instance's members did not leave within " << 3 * kTtlMs << " ms";
  std::cout << "[ MEASURED ] SIGKILLed instance's members left a's list after " << *a_ms << " ms and b's after "
            << *b_ms << " ms (presence_ttl_ms " << kTtlMs << ", check every " << kTtlMs / 6 << " ms)" << std::endl;
  EXPECT_LE(std::max(*a_ms, *b_ms), kTtlMs + kTtlMs / 6 + 300) << "must leave within the TTL and a sweep";
  nudge::testing::run_for(io, milliseconds(500));
  EXPECT_EQ(ea.count(PresenceChange::leave, "c-1"), 1u) << "each instance reports the expiry once";
  EXPECT_EQ(eb.count(PresenceChange::leave, "c-1"), 1u);
  const PresenceList list = read_list(b);
  EXPECT_EQ(list.total, 1u) << "only alice is left";
  ASSERT_EQ(list.members.size(), 1u);
  EXPECT_EQ(list.members[0].user, "alice");
  EXPECT_EQ(ea.count(PresenceChange::leave, "a-1"), 0u) << "a live instance's member is refreshed, never expired";

  bool stopped = false;
  a.stop([&] { stopped = true; });
  ASSERT_TRUE(nudge::testing::run_until(io, [&] { return stopped && eb.count(PresenceChange::leave, "a-1") == 1; },
                                        std::chrono::seconds(5)))
      << "a stopping gracefully says its members left at once";
  stopped = false;
  b.stop([&] { stopped = true; });
  nudge::testing::run_until(io, [&] { return stopped; }, std::chrono::seconds(5));
}

}  // namespace
}  // namespace nudge::plugins::nats
