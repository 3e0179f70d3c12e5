// Integration tests against a real Redis (REDIS_URL, or redis://127.0.0.1:6379).
// Skipped when Redis cannot be reached. Start one with
// `scripts/services/redis start`.
//
// Two fanout instances share one io_context, as two runtime instances would
// share a Redis: each has its own Context and receiver.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "engine/history_merge.hpp"  // the runtime's own decision, built into this test
#include "nudge/sdk/tcp_proxy.hpp"
#include "nudge/sdk/testing.hpp"
#include "recent_window.hpp"
#include "redis_fanout.hpp"

namespace nudge::plugins::redis {
namespace {

using Clock = std::chrono::steady_clock;
using nudge::testing::make_config;
using nudge::testing::TestContext;
using std::chrono::milliseconds;

std::string redis_url() {
  const char* env = std::getenv("REDIS_URL");
  return env && *env ? env : "redis://127.0.0.1:6379";
}

/// A blocking client for the test's own commands (never on the fanout's loop).
struct SyncRedis {
  redisContext* c = nullptr;
  std::string error;

  explicit SyncRedis(const RedisUrl& url) {
    c = redisConnectWithTimeout(url.host.c_str(), url.port, timeval{1, 0});
    if (!c || c->err) {
      error = c ? c->errstr : "cannot allocate a hiredis context";
      return;
    }
    if (url.has_password) {
      const std::string reply =
          url.username.empty() ? command({"AUTH", url.password}) : command({"AUTH", url.username, url.password});
      if (!error.empty()) return;
      (void)reply;
    }
  }
  ~SyncRedis() {
    if (c) redisFree(c);
  }
  bool ok() const { return c && !c->err && error.empty(); }

  /// Runs a command; returns a string or integer reply as text. Sets `error`.
  std::string command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply =
        static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!reply) {
      error = c->errstr;
      return {};
    }
    std::string text;
    if (reply->type == REDIS_REPLY_ERROR) error = std::string(reply->str, reply->len);
    else if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)
      text.assign(reply->str, reply->len);
    else if (reply->type == REDIS_REPLY_INTEGER) text = std::to_string(reply->integer);
    freeReplyObject(reply);
    return text;
  }

  /// Runs a command whose reply is an array of strings (or integers).
  std::vector<std::string> list(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply =
        static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    std::vector<std::string> out;
    if (!reply) {
      error = c->errstr;
      return out;
    }
    if (reply->type == REDIS_REPLY_ERROR) error = std::string(reply->str, reply->len);
    if (reply->type == REDIS_REPLY_ARRAY)
      for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* e = reply->element[i];
        if (e->type == REDIS_REPLY_STRING) out.emplace_back(e->str, e->len);
        else if (e->type == REDIS_REPLY_INTEGER) out.push_back(std::to_string(e->integer));
      }
    freeReplyObject(reply);
    return out;
  }

  /// Every key that starts with `prefix` (SCAN; the prefix has no glob characters).
  std::vector<std::string> keys(const std::string& prefix) {
    std::vector<std::string> out;
    std::string cursor = "0";
    do {
      std::vector<const char*> argv{"SCAN", cursor.c_str(), "MATCH", nullptr, "COUNT", "1000"};
      const std::string pattern = prefix + "*";
      argv[3] = pattern.c_str();
      auto* reply = static_cast<redisReply*>(redisCommandArgv(c, 6, argv.data(), nullptr));
      if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        if (reply) freeReplyObject(reply);
        error = "SCAN failed";
        return out;
      }
      cursor.assign(reply->element[0]->str, reply->element[0]->len);
      for (std::size_t i = 0; i < reply->element[1]->elements; ++i)
        out.emplace_back(reply->element[1]->element[i]->str, reply->element[1]->element[i]->len);
      freeReplyObject(reply);
    } while (cursor != "0");
    return out;
  }

  /// What MEMORY USAGE says all of `keys` take.
  std::int64_t memory_usage(const std::vector<std::string>& keys) {
    std::int64_t total = 0;
    for (const auto& key : keys) {
      const std::string n = command({"MEMORY", "USAGE", key, "SAMPLES", "0"});
      if (!n.empty()) total += std::stoll(n);
    }
    return total;
  }
};

/// Records what a fanout hands back. Probe messages (header "probe") only
/// mark which origins have been heard from, so warming up leaves no trace.
struct Recorder final : FanoutReceiver {
  std::vector<MessagePtr> messages;
  std::set<std::string> probes_from;
  void on_fanout_message(MessagePtr message) override {
    for (const auto& [key, value] : message->headers)
      if (key == "probe") {
        probes_from.insert(message->origin + "/" + value);
        return;
      }
    messages.push_back(std::move(message));
  }
  std::size_t count_from(const std::string& origin) const {
    return static_cast<std::size_t>(
        std::count_if(messages.begin(), messages.end(), [&](const MessagePtr& m) { return m->origin == origin; }));
  }
};

struct Instance {
  TestContext context;
  Recorder receiver;
  std::unique_ptr<RedisFanout> fanout;
  std::string id;

  Instance(boost::asio::io_context& io, std::string instance_id, const Config& config)
      : context(io, "fanout.redis@" + instance_id, instance_id),
        fanout(std::make_unique<RedisFanout>(config, context)),
        id(std::move(instance_id)) {}
};

std::int64_t seq_of(const Message& m) {
  for (const auto& [key, value] : m.headers)
    if (key == "seq") return std::stoll(value);
  return -1;
}

MessagePtr make_message(const std::string& origin, const std::string& room, std::int64_t seq, std::string payload,
                        const char* probe = nullptr) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = room;
  m->sender = "user-of-" + origin;
  m->payload = std::move(payload);
  m->timestamp_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  m->origin = origin;
  if (probe) m->headers = {{"probe", probe}};
  else m->headers = {{"seq", std::to_string(seq)}};
  return m;
}

class RedisFanoutIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // As `nudge run` does: hiredis writes with write(2), and a connection
    // reset under a write (the proxy taken down) must not kill the process.
    std::signal(SIGPIPE, SIG_IGN);
    url_text_ = redis_url();
    std::string error;
    if (!parse_redis_url(url_text_, url_, error)) FAIL() << "REDIS_URL '" << url_text_ << "': " << error;
    SyncRedis probe(url_);
    if (!probe.ok() || probe.command({"PING"}) != "PONG")
      GTEST_SKIP() << "Redis is not reachable at '" << url_text_ << "' ("
                   << (probe.error.empty() ? "no PONG" : probe.error)
                   << "); start it with scripts/services/redis start or set REDIS_URL";
    // Names no other test run uses, so runs sharing a Redis never cross.
    static std::atomic<int> counter{0};
    unique_ = std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
              std::to_string(Clock::now().time_since_epoch().count() % 1000000);
  }

  void TearDown() override {
    stop_all();
    if (unique_.empty()) return;  // skipped
    // The recent window's keys of this test (its streams, index and counts).
    SyncRedis redis(url_);
    for (const auto& key : redis.keys("nudge:test:" + unique_ + ":recent:")) redis.command({"DEL", key});
  }

  Config config(std::map<std::string, ConfigValue> overrides) {
    overrides.emplace("url", url_text_);
    overrides.emplace("channel", "nudge:test:" + unique_);
    overrides.emplace("channel_prefix", "nudge:test:" + unique_ + ":room:");
    overrides.emplace("recent_key_prefix", "nudge:test:" + unique_ + ":recent:");
    overrides.emplace("reconnect_initial_ms", std::int64_t{50});
    overrides.emplace("reconnect_max_ms", std::int64_t{500});
    std::string error;
    Config c = make_config(RedisConfig::schema(), overrides, &error);
    EXPECT_EQ(error, "");
    return c;
  }

  Instance& add(const std::string& name, std::map<std::string, ConfigValue> overrides = {}) {
    instances_.push_back(std::make_unique<Instance>(io_, name + "-" + unique_, config(std::move(overrides))));
    Instance& instance = *instances_.back();
    EXPECT_TRUE(instance.fanout->start(instance.receiver).ok());
    return instance;
  }

  /// Runs the loop until `done()` or `timeout`; returns done().
  template <class Predicate>
  bool run_until(Predicate done, milliseconds timeout) {
    return nudge::testing::run_until(io_, std::move(done), timeout);
  }
  void run_for(milliseconds time) { nudge::testing::run_for(io_, time); }

  /// Every instance publishes a probe in `room` every 50 ms until each one
  /// has heard every instance's probe: then all subscriptions are active.
  bool warm_up(const std::string& room, const std::string& tag = "warm-up") {
    auto all_heard = [&] {
      for (const auto& receiver : instances_)
        for (const auto& sender : instances_)
          if (!receiver->receiver.probes_from.count(sender->id + "/" + tag)) return false;
      return true;
    };
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!all_heard() && Clock::now() < deadline) {
      for (const auto& sender : instances_) sender->fanout->publish(make_message(sender->id, room, 0, "", tag.c_str()));
      run_until(all_heard, milliseconds(50));
    }
    return all_heard();
  }

  void stop_all() {
    int stopped = 0;
    const int n = static_cast<int>(instances_.size());
    for (const auto& instance : instances_) instance->fanout->stop([&] { ++stopped; });
    const auto t0 = Clock::now();
    run_until([&] { return stopped == n; }, std::chrono::seconds(5));
    EXPECT_EQ(stopped, n) << "stop() must call done";
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3)) << "stop() must be prompt";
    instances_.clear();
  }

  boost::asio::io_context io_;
  std::string url_text_;
  RedisUrl url_;
  std::string unique_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

/// Publishes `count` messages from each instance, `chunk` at a time per turn
/// of the loop, waiting while the fanout holds messages back (no drops, from
/// the bus's queue or from the window's).
void publish_in_chunks(boost::asio::io_context& io, std::vector<Instance*> from, std::int64_t count, std::int64_t chunk,
                       const std::function<MessagePtr(Instance&, std::int64_t)>& make) {
  auto next = std::make_shared<std::int64_t>(0);
  auto step = std::make_shared<std::function<void()>>();
  *step = [&io, from, count, chunk, make, next, step] {
    bool backlog = false;
    for (Instance* i : from) backlog = backlog || i->fanout->pending() > 0 || i->fanout->recent_backlog() > 5000;
    if (!backlog) {
      const std::int64_t end = std::min(count, *next + chunk);
      for (; *next < end; ++*next)
        for (Instance* i : from) i->fanout->publish(make(*i, *next));
    }
    if (*next < count) boost::asio::post(io, *step);
    else *step = nullptr;  // breaks the self-reference
  };
  boost::asio::post(io, *step);
}

TEST_F(RedisFanoutIntegrationTest, MeasuresThroughput) {
  // With the recent window (a call of its script per loop turn, behind the
  // PUBLISHes) and without: what the window costs the bus, and how soon it
  // holds everything.
  for (const std::int64_t window : {std::int64_t{0}, std::int64_t{1000}}) {
    Instance& a = add("a" + std::to_string(window), {{"recent_messages", window}});
    Instance& b = add("b" + std::to_string(window), {{"recent_messages", window}});
    const std::string room = "lobby" + std::to_string(window);
    ASSERT_TRUE(warm_up(room));
    // Ignored with a single channel: both still get everything.
    a.fanout->set_room_interest(room, false);
    constexpr std::int64_t kPerPublisher = 20000;
    constexpr std::size_t kPayload = 128;
    const std::string payload(kPayload, 'x');
    const auto t0 = Clock::now();
    publish_in_chunks(io_, {&a, &b}, kPerPublisher, 500,
                      [&](Instance& i, std::int64_t seq) { return make_message(i.id, room, seq, payload); });
    const std::size_t expected = 2 * kPerPublisher;
    ASSERT_TRUE(
        run_until([&] { return a.receiver.messages.size() >= expected && b.receiver.messages.size() >= expected; },
                  std::chrono::seconds(60)))
        << "a received " << a.receiver.messages.size() << ", b " << b.receiver.messages.size() << " of " << expected;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double published_per_s = static_cast<double>(expected) / seconds;
    // The window is appended behind the bus: until it is complete too.
    ASSERT_TRUE(run_until([&] { return a.fanout->recent_backlog() == 0 && b.fanout->recent_backlog() == 0; },
                          std::chrono::seconds(30)));
    const double window_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::ostringstream line;
    line.precision(0);
    line << std::fixed << "throughput (recent_messages = " << window << "): " << expected << " messages of " << kPayload
         << " bytes from 2 publishers in " << seconds * 1000 << " ms = " << published_per_s
         << " messages/s through the fanout (" << 2 * published_per_s
         << " deliveries/s to 2 subscribers, one thread for both instances)";
    if (window)
      line << "; the window held them all after " << window_seconds * 1000
           << " ms = " << static_cast<double>(expected) / window_seconds << " messages/s";
    std::cout << "[ MEASURED ] " << line.str() << std::endl;
    RecordProperty(window ? "messages_per_second_with_window" : "messages_per_second",
                   static_cast<int>(published_per_s));
    EXPECT_EQ(a.receiver.messages.size(), expected);
    EXPECT_EQ(b.receiver.messages.size(), expected);
    for (Instance* i : {&a, &b}) {
      EXPECT_GE(i->context.metrics().value("published"), static_cast<std::uint64_t>(kPerPublisher));
      EXPECT_EQ(i->context.metrics().value("publish_errors"), 0u);
      EXPECT_EQ(i->context.metrics().value("decode_errors"), 0u);
      EXPECT_EQ(i->context.metrics().value("dropped_while_disconnected"), 0u);
      EXPECT_GE(i->context.metrics().value("received"), expected);
    }
    if (window) {
      for (Instance* i : {&a, &b}) {
        EXPECT_EQ(i->context.metrics().value("recent_appended"), i->context.metrics().value("published"))
            << "every message published (probes included) reached the window";
        EXPECT_EQ(i->context.metrics().value("recent_missed"), 0u);
      }
    }
    stop_all();
  }
}

TEST_F(RedisFanoutIntegrationTest, ChannelPerRoomDeliversOnlyRoomsOfInterest) {
  Instance& a = add("a", {{"channel_per_room", true}});
  Instance& b = add("b", {{"channel_per_room", true}});
  a.fanout->set_room_interest("r1", true);
  a.fanout->set_room_interest("shared", true);
  b.fanout->set_room_interest("shared", true);
  ASSERT_TRUE(run_until([&] { return a.fanout->connected() && b.fanout->connected(); }, std::chrono::seconds(5)));
  b.fanout->set_room_interest("r2", true);  // after connecting: subscribed at once
  ASSERT_TRUE(warm_up("shared"));
  // b's r2 subscription is active once b hears its own r2 probe.
  ASSERT_TRUE(run_until(
      [&] {
        b.fanout->publish(make_message(b.id, "r2", 0, "", "r2-ready"));
        run_for(milliseconds(20));
        return b.receiver.probes_from.count(b.id + "/r2-ready") > 0;
      },
      std::chrono::seconds(5)));
  a.receiver.messages.clear();
  b.receiver.messages.clear();

  constexpr int kEach = 20;
  for (int n = 0; n < kEach; ++n)
    for (Instance* from : {&a, &b})
      for (const char* room : {"r1", "r2", "r3", "shared"})
        from->fanout->publish(make_message(from->id, room, n, room));
  auto rooms_of = [](const Recorder& r) {
    std::map<std::string, int> counts;
    for (const auto& m : r.messages) ++counts[m->room];
    return counts;
  };
  ASSERT_TRUE(
      run_until([&] { return a.receiver.messages.size() >= 4 * kEach && b.receiver.messages.size() >= 4 * kEach; },
                std::chrono::seconds(10)));
  run_for(milliseconds(300));
  EXPECT_EQ(rooms_of(a.receiver), (std::map<std::string, int>{{"r1", 2 * kEach}, {"shared", 2 * kEach}}));
  EXPECT_EQ(rooms_of(b.receiver), (std::map<std::string, int>{{"r2", 2 * kEach}, {"shared", 2 * kEach}}));

  // b leaves r2, a joins r3.
  b.fanout->set_room_interest("r2", false);
  a.fanout->set_room_interest("r3", true);
  ASSERT_TRUE(run_until(
      [&] {
        a.fanout->publish(make_message(a.id, "r3", 0, "", "r3-ready"));
        run_for(milliseconds(20));
        return a.receiver.probes_from.count(a.id + "/r3-ready") > 0;
      },
      std::chrono::seconds(5)));
  run_for(milliseconds(200));
  a.receiver.messages.clear();
  b.receiver.messages.clear();
  for (int n = 0; n < kEach; ++n)
    for (const char* room : {"r2", "r3", "shared"}) a.fanout->publish(make_message(a.id, room, n, room));
  ASSERT_TRUE(run_until([&] { return a.receiver.messages.size() >= 2 * kEach && b.receiver.messages.size() >= kEach; },
                        std::chrono::seconds(10)));
  run_for(milliseconds(300));
  EXPECT_EQ(rooms_of(a.receiver), (std::map<std::string, int>{{"r3", kEach}, {"shared", kEach}}));
  EXPECT_EQ(rooms_of(b.receiver), (std::map<std::string, int>{{"shared", kEach}})) << "b left r2";
}

/// What read_recent answers for `room` (at most `limit`).
std::vector<MessagePtr> read_recent(RedisFanoutIntegrationTest* test, boost::asio::io_context& io, RedisFanout& fanout,
                                    const std::string& room, std::size_t limit) {
  std::optional<std::vector<MessagePtr>> answer;
  HistoryQuery query;
  query.room = room;
  query.limit = limit;
  fanout.read_recent(query, [&](Status s, std::vector<MessagePtr> m) {
    EXPECT_TRUE(s.ok()) << s.message();
    answer = std::move(m);
  });
  EXPECT_FALSE(answer) << "answered inline";
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return answer.has_value(); }, std::chrono::seconds(5)));
  (void)test;
  return answer.value_or(std::vector<MessagePtr>{});
}

TEST_F(RedisFanoutIntegrationTest, KeepsARecentWindowPerRoomSharedByEveryInstance) {
  Instance& a = add("a", {{"channel_per_room", true}});
  Instance& b = add("b", {{"channel_per_room", true}, {"recent_messages", std::int64_t{0}}});
  ASSERT_TRUE(run_until([&] { return a.fanout->connected() && b.fanout->connected(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(a.fanout->supports_recent());
  EXPECT_FALSE(b.fanout->supports_recent());
  std::vector<MessageId> sent;
  for (int n = 0; n < 5; ++n) {
    auto m = make_message(a.id, "hist", n, "m" + std::to_string(n));
    sent.push_back(m->id);
    a.fanout->publish(m);
  }
  a.fanout->publish(make_message(a.id, "other", 0, "elsewhere"));
  ASSERT_TRUE(run_until([&] { return a.fanout->recent_backlog() == 0; }, std::chrono::seconds(5)));
  // Another instance with the window on reads what `a` published: it lives in Redis.
  Instance& c = add("c", {{"channel_per_room", true}});
  ASSERT_TRUE(run_until([&] { return c.fanout->connected(); }, std::chrono::seconds(5)));
  auto all = read_recent(this, io_, *c.fanout, "hist", 100);
  ASSERT_EQ(all.size(), 5u);
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]->id, sent[i]) << "oldest first, in publish order";
    EXPECT_EQ(all[i]->payload, "m" + std::to_string(i));
  }
  auto last_two = read_recent(this, io_, *a.fanout, "hist", 2);
  ASSERT_EQ(last_two.size(), 2u);
  EXPECT_EQ(last_two[0]->id, sent[3]);
  EXPECT_EQ(last_two[1]->id, sent[4]);
  EXPECT_TRUE(read_recent(this, io_, *a.fanout, "nobody-here", 10).empty());
  SyncRedis redis(url_);
  EXPECT_NE(redis.command({"TTL", "nudge:test:" + unique_ + ":recent:hist"}), "-1") << "the stream expires";
}

TEST_F(RedisFanoutIntegrationTest, CountsAndSkipsPayloadsThatAreNotEnvelopes) {
  Instance& a = add("a");
  ASSERT_TRUE(warm_up("lobby"));
  SyncRedis client(url_);
  ASSERT_TRUE(client.ok()) << client.error;
  for (const std::string& junk :
       {std::string("hello"), std::string(), std::string("NG\x01garbage", 10), std::string(1000, '\xff')})
    client.command({"PUBLISH", "nudge:test:" + unique_, junk});
  a.fanout->publish(make_message(a.id, "lobby", 0, "after junk"));
  ASSERT_TRUE(run_until([&] { return a.receiver.messages.size() == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(a.receiver.messages[0]->payload, "after junk");
  EXPECT_EQ(a.context.metrics().value("decode_errors"), 4u);
  EXPECT_EQ(a.context.logger().count(LogLevel::warn, "not a Nudge envelope"), 1u) << "rate-limited";
}

/// Publishes from every instance every 10 ms, numbering messages per instance.
struct Ticker {
  boost::asio::steady_timer timer;
  std::vector<Instance*> from;
  std::int64_t seq = 0;
  bool running = true;
  Ticker(boost::asio::io_context& io, std::vector<Instance*> instances) : timer(io), from(std::move(instances)) {
    tick();
  }
  void tick() {
    for (Instance* i : from) i->fanout->publish(make_message(i->id, "lobby", seq, "tick"));
    ++seq;
    timer.expires_after(milliseconds(10));
    timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec && running) tick();
    });
  }
  ~Ticker() {
    running = false;
    timer.cancel();
  }
};

/// Both instances received a message from each instance numbered above `seq`.
bool delivered_after(const std::vector<Instance*>& instances, std::int64_t seq) {
  for (Instance* receiver : instances)
    for (Instance* sender : instances) {
      bool found = false;
      for (auto it = receiver->receiver.messages.rbegin(); it != receiver->receiver.messages.rend() && !found; ++it)
        found = (*it)->origin == sender->id && seq_of(**it) > seq;
      if (!found) return false;
    }
  return true;
}

/// Across a reconnect messages may be lost, never duplicated or reordered.
void expect_in_order_without_duplicates(const Instance& receiver) {
  std::map<std::string, std::int64_t> last;
  for (const auto& m : receiver.receiver.messages) {
    auto [it, first] = last.emplace(m->origin, seq_of(*m));
    if (!first) {
      EXPECT_GT(seq_of(*m), it->second) << receiver.id << " from " << m->origin;
      it->second = seq_of(*m);
    }
  }
}

void expect_reconnected_once(Instance& i) {
  expect_in_order_without_duplicates(i);
  EXPECT_EQ(i.context.metrics().value("reconnects"), 2u) << "both connections of " << i.id;
  EXPECT_EQ(i.context.logger().count(LogLevel::warn, "lost the publishing connection"), 1u);
  EXPECT_EQ(i.context.logger().count(LogLevel::warn, "lost the subscribing connection"), 1u);
  // Once at info exactly: counted at info or above, and not at warn or above.
  for (const char* line : {"reconnected the publishing connection", "reconnected the subscribing connection"}) {
    EXPECT_EQ(i.context.logger().count(LogLevel::info, line), 1u) << line;
    EXPECT_EQ(i.context.logger().count(LogLevel::warn, line), 0u) << line << " is logged at info, not as a warning";
  }
  EXPECT_EQ(i.context.metrics().gauge_value("connected"), 1);
}

TEST_F(RedisFanoutIntegrationTest, ResumesDeliveryAfterItsConnectionsAreKilled) {
  Instance& a = add("a");
  Instance& b = add("b");
  ASSERT_TRUE(warm_up("lobby"));
  Ticker ticker(io_, {&a, &b});
  run_for(milliseconds(200));

  // Kills exactly this test's connections (named with CLIENT SETNAME), so
  // other users of the same Redis are not disturbed.
  SyncRedis admin(url_);
  ASSERT_TRUE(admin.ok()) << admin.error;
  const std::string list = admin.command({"CLIENT", "LIST"});
  std::istringstream lines(list);
  std::string line;
  int killed = 0;
  while (std::getline(lines, line)) {
    const auto name_at = line.find(" name=nudge:test:");
    if (name_at == std::string::npos || line.find(unique_, name_at) == std::string::npos) continue;
    const std::string id = line.substr(3, line.find(' ') - 3);  // "id=<n> ..."
    admin.command({"CLIENT", "KILL", "ID", id});
    ++killed;
  }
  ASSERT_EQ(killed, 4) << "two connections per instance, named in CLIENT LIST:\n" << list;
  const std::int64_t seq_at_kill = ticker.seq;
  const auto t0 = Clock::now();
  ASSERT_TRUE(run_until(
      [&] {
        return delivered_after({&a, &b}, seq_at_kill);
      },
      std::chrono::seconds(5)))
      << "delivery did not resume within 5 s";
  const auto resumed_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  std::cout << "[ MEASURED ] delivery resumed " << resumed_ms << " ms after CLIENT KILL" << std::endl;
  run_for(milliseconds(200));
  expect_reconnected_once(a);
  expect_reconnected_once(b);
}

TEST_F(RedisFanoutIntegrationTest, ReadyOnceBothConnectionsAreUpAndAgainAfterTheyAreKilled) {
  Instance& a = add("a");
  ASSERT_TRUE(run_until([&] { return a.fanout->readiness().ready; }, std::chrono::seconds(5)))
      << a.fanout->readiness().reason;
  EXPECT_TRUE(a.fanout->connected());
  SyncRedis admin(url_);
  ASSERT_TRUE(admin.ok()) << admin.error;
  std::istringstream lines(admin.command({"CLIENT", "LIST"}));
  std::string line;
  int killed = 0;
  while (std::getline(lines, line)) {
    const auto name_at = line.find(" name=nudge:test:");
    if (name_at == std::string::npos || line.find(unique_, name_at) == std::string::npos) continue;
    admin.command({"CLIENT", "KILL", "ID", line.substr(3, line.find(' ') - 3)});
    ++killed;
  }
  ASSERT_EQ(killed, 2);
  // The loss is seen at once (the socket closes); the link reconnects with backoff.
  bool saw_not_ready = false;
  std::string reason;
  ASSERT_TRUE(run_until(
      [&] {
        if (!a.fanout->readiness().ready && !saw_not_ready) {
          saw_not_ready = true;
          reason = a.fanout->readiness().reason;
        }
        return saw_not_ready && a.fanout->readiness().ready;
      },
      std::chrono::seconds(5)))
      << "not ready again within 5 s: " << a.fanout->readiness().reason;
  EXPECT_EQ(reason.rfind("no connection to Redis at ", 0), 0u) << reason;
}

// ---- The recent window's bounds ----------------------------------------------

/// Runs the loop until every instance's window has everything it was given.
bool window_settled(RedisFanoutIntegrationTest* test, boost::asio::io_context& io, std::vector<Instance*> instances) {
  (void)test;
  return nudge::testing::run_until(
      io,
      [&] {
        for (Instance* i : instances)
          if (i->fanout->recent_backlog() > 0 || i->fanout->recent_gaps() > 0) return false;
        return true;
      },
      std::chrono::seconds(20));
}

TEST_F(RedisFanoutIntegrationTest, RecentWindowStaysWithinItsBytesInRedis) {
  constexpr std::int64_t kMaxBytes = 1024 * 1024, kMaxRoomBytes = 128 * 1024;
  Instance& a = add("a", {{"recent_max_bytes", kMaxBytes}, {"recent_max_room_bytes", kMaxRoomBytes}});
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(5)));
  // 60 fresh rooms x 15 messages of 0.2 to 60 KB (6 MB), 18 times the cap.
  constexpr int kRooms = 60, kPerRoom = 15;
  const std::size_t sizes[] = {200, 3000, 20000, 60000, 1000};
  std::map<std::string, std::vector<MessageId>> sent;
  std::size_t total = 0;
  publish_in_chunks(io_, {&a}, kRooms * kPerRoom, 50, [&](Instance& i, std::int64_t n) {
    const std::string room = "room-" + std::to_string(n / kPerRoom);
    auto m = make_message(i.id, room, n, std::string(sizes[n % 5], 'x'));
    sent[room].push_back(m->id);
    total += m->payload.size();
    return m;
  });
  ASSERT_TRUE(
      run_until([&] { return a.context.metrics().value("published") >= kRooms * kPerRoom; }, std::chrono::seconds(20)));
  ASSERT_TRUE(window_settled(this, io_, {&a}));

  const std::string prefix = "nudge:test:" + unique_ + ":recent:";
  SyncRedis redis(url_);
  const auto keys = redis.keys(prefix);
  const std::int64_t used = redis.memory_usage(keys);
  const std::int64_t counted =
      recent::kBaseCost + std::stoll(redis.command({"HGET", recent::meta_key(prefix), "total"}));
  const auto rooms = redis.list({"ZRANGE", recent::index_key(prefix), "0", "-1"});
  std::cout << "[ MEASURED ] " << total / 1000 << " KB in " << kRooms << " rooms: Redis holds " << keys.size()
            << " keys of the window taking " << used << " bytes (MEMORY USAGE), counted " << counted
            << " (recent_max_bytes " << kMaxBytes << "), " << rooms.size() << " rooms" << std::endl;
  EXPECT_LE(used, kMaxBytes) << "what Redis really holds";
  EXPECT_LE(counted, kMaxBytes);
  EXPECT_LE(used, counted) << "the count is an upper bound of MEMORY USAGE";
  EXPECT_GT(counted, kMaxBytes / 2) << "the cap is used, not emptied";
  EXPECT_EQ(a.context.metrics().gauge_value("recent_bytes"), counted);
  EXPECT_EQ(keys.size(), rooms.size() + 2) << "a stream per room held, the index and the counts; nothing else";
  ASSERT_FALSE(rooms.empty());
  EXPECT_EQ(rooms.back(), "room-59") << "the most recently active room is kept";
  EXPECT_EQ(std::find(rooms.begin(), rooms.end(), "room-0"), rooms.end());
  for (const auto& room : rooms) {
    const std::string key = recent::stream_key(prefix, room);
    EXPECT_LE(std::stoll(redis.command({"MEMORY", "USAGE", key, "SAMPLES", "0"})), kMaxRoomBytes) << room;
  }
  // The newest room answers with its newest messages, in order; an evicted one with nothing.
  const auto newest = read_recent(this, io_, *a.fanout, "room-59", 100);
  ASSERT_FALSE(newest.empty());
  const auto& ids = sent["room-59"];
  for (std::size_t i = 0; i < newest.size(); ++i) EXPECT_EQ(newest[i]->id, ids[ids.size() - newest.size() + i]);
  EXPECT_TRUE(read_recent(this, io_, *a.fanout, "room-0", 100).empty());
  EXPECT_GE(a.context.metrics().value("recent_rooms_evicted"), static_cast<std::uint64_t>(kRooms) - rooms.size());
}

TEST_F(RedisFanoutIntegrationTest, RecentWindowStaysWithinItsRoomsAndMessagesPerRoom) {
  Instance& a = add("a", {{"recent_max_rooms", std::int64_t{20}}, {"recent_messages", std::int64_t{50}}});
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(5)));
  // 500 one-message rooms, as a client joining names at random would make.
  for (int r = 0; r < 500; ++r) a.fanout->publish(make_message(a.id, "room-" + std::to_string(r), r, "hi"));
  for (int n = 0; n < 80; ++n) a.fanout->publish(make_message(a.id, "busy", n, "m" + std::to_string(n)));
  ASSERT_TRUE(run_until([&] { return a.context.metrics().value("published") >= 580; }, std::chrono::seconds(10)));
  ASSERT_TRUE(window_settled(this, io_, {&a}));

  const std::string prefix = "nudge:test:" + unique_ + ":recent:";
  SyncRedis redis(url_);
  const auto keys = redis.keys(prefix);
  const auto rooms = redis.list({"ZRANGE", recent::index_key(prefix), "0", "-1"});
  EXPECT_EQ(rooms.size(), 20u);
  EXPECT_EQ(keys.size(), 22u) << "20 streams, the index and the counts";
  EXPECT_EQ(a.context.metrics().gauge_value("recent_rooms"), 20);
  EXPECT_EQ(redis.command({"XLEN", recent::stream_key(prefix, "busy")}), "50") << "trimmed exactly";
  const auto busy = read_recent(this, io_, *a.fanout, "busy", 100);
  ASSERT_EQ(busy.size(), 50u);
  EXPECT_EQ(busy.front()->payload, "m30");
  EXPECT_EQ(busy.back()->payload, "m79");
  EXPECT_EQ(read_recent(this, io_, *a.fanout, "room-499", 10).size(), 1u) << "among the 20 most recent";
  EXPECT_TRUE(read_recent(this, io_, *a.fanout, "room-480", 10).empty()) << "one of the 21 most recent is out";
  EXPECT_TRUE(read_recent(this, io_, *a.fanout, "room-0", 10).empty());
  EXPECT_EQ(redis.command({"HLEN", recent::meta_key(prefix)}), "21") << "one count per room held, and the total";
  const std::int64_t counted = std::stoll(redis.command({"HGET", recent::meta_key(prefix), "total"}));
  EXPECT_LE(redis.memory_usage(keys), recent::kBaseCost + counted)
      << "the count is an upper bound of MEMORY USAGE, though the index grew to 500 rooms in one call";
}

TEST_F(RedisFanoutIntegrationTest, RoomsIdleForTheTtlAreDeletedAndUncounted) {
  Instance& a = add("a", {{"recent_ttl_s", std::int64_t{1}}});
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(5)));
  a.fanout->publish(make_message(a.id, "idle", 0, std::string(5000, 'x')));
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  const std::string prefix = "nudge:test:" + unique_ + ":recent:";
  SyncRedis redis(url_);
  EXPECT_EQ(redis.command({"EXISTS", recent::stream_key(prefix, "idle")}), "1");
  run_for(milliseconds(1200));
  a.fanout->publish(make_message(a.id, "active", 0, "y"));
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  EXPECT_EQ(redis.command({"EXISTS", recent::stream_key(prefix, "idle")}), "0");
  EXPECT_EQ(redis.list({"ZRANGE", recent::index_key(prefix), "0", "-1"}), std::vector<std::string>{"active"});
  EXPECT_EQ(redis.command({"HGET", recent::meta_key(prefix), "total"}),
            redis.command({"HGET", recent::meta_key(prefix), "b:active"}))
      << "what the idle room counted is gone with it";
  EXPECT_NE(redis.command({"PTTL", recent::stream_key(prefix, "active")}), "-1") << "it expires even with no traffic";
  EXPECT_NE(redis.command({"PTTL", recent::meta_key(prefix)}), "-1");
}

// ---- A window that missed a message does not answer alone ---------------------

std::vector<MessagePtr> after(const std::vector<MessagePtr>& all, const MessageId& id) {
  std::vector<MessagePtr> out;
  for (const auto& m : all)
    if (m->id > id) out.push_back(m);
  return out;
}

/// What a client that last saw `last_seen` is answered, the runtime's way
/// (runtime/engine/pipeline.cpp): the window alone if answer_from_window says
/// it reaches back far enough, else `stored` (the sink, which has every
/// acknowledged message) merged with the window.
std::vector<MessagePtr> catch_up(const std::vector<MessagePtr>& window, const std::vector<MessagePtr>& stored,
                                 const MessageId& last_seen, bool* from_window) {
  HistoryQuery query;
  query.room = window.empty() ? std::string() : window.front()->room;
  query.limit = 100;
  query.after = last_seen;
  if (auto enough = runtime::answer_from_window(query, window)) {
    *from_window = true;
    return *enough;
  }
  *from_window = false;
  return runtime::merge_history(query, after(stored, last_seen), window);
}

std::vector<std::string> payloads(const std::vector<MessagePtr>& v) {
  std::vector<std::string> out;
  for (const auto& m : v) out.push_back(m->payload);
  return out;
}

TEST_F(RedisFanoutIntegrationTest, AWindowThatMissedMessagesWhileRedisWasAwayDoesNotAnswerAlone) {
  // The publisher reaches Redis through a proxy that the test takes down;
  // the reader (another instance) reaches it directly.
  nudge::testing::TcpProxy proxy(url_.host == "localhost" ? "127.0.0.1" : url_.host, url_.port);
  Instance& a = add("a", {{"url", "redis://" + (url_.has_password ? ":" + url_.password + "@" : std::string()) +
                                      "127.0.0.1:" + std::to_string(proxy.port())},
                          {"max_pending_publishes", std::int64_t{4}}});
  Instance& c = add("c");
  ASSERT_TRUE(run_until([&] { return a.fanout->connected() && c.fanout->connected(); }, std::chrono::seconds(5)));
  std::vector<MessagePtr> stored;  // what the sink holds: every acknowledged message
  auto say = [&](int n) {
    auto m = make_message(a.id, "gap", n, "m" + std::to_string(n));
    stored.push_back(m);
    a.fanout->publish(m);
  };
  for (int n = 0; n < 5; ++n) say(n);
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  ASSERT_EQ(payloads(read_recent(this, io_, *c.fanout, "gap", 100)),
            (std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"}));

  proxy.down();
  ASSERT_TRUE(run_until([&] { return !a.fanout->connected(); }, std::chrono::seconds(5)));
  for (int n = 5; n < 15; ++n) say(n);  // 4 wait (m11..m14), 6 are dropped (m5..m10)
  EXPECT_EQ(a.context.metrics().value("dropped_while_disconnected"), 6u);
  EXPECT_EQ(a.context.metrics().value("recent_missed"), 6u);
  proxy.up();
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(10)));
  ASSERT_TRUE(window_settled(this, io_, {&a}));

  const auto window = read_recent(this, io_, *c.fanout, "gap", 100);
  EXPECT_EQ(payloads(window), (std::vector<std::string>{"m11", "m12", "m13", "m14"}))
      << "the window holds nothing from before the messages it missed";
  // A client that saw m4 before the outage: not from the window alone, and
  // the sink's answer has what the window missed.
  bool from_window = true;
  const auto answer = catch_up(window, stored, stored[4]->id, &from_window);
  EXPECT_FALSE(from_window);
  EXPECT_EQ(payloads(answer),
            (std::vector<std::string>{"m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12", "m13", "m14"}));
  // One that saw m12 after it: the window answers, and misses nothing.
  EXPECT_EQ(payloads(catch_up(window, stored, stored[12]->id, &from_window)), (std::vector<std::string>{"m13", "m14"}));
  EXPECT_TRUE(from_window);
}

TEST_F(RedisFanoutIntegrationTest, ARefusedCallCutsTheWindowsOfItsRooms) {
  Instance& a = add("a");
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(5)));
  const std::string prefix = "nudge:test:" + unique_ + ":recent:";
  std::vector<MessagePtr> stored;
  auto say = [&](int n) {
    auto m = make_message(a.id, "refused", n, "m" + std::to_string(n));
    stored.push_back(m);
    a.fanout->publish(m);
  };
  say(0);
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  // The counts' key of the wrong type: every call is refused (WRONGTYPE) before it does anything.
  SyncRedis redis(url_);
  redis.command({"DEL", recent::meta_key(prefix)});
  redis.command({"SET", recent::meta_key(prefix), "not a hash"});
  say(1);
  ASSERT_TRUE(run_until([&] { return a.context.metrics().value("recent_errors") >= 2; }, std::chrono::seconds(5)))
      << "refused, then retried with backoff";
  EXPECT_EQ(a.context.logger().count(LogLevel::warn, "redis refused the recent window's script"), 1u) << "rate-limited";
  redis.command({"DEL", recent::meta_key(prefix)});
  say(2);
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  const auto window = read_recent(this, io_, *a.fanout, "refused", 100);
  EXPECT_EQ(payloads(window), (std::vector<std::string>{"m2"})) << "m0 was cut with the gap m1 left";
  bool from_window = true;
  EXPECT_EQ(payloads(catch_up(window, stored, stored[0]->id, &from_window)), (std::vector<std::string>{"m1", "m2"}));
  EXPECT_FALSE(from_window);
}

TEST_F(RedisFanoutIntegrationTest, AMessageOlderThanACutIsNotAppendedAfterIt) {
  // Instance b made x before a made m, but b's x reaches Redis only after m
  // was refused and its room cut (b was behind). Were x appended, a client
  // that saw x would be answered from the window without m.
  Instance& a = add("a");
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(5)));
  const std::string prefix = "nudge:test:" + unique_ + ":recent:";
  auto x = make_message("b", "late", 0, "x");
  auto m = make_message(a.id, "late", 1, "m");
  SyncRedis redis(url_);
  redis.command({"SET", recent::stream_key(prefix, "late"), "not a stream"});  // m's XADD is refused
  a.fanout->publish(m);
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  a.fanout->publish(x);
  auto y = make_message(a.id, "late", 2, "y");
  a.fanout->publish(y);
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  const auto window = read_recent(this, io_, *a.fanout, "late", 100);
  EXPECT_EQ(payloads(window), (std::vector<std::string>{"y"}));
  EXPECT_EQ(a.context.metrics().value("recent_skipped"), 2u) << "m refused, x older than the cut";
  bool from_window = true;
  EXPECT_EQ(payloads(catch_up(window, {x, m, y}, x->id, &from_window)), (std::vector<std::string>{"m", "y"}));
  EXPECT_FALSE(from_window);
}

TEST_F(RedisFanoutIntegrationTest, CallsLostWithTheConnectionLeaveTheWindowWithoutHoles) {
  // Whatever of the window's calls in flight Redis ran before the connection
  // went, the window afterwards is a run of what was published with nothing
  // missing inside it: a client whose last seen message it holds is answered
  // everything after that message.
  nudge::testing::TcpProxy proxy(url_.host == "localhost" ? "127.0.0.1" : url_.host, url_.port);
  Instance& a = add("a", {{"url", "redis://" + (url_.has_password ? ":" + url_.password + "@" : std::string()) +
                                      "127.0.0.1:" + std::to_string(proxy.port())}});
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(5)));
  std::vector<MessagePtr> stored;
  auto say = [&](int n, std::size_t bytes) {
    auto m = make_message(a.id, "lost", n, std::string(bytes, static_cast<char>('a' + n % 26)));
    stored.push_back(m);
    a.fanout->publish(m);
  };
  int n = 0;
  for (; n < 20; ++n) say(n, 10);
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  for (; n < 320; ++n) say(n, 20000);  // 6 MB: the calls are still on the wire when the proxy goes
  run_for(milliseconds(3));
  proxy.down();
  ASSERT_TRUE(run_until([&] { return !a.fanout->connected(); }, std::chrono::seconds(5)));
  for (; n < 325; ++n) say(n, 10);
  proxy.up();
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(10)));
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  std::cout << "[ MEASURED ] " << a.context.metrics().value("recent_errors") << " calls lost in flight, "
            << a.context.metrics().value("recent_missed") << " messages possibly missed" << std::endl;

  const auto window = read_recent(this, io_, *a.fanout, "lost", 1000);
  ASSERT_FALSE(window.empty());
  const auto first =
      std::find_if(stored.begin(), stored.end(), [&](const MessagePtr& m) { return m->id == window[0]->id; });
  ASSERT_NE(first, stored.end());
  const auto start = static_cast<std::size_t>(first - stored.begin());
  ASSERT_EQ(window.size(), stored.size() - start) << "the window is the run from its first message to the last";
  for (std::size_t i = 0; i < window.size(); ++i) EXPECT_EQ(window[i]->id, stored[start + i]->id) << i;
}

/// The process's resident memory, in bytes.
std::size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

TEST_F(RedisFanoutIntegrationTest, ARedisThatHangsHoldsNoMoreThanMaxPendingBytesAndIsReconnected) {
  // The publisher reaches Redis through a proxy that stops forwarding and
  // reading, its connections left open: nothing is answered, nothing refused.
  constexpr std::int64_t kBound = 8 * 1024 * 1024;
  nudge::testing::TcpProxy proxy(url_.host == "localhost" ? "127.0.0.1" : url_.host, url_.port);
  Instance& a = add("a", {{"url", "redis://" + (url_.has_password ? ":" + url_.password + "@" : std::string()) +
                                      "127.0.0.1:" + std::to_string(proxy.port())},
                          {"max_pending_bytes", kBound},
                          {"reply_timeout_ms", std::int64_t{2000}},
                          {"connect_timeout_ms", std::int64_t{500}}});
  Instance& c = add("c");
  ASSERT_TRUE(run_until([&] { return a.fanout->connected() && c.fanout->connected(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(warm_up("hang"));

  const std::string payload(64 * 1024, 'x');
  // Allocated once before measuring, so the first envelopes do not count.
  for (int n = 0; n < 20; ++n) a.fanout->publish(make_message(a.id, "hang", -1, payload));
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  ASSERT_TRUE(run_until([&] { return a.fanout->held_bytes() == 0; }, std::chrono::seconds(5)));

  proxy.hang();
  const std::size_t rss_before = resident_bytes();
  constexpr int kMessages = 1000;  // 64 MB: eight times the bound
  std::int64_t most_held = 0;
  std::size_t most_held_here = 0;
  for (int n = 0; n < kMessages; ++n) {
    a.fanout->publish(make_message(a.id, "hang", n, payload));
    most_held = std::max(most_held, a.context.metrics().gauge_value("held_bytes"));
    most_held_here = std::max(most_held_here, a.fanout->held_bytes());
    if (n % 20 == 19) run_for(milliseconds(2));  // hiredis writes until the socket's buffers are full
  }
  const std::size_t rss_after = resident_bytes();
  const auto dropped = a.context.metrics().value("dropped_while_disconnected");
  std::cout << "held at most " << most_held_here << " bytes (bound " << kBound << "), RSS " << rss_before << " -> "
            << rss_after << " (+" << (rss_after - std::min(rss_after, rss_before)) << "), dropped " << dropped << " of "
            << kMessages << ", publish_errors " << a.context.metrics().value("publish_errors") << "\n";
  EXPECT_LE(most_held_here, static_cast<std::size_t>(kBound));
  EXPECT_LE(most_held, kBound);
  EXPECT_GT(most_held, kBound / 2) << "the gauge shows what is held";
  EXPECT_LT(rss_after, rss_before + 2 * static_cast<std::size_t>(kBound));
  // Each sent durable message is held twice (its PUBLISH, its place in the window's queue).
  EXPECT_GE(dropped, static_cast<std::uint64_t>(kMessages - kBound / (64 * 1024)));
  EXPECT_EQ(a.context.metrics().value("publish_errors"), 0u) << "nothing was answered or lost yet";

  // Nothing answers: the publishing connection is dropped after reply_timeout_ms,
  // and what hiredis held for it is freed.
  ASSERT_TRUE(run_until([&] { return a.context.metrics().value("reply_timeouts") >= 1; }, std::chrono::seconds(5)));
  EXPECT_GT(a.context.metrics().value("publish_errors"), 0u) << "what was in flight is counted lost";
  EXPECT_FALSE(a.fanout->connected());

  proxy.resume();
  ASSERT_TRUE(run_until([&] { return a.fanout->connected(); }, std::chrono::seconds(10)));
  auto after = make_message(a.id, "hang", 5000, "after the hang");
  a.fanout->publish(after);
  ASSERT_TRUE(run_until([&] { return c.receiver.count_from(a.id) > 0 && seq_of(*c.receiver.messages.back()) == 5000; },
                        std::chrono::seconds(5)))
      << "publishing works again once Redis answers";
  ASSERT_TRUE(window_settled(this, io_, {&a}));
  EXPECT_TRUE(run_until([&] { return a.fanout->held_bytes() == 0; }, std::chrono::seconds(5)));
  EXPECT_EQ(a.context.metrics().gauge_value("held_bytes"), 0);
}

}  // namespace
}  // namespace nudge::plugins::redis
