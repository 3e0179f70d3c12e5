// Integration tests against a real NATS server (NATS_URL, or
// nats://127.0.0.1:4222). Skipped when no server answers. Start one with
// `scripts/services/nats start`.
//
// Two fanout instances share one io_context, as two runtime instances would
// share a NATS server: each has its own Context, connection and receiver.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "nats_fanout.hpp"
#include "nudge/sdk/tcp_proxy.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::nats {
namespace {

using Clock = std::chrono::steady_clock;
using nudge::testing::make_config;
using nudge::testing::TestContext;
using std::chrono::milliseconds;

std::string nats_url() {
  const char* env = std::getenv("NATS_URL");
  return env && *env ? env : "nats://127.0.0.1:4222";
}

/// A plain blocking libnats connection for the test's own publishes (never
/// used on the fanout's loop).
struct RawNats {
  natsConnection* nc = nullptr;
  std::string error;

  explicit RawNats(const std::string& url) {
    natsOptions* opts = nullptr;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetURL(opts, url.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 1000);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, false);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK) {
      natsStatus ignored;
      const char* text = nats_GetLastError(&ignored);
      error = text && *text ? text : natsStatus_GetText(s);
      nc = nullptr;
    }
    natsOptions_Destroy(opts);
  }
  ~RawNats() { natsConnection_Destroy(nc); }
  bool ok() const { return nc != nullptr; }
  void publish(const std::string& subject, const std::string& data) {
    ASSERT_EQ(natsConnection_Publish(nc, subject.c_str(), data.data(), static_cast<int>(data.size())), NATS_OK);
  }
  void flush() { ASSERT_EQ(natsConnection_FlushTimeout(nc, 5000), NATS_OK); }
};

/// Records what a fanout hands back. Probe messages (header "probe") only
/// mark which origins have been heard from, so warming up leaves no trace.
struct Recorder final : FanoutReceiver {
  std::vector<MessagePtr> messages;
  std::set<std::string> probes_from;
  std::function<void(const Message&)> on_message;
  void on_fanout_message(MessagePtr message) override {
    for (const auto& [key, value] : message->headers)
      if (key == "probe") {
        probes_from.insert(message->origin + "/" + value);
        return;
      }
    if (on_message) on_message(*message);
    messages.push_back(std::move(message));
  }
};

struct Instance {
  TestContext context;
  Recorder receiver;
  std::unique_ptr<NatsFanout> fanout;
  std::string id;

  Instance(boost::asio::io_context& io, std::string instance_id, const Config& config)
      : context(io, "fanout.nats@" + instance_id, instance_id),
        fanout(std::make_unique<NatsFanout>(config, context)),
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

class NatsFanoutIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = nats_url();
    std::vector<NatsServer> servers;
    std::string error;
    if (!parse_nats_urls(url_, servers, error)) FAIL() << "NATS_URL '" << url_ << "': " << error;
    RawNats probe(url_);
    if (!probe.ok())
      GTEST_SKIP() << "NATS is not reachable at '" << url_ << "' (" << probe.error
                   << "); start it with scripts/services/nats start or set NATS_URL";
    // Subjects no other test run uses, so runs sharing a server never cross.
    static std::atomic<int> counter{0};
    unique_ = std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
              std::to_string(Clock::now().time_since_epoch().count() % 1000000);
    subject_ = "nudge.test." + unique_;
  }

  void TearDown() override { stop_all(); }

  Config config(std::map<std::string, ConfigValue> overrides) {
    overrides.emplace("url", url_);
    overrides.emplace("subject", subject_);
    overrides.emplace("subject_prefix", subject_ + ".room.");
    overrides.emplace("reconnect_wait_ms", std::int64_t{100});
    std::string error;
    Config c = make_config(NatsConfig::schema(), overrides, &error);
    EXPECT_EQ(error, "");
    return c;
  }

  Instance& add(const std::string& name, std::map<std::string, ConfigValue> overrides = {}) {
    instances_.push_back(std::make_unique<Instance>(io_, name + "-" + unique_, config(std::move(overrides))));
    Instance& instance = *instances_.back();
    EXPECT_TRUE(instance.fanout->start(instance.receiver).ok());
    return instance;
  }

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

  /// Publishes a probe from `from` in `room` until `to` hears it.
  bool heard(Instance& from, Instance& to, const std::string& room, const std::string& tag) {
    return run_until(
        [&] {
          from.fanout->publish(make_message(from.id, room, 0, "", tag.c_str()));
          run_for(milliseconds(20));
          return to.receiver.probes_from.count(from.id + "/" + tag) > 0;
        },
        std::chrono::seconds(5));
  }

  void stop_all() {
    int stopped = 0;
    const int n = static_cast<int>(instances_.size());
    for (const auto& instance : instances_) instance->fanout->stop([&] { ++stopped; });
    const auto t0 = Clock::now();
    run_until([&] { return stopped == n; }, std::chrono::seconds(10));
    EXPECT_EQ(stopped, n) << "stop() must call done";
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3)) << "stop() must be prompt";
    for (const auto& instance : instances_)
      EXPECT_EQ(instance->context.logger().count(LogLevel::warn, "did not finish its callbacks"), 0u);
    stopped_.insert(stopped_.end(), std::make_move_iterator(instances_.begin()),
                    std::make_move_iterator(instances_.end()));
    instances_.clear();
  }

  boost::asio::io_context io_;
  std::string url_;
  std::string unique_;
  std::string subject_;
  std::vector<std::unique_ptr<Instance>> instances_;
  std::vector<std::unique_ptr<Instance>> stopped_;  // kept until the test ends (stop() ran)
};

/// Publishes `count` messages from each instance, `chunk` per instance and
/// turn of the loop, skipping turns while more than 1 MiB waits for a
/// link's thread (a producer as fast as the loop would otherwise overrun
/// reconnect_buffer_bytes, and messages would be dropped by design).
void publish_in_chunks(boost::asio::io_context& io, std::vector<Instance*> from, std::int64_t count, std::int64_t chunk,
                       const std::function<MessagePtr(Instance&, std::int64_t)>& make) {
  auto next = std::make_shared<std::int64_t>(0);
  auto step = std::make_shared<std::function<void()>>();
  *step = [&io, from, count, chunk, make, next, step] {
    bool backlog = false;
    for (Instance* i : from) backlog = backlog || i->fanout->waiting_bytes() > 1024 * 1024;
    const std::int64_t end = backlog ? *next : std::min(count, *next + chunk);
    for (; *next < end; ++*next)
      for (Instance* i : from) i->fanout->publish(make(*i, *next));
    if (*next < count) boost::asio::post(io, *step);
    else *step = nullptr;  // breaks the self-reference
  };
  boost::asio::post(io, *step);
}

TEST_F(NatsFanoutIntegrationTest, MeasuresThroughputAndLatency) {
  Instance& a = add("a");
  Instance& b = add("b");
  ASSERT_TRUE(warm_up("lobby"));
  EXPECT_EQ(a.context.metrics().gauge_value("connected"), 1);
  EXPECT_EQ(a.context.logger().count(LogLevel::info, "connected to nats at 'nats://"), 1u);
  // Ignored with a single subject: both still get everything.
  a.fanout->set_room_interest("lobby", false);
  for (const std::size_t payload_bytes : {std::size_t{128}, std::size_t{4096}}) {
    a.receiver.messages.clear();
    b.receiver.messages.clear();
    const std::int64_t per_publisher = payload_bytes <= 128 ? 20000 : 5000;
    const std::string payload(payload_bytes, 'x');
    const auto t0 = Clock::now();
    publish_in_chunks(io_, {&a, &b}, per_publisher, 500,
                      [&](Instance& i, std::int64_t seq) { return make_message(i.id, "lobby", seq, payload); });
    const auto expected = static_cast<std::size_t>(2 * per_publisher);
    ASSERT_TRUE(
        run_until([&] { return a.receiver.messages.size() >= expected && b.receiver.messages.size() >= expected; },
                  std::chrono::seconds(60)))
        << "a received " << a.receiver.messages.size() << ", b " << b.receiver.messages.size() << " of " << expected;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double per_s = static_cast<double>(expected) / seconds;
    std::ostringstream line;
    line.precision(0);
    line << std::fixed << "throughput: " << expected << " messages of " << payload_bytes
         << " bytes from 2 publishers in " << seconds * 1000 << " ms = " << per_s << " messages/s through the fanout ("
         << 2 * per_s << " deliveries/s to 2 subscribers, one event loop for both instances)";
    std::cout << "[ MEASURED ] " << line.str() << std::endl;
    RecordProperty("messages_per_second_" + std::to_string(payload_bytes), static_cast<int>(per_s));
    EXPECT_EQ(a.receiver.messages.size(), expected);
    EXPECT_EQ(b.receiver.messages.size(), expected);
    for (Instance* i : {&a, &b}) {
      EXPECT_GE(i->context.metrics().value("published"), static_cast<std::uint64_t>(per_publisher));
      EXPECT_EQ(i->context.metrics().value("publish_errors"), 0u);
      EXPECT_EQ(i->context.metrics().value("decode_errors"), 0u);
      EXPECT_EQ(i->context.metrics().value("dropped_while_disconnected"), 0u);
      EXPECT_EQ(i->context.metrics().value("dropped_slow_consumer"), 0u);
      EXPECT_EQ(i->context.metrics().value("slow_consumer_events"), 0u);
      EXPECT_GE(i->context.metrics().value("received"), expected);
    }
  }

  // Latency: one message at a time from a to b, publish() to receipt.
  std::vector<double> latencies_us;
  for (int n = 0; n < 300; ++n) {
    const std::size_t before = b.receiver.messages.size();
    const auto t0 = Clock::now();
    a.fanout->publish(make_message(a.id, "lobby", n, "ping"));
    ASSERT_TRUE(run_until([&] { return b.receiver.messages.size() > before; }, std::chrono::seconds(5)));
    latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  std::cout << "[ MEASURED ] latency publish->receive (other instance), 300 sequential messages: p50 "
            << static_cast<int>(latencies_us[150]) << " us, p99 " << static_cast<int>(latencies_us[297]) << " us, max "
            << static_cast<int>(latencies_us.back()) << " us" << std::endl;
}

TEST_F(NatsFanoutIntegrationTest, SubjectPerRoomDeliversOnlyRoomsOfInterest) {
  Instance& a = add("a", {{"subject_per_room", true}});
  Instance& b = add("b", {{"subject_per_room", true}});
  // Rooms that would be a hierarchy ("team.a" under "team") or collide if
  // '.' and ':' were not escaped.
  for (const char* room : {"r1", "team.a", "shared"}) a.fanout->set_room_interest(room, true);
  for (const char* room : {"team:a", "team", "shared"}) b.fanout->set_room_interest(room, true);
  ASSERT_TRUE(run_until([&] { return a.fanout->connected() && b.fanout->connected(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(warm_up("shared"));
  ASSERT_TRUE(heard(a, a, "team.a", "team.a-ready"));
  ASSERT_TRUE(heard(b, b, "team:a", "team:a-ready"));
  ASSERT_TRUE(heard(b, b, "team", "team-ready"));
  run_for(milliseconds(200));
  a.receiver.messages.clear();
  b.receiver.messages.clear();

  constexpr int kEach = 20;
  const std::vector<std::string> rooms{"r1", "r2", "team.a", "team:a", "team", "team.a.b", "team.>", "shared"};
  for (int n = 0; n < kEach; ++n)
    for (Instance* from : {&a, &b})
      for (const auto& room : rooms) from->fanout->publish(make_message(from->id, room, n, room));
  auto rooms_of = [](const Recorder& r) {
    std::map<std::string, int> counts;
    for (const auto& m : r.messages) ++counts[m->room];
    return counts;
  };
  ASSERT_TRUE(
      run_until([&] { return a.receiver.messages.size() >= 6 * kEach && b.receiver.messages.size() >= 6 * kEach; },
                std::chrono::seconds(10)));
  run_for(milliseconds(300));
  EXPECT_EQ(rooms_of(a.receiver),
            (std::map<std::string, int>{{"r1", 2 * kEach}, {"team.a", 2 * kEach}, {"shared", 2 * kEach}}));
  EXPECT_EQ(rooms_of(b.receiver),
            (std::map<std::string, int>{{"team:a", 2 * kEach}, {"team", 2 * kEach}, {"shared", 2 * kEach}}));

  // b leaves "team:a", a joins "r2".
  b.fanout->set_room_interest("team:a", false);
  a.fanout->set_room_interest("r2", true);
  ASSERT_TRUE(heard(a, a, "r2", "r2-ready"));
  run_for(milliseconds(200));
  a.receiver.messages.clear();
  b.receiver.messages.clear();
  for (int n = 0; n < kEach; ++n)
    for (const char* room : {"r2", "team:a", "shared"}) a.fanout->publish(make_message(a.id, room, n, room));
  ASSERT_TRUE(run_until([&] { return a.receiver.messages.size() >= 2 * kEach && b.receiver.messages.size() >= kEach; },
                        std::chrono::seconds(10)));
  run_for(milliseconds(300));
  EXPECT_EQ(rooms_of(a.receiver), (std::map<std::string, int>{{"r2", kEach}, {"shared", kEach}}));
  EXPECT_EQ(rooms_of(b.receiver), (std::map<std::string, int>{{"shared", kEach}})) << "b left team:a";
}

TEST_F(NatsFanoutIntegrationTest, CountsAndSkipsPayloadsThatAreNotEnvelopes) {
  Instance& a = add("a");
  ASSERT_TRUE(warm_up("lobby"));
  RawNats client(url_);
  ASSERT_TRUE(client.ok()) << client.error;
  for (const std::string& junk :
       {std::string("hello"), std::string(), std::string("NG\x01garbage", 10), std::string(1000, '\xff')})
    client.publish(subject_, junk);
  client.flush();
  a.fanout->publish(make_message(a.id, "lobby", 0, "after junk"));
  ASSERT_TRUE(run_until([&] { return a.receiver.messages.size() == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(a.receiver.messages[0]->payload, "after junk");
  EXPECT_EQ(a.context.metrics().value("decode_errors"), 4u);
  EXPECT_EQ(a.context.logger().count(LogLevel::warn, "not a Nudge envelope"), 1u) << "rate-limited";
}

TEST_F(NatsFanoutIntegrationTest, DropsAndCountsWhenTheLoopFallsBehind) {
  Instance& a = add("a", {{"max_pending_messages", std::int64_t{10}}});
  ASSERT_TRUE(warm_up("lobby"));
  run_for(milliseconds(300));  // late probes arrive now
  const std::uint64_t received_before = a.context.metrics().value("received");
  // 500 messages arrive while the event loop is not running.
  RawNats client(url_);
  ASSERT_TRUE(client.ok()) << client.error;
  for (int n = 0; n < 500; ++n) client.publish(subject_, make_message("raw", "lobby", n, "burst")->envelope());
  client.flush();
  std::this_thread::sleep_for(milliseconds(500));
  run_for(milliseconds(300));
  EXPECT_EQ(a.context.metrics().value("received") - received_before, 10u) << "max_pending_messages were kept";
  EXPECT_GT(a.context.metrics().value("dropped_slow_consumer"), 0u);
  EXPECT_GE(a.context.metrics().value("slow_consumer_events"), 1u);
  EXPECT_EQ(a.context.logger().count(LogLevel::warn, "slow consumer"), 1u) << "rate-limited";
  // In order, without gaps, up to the drop.
  for (std::size_t n = 0; n < a.receiver.messages.size(); ++n)
    EXPECT_EQ(seq_of(*a.receiver.messages[n]), static_cast<std::int64_t>(n));
  // And it goes on once the loop has caught up.
  a.fanout->publish(make_message(a.id, "lobby", 0, "after the burst"));
  ASSERT_TRUE(run_until([&] { return a.receiver.messages.size() == 11; }, std::chrono::seconds(5)));
  EXPECT_EQ(a.receiver.messages.back()->payload, "after the burst");
  // libnats's own count is read as it reports and, at the latest, at stop.
  stop_all();
  EXPECT_EQ(a.context.metrics().value("dropped_slow_consumer"), 490u)
      << "dropped by the plugin's queue and by libnats, all counted";
}

/// Publishes from every instance every 10 ms, numbering messages per
/// instance, and records how long each publish() call took.
struct Ticker {
  boost::asio::steady_timer timer;
  std::vector<Instance*> from;
  std::int64_t seq = 0;
  bool running = true;
  Clock::duration slowest_publish{};
  Ticker(boost::asio::io_context& io, std::vector<Instance*> instances) : timer(io), from(std::move(instances)) {
    tick();
  }
  void tick() {
    for (Instance* i : from) {
      auto m = make_message(i->id, "lobby", seq, "tick");
      const auto t0 = Clock::now();
      i->fanout->publish(m);
      slowest_publish = std::max(slowest_publish, Clock::now() - t0);
    }
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

/// Every instance received a message from each instance numbered above `seq`.
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

TEST_F(NatsFanoutIntegrationTest, ResumesDeliveryAfterTheServerRestarts) {
  const std::filesystem::path script = std::filesystem::path(NUDGE_SOURCE_DIR) / "scripts/services/nats";
  if (!std::filesystem::exists(script)) GTEST_SKIP() << script << " does not exist";
  std::vector<NatsServer> servers;
  std::string error;
  parse_nats_urls(url_, servers, error);
  if (servers.size() != 1 || servers[0].port != 4222 ||
      (servers[0].host != "127.0.0.1" && servers[0].host != "localhost"))
    GTEST_SKIP() << "NATS_URL is not the server that scripts/services/nats manages";
  if (std::system((script.string() + " status >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP()
        << "the NATS server at 127.0.0.1:4222 was not started by scripts/services/nats, so it is not restarted";

  Instance& a = add("a");
  Instance& b = add("b");
  ASSERT_TRUE(warm_up("lobby"));
  Ticker ticker(io_, {&a, &b});
  run_for(milliseconds(200));

  ASSERT_EQ(std::system((script.string() + " stop >&2").c_str()), 0);
  const std::int64_t seq_at_stop = ticker.seq;
  run_for(milliseconds(1500));  // both notice and keep retrying; publishes are held by libnats
  EXPECT_FALSE(a.fanout->connected());
  EXPECT_EQ(a.context.metrics().gauge_value("connected"), 0);
  EXPECT_EQ(b.context.metrics().gauge_value("connected"), 0);
  ASSERT_EQ(std::system((script.string() + " start >/dev/null").c_str()), 0);
  const std::int64_t seq_at_start = ticker.seq;
  const auto t0 = Clock::now();
  ASSERT_TRUE(run_until(
      [&] {
        return delivered_after({&a, &b}, seq_at_start);
      },
      std::chrono::seconds(5)))
      << "delivery did not resume within 5 s of the server being back";
  const auto resumed_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  run_for(milliseconds(300));
  std::size_t during_outage = 0;
  for (const auto& m : a.receiver.messages)
    if (seq_of(*m) > seq_at_stop && seq_of(*m) <= seq_at_start) ++during_outage;
  std::cout << "[ MEASURED ] delivery resumed " << resumed_ms << " ms after the server was back; " << during_outage
            << " of " << 2 * (seq_at_start - seq_at_stop)
            << " messages published during the outage reached instance a (held by libnats, sent on reconnect); "
               "slowest publish() call "
            << std::chrono::duration_cast<std::chrono::microseconds>(ticker.slowest_publish).count() << " us"
            << std::endl;
  EXPECT_LT(ticker.slowest_publish, milliseconds(20)) << "publish() must never block the loop";
  for (Instance* i : {&a, &b}) {
    SCOPED_TRACE(i->id);
    expect_in_order_without_duplicates(*i);
    EXPECT_EQ(i->context.metrics().value("reconnects"), 1u);
    EXPECT_EQ(i->context.metrics().gauge_value("connected"), 1);
    EXPECT_EQ(i->context.logger().count(LogLevel::warn, "lost the connection to nats"), 1u);
    EXPECT_EQ(i->context.logger().count(LogLevel::info, "reconnected to nats at 'nats://127.0.0.1:4222'"), 1u);
    EXPECT_EQ(i->context.logger().count(LogLevel::warn, "reconnected"), 0u) << "logged at info, not as a warning";
    EXPECT_EQ(i->context.metrics().value("publish_errors"), 0u);
  }
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

TEST_F(NatsFanoutIntegrationTest, AServerThatHangsHoldsNoMoreThanTheReconnectBuffers) {
  // The publisher reaches NATS through a proxy that stops forwarding and
  // reading, its connection left open. What the fanout may hold: its queue
  // for the link's thread (reconnect_buffer_bytes), libnats's write buffer
  // until a write outlasts connect_timeout_ms (the write deadline) and fails
  // the connection, then libnats's reconnect buffer (reconnect_buffer_bytes).
  std::vector<NatsServer> servers;
  std::string error;
  parse_nats_urls(url_, servers, error);
  if (servers.size() != 1 || servers[0].has_credentials) GTEST_SKIP() << "needs one NATS server without credentials";
  constexpr std::int64_t kBuffer = 4 * 1024 * 1024;
  nudge::testing::TcpProxy proxy(servers[0].host == "localhost" ? "127.0.0.1" : servers[0].host, servers[0].port);
  Instance& a = add("a", {{"url", "nats://127.0.0.1:" + std::to_string(proxy.port())},
                          {"reconnect_buffer_bytes", kBuffer},
                          {"connect_timeout_ms", std::int64_t{500}}});
  Instance& b = add("b");
  ASSERT_TRUE(warm_up("hang"));
  const std::string payload(64 * 1024, 'x');
  for (int n = 0; n < 20; ++n) a.fanout->publish(make_message(a.id, "hang", -1, payload));
  run_for(milliseconds(200));

  proxy.hang();
  const std::size_t rss_before = resident_bytes();
  constexpr int kMessages = 1000;  // 64 MB
  std::size_t most_waiting = 0;
  for (int n = 0; n < kMessages; ++n) {
    a.fanout->publish(make_message(a.id, "hang", n, payload));
    most_waiting = std::max(most_waiting, a.fanout->waiting_bytes());
    if (n % 20 == 19) run_for(milliseconds(2));
  }
  run_for(milliseconds(1500));  // the write deadline passes: libnats holds the rest in its reconnect buffer
  const std::size_t rss_after = resident_bytes();
  const auto dropped = a.context.metrics().value("dropped_while_disconnected");
  std::cout << "waiting for the link at most " << most_waiting << " bytes (reconnect_buffer_bytes " << kBuffer
            << "), RSS " << rss_before << " -> " << rss_after << " (+" << (rss_after - std::min(rss_after, rss_before))
            << "), dropped " << dropped << " of " << kMessages << "\n";
  EXPECT_LE(most_waiting, static_cast<std::size_t>(kBuffer) + payload.size() + 1024);
  EXPECT_LT(rss_after, rss_before + 4 * static_cast<std::size_t>(kBuffer)) << "two buffers of kBuffer, and slack";
  EXPECT_GT(dropped, static_cast<std::uint64_t>(kMessages / 2));

  proxy.resume();
  ASSERT_TRUE(heard(a, b, "hang", "after the hang")) << "publishing works again once NATS answers";
}

}  // namespace
}  // namespace nudge::plugins::nats
