// Against the three-node cluster of scripts/services/nats-cluster
// (NATS_CLUSTER_URLS, or nats://127.0.0.1:14222-14224). Skipped when a node
// does not answer. A test that kills a node brings it back with
// `scripts/services/nats-cluster start` when it ends.
//
// Two fanout instances on one io_context, connected to different nodes, send
// each other (and themselves) a steady stream of room messages; a node is
// SIGKILLed under that load and the test measures, for every
// (sender, receiver) pair, how long delivery is interrupted and what is lost.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "nats_fanout.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::nats {
namespace {

using Clock = std::chrono::steady_clock;
using nudge::testing::make_config;
using nudge::testing::TestContext;
using std::chrono::milliseconds;

std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : std::move(fallback);
}

std::vector<NatsServer> cluster_servers() {
  const std::string text =
      env_or("NATS_CLUSTER_URLS", "nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224");
  std::vector<NatsServer> servers;
  std::string error;
  if (!parse_nats_urls(text, servers, error)) ADD_FAILURE() << "NATS_CLUSTER_URLS: " << error;
  return servers;
}

std::string url_of(const NatsServer& s) { return "nats://" + s.endpoint(); }

std::string join(const std::vector<NatsServer>& servers) {
  std::string text;
  for (const auto& s : servers) text += (text.empty() ? "" : ",") + url_of(s);
  return text;
}

/// Whether a server answers a plain connect (no reconnects).
bool answers(const std::string& url) {
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, url.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 1000);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, false);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(opts);
  return s == NATS_OK;
}

std::string var_dir() { return env_or("NUDGE_VAR_DIR", std::string(NUDGE_SOURCE_DIR) + "/var"); }

/// The pid of node `index` (1-based) from the script's pid file, checked
/// against its command line so that nothing else is ever killed.
std::optional<pid_t> node_pid(int index) {
  const std::string conf = "nats-cluster/n" + std::to_string(index) + ".conf";
  std::ifstream pidfile(var_dir() + "/services/nats-cluster/n" + std::to_string(index) + ".pid");
  long pid = 0;
  if (!(pidfile >> pid) || pid <= 1) return std::nullopt;
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  if (args.find("nats-server") == std::string::npos || args.find(conf) == std::string::npos) return std::nullopt;
  return static_cast<pid_t>(pid);
}

struct Received {
  std::int64_t seq;
  Clock::time_point at;
};

/// Records the seq and arrival time of every message, by origin.
struct Recorder final : FanoutReceiver {
  std::map<std::string, std::vector<Received>> from;
  std::set<std::string> probes_from;
  void on_fanout_message(MessagePtr message) override {
    for (const auto& [key, value] : message->headers) {
      if (key == "probe") {
        probes_from.insert(message->origin);
        return;
      }
      if (key == "seq") from[message->origin].push_back({std::stoll(value), Clock::now()});
    }
  }
};

struct Instance {
  TestContext context;
  Recorder receiver;
  std::unique_ptr<NatsFanout> fanout;
  std::string id;
  std::vector<Clock::time_point> sent_at;  // by seq

  Instance(boost::asio::io_context& io, std::string instance_id, const Config& config)
      : context(io, "fanout.nats@" + instance_id, instance_id),
        fanout(std::make_unique<NatsFanout>(config, context)),
        id(std::move(instance_id)) {}

  std::uint64_t metric(const char* name) { return context.metrics().value(name); }
};

MessagePtr make_message(const std::string& origin, const std::string& room, std::int64_t seq, bool probe) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = room;
  m->sender = "user-of-" + origin;
  m->payload = std::string(200, static_cast<char>('a' + seq % 26));
  m->origin = origin;
  m->headers = {{probe ? "probe" : "seq", std::to_string(seq)}};
  return m;
}

/// What one receiver got from one sender around the kill.
struct PairReport {
  std::string name;
  std::int64_t sent = 0;
  std::int64_t received = 0;
  std::int64_t duplicates_or_reordered = 0;
  std::int64_t lost = 0;
  std::int64_t sent_in_gap = 0;      // sent between the kill and the recovery
  std::int64_t received_in_gap = 0;  // of those, received
  std::int64_t recovery_ms = -1;     // kill → first message after which nothing is lost
  std::int64_t lost_in_last_second = 0;
  std::int64_t lost_before_kill = 0;  // in flight through the killed node
  std::int64_t earliest_lost_ms = 0;  // how long before the kill the earliest of those was sent
};

PairReport analyse(const std::string& name, const Instance& sender, const Recorder& receiver,
                   Clock::time_point killed_at) {
  PairReport r;
  r.name = name;
  r.sent = static_cast<std::int64_t>(sender.sent_at.size());
  std::vector<const Received*> by_seq(sender.sent_at.size(), nullptr);
  std::int64_t previous = -1;
  if (auto it = receiver.from.find(sender.id); it != receiver.from.end())
    for (const Received& got : it->second) {
      if (got.seq <= previous) ++r.duplicates_or_reordered;
      previous = std::max(previous, got.seq);
      if (got.seq >= 0 && got.seq < r.sent && !by_seq[static_cast<std::size_t>(got.seq)]) {
        by_seq[static_cast<std::size_t>(got.seq)] = &got;
        ++r.received;
      }
    }
  r.lost = r.sent - r.received;
  // The last message lost, or the last one sent before the kill when none was.
  std::int64_t last_bad = -1;
  for (std::int64_t seq = 0; seq < r.sent; ++seq) {
    const auto s = static_cast<std::size_t>(seq);
    if (!by_seq[s] || sender.sent_at[s] <= killed_at) last_bad = seq;
  }
  std::optional<Clock::time_point> recovered_at;
  if (last_bad + 1 < r.sent && by_seq[static_cast<std::size_t>(last_bad + 1)])
    recovered_at = by_seq[static_cast<std::size_t>(last_bad + 1)]->at;
  if (recovered_at) r.recovery_ms = std::chrono::duration_cast<milliseconds>(*recovered_at - killed_at).count();
  const Clock::time_point end = sender.sent_at.empty() ? killed_at : sender.sent_at.back();
  for (std::int64_t seq = 0; seq < r.sent; ++seq) {
    const auto s = static_cast<std::size_t>(seq);
    const Clock::time_point at = sender.sent_at[s];
    if (at > killed_at && (!recovered_at || at <= *recovered_at)) {
      ++r.sent_in_gap;
      if (by_seq[s]) ++r.received_in_gap;
    }
    if (at > end - std::chrono::seconds(1) && !by_seq[s]) ++r.lost_in_last_second;
    if (at <= killed_at && !by_seq[s]) {
      ++r.lost_before_kill;
      r.earliest_lost_ms =
          std::max(r.earliest_lost_ms, std::chrono::duration_cast<milliseconds>(killed_at - at).count());
    }
  }
  return r;
}

class NatsFanoutClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    servers_ = cluster_servers();
    ASSERT_EQ(servers_.size(), 3u) << "the cluster tests expect three nodes";
    for (const auto& s : servers_)
      if (!answers(url_of(s)))
        GTEST_SKIP() << "the NATS cluster node at " << url_of(s)
                     << " does not answer; start it with scripts/services/nats-cluster start";
    static std::atomic<int> counter{0};
    unique_ = std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
              std::to_string(Clock::now().time_since_epoch().count() % 1000000);
    room_ = "room." + unique_;  // a '.' in the room: one escaped subject token
  }

  void TearDown() override {
    stop_all();
    if (killed_) {
      const std::string command = std::string(NUDGE_SOURCE_DIR) + "/scripts/services/nats-cluster start >/dev/null";
      EXPECT_EQ(std::system(command.c_str()), 0) << "could not bring the killed node back";
    }
  }

  Instance& add(const std::string& name, const std::string& url) {
    std::string error;
    Config config = make_config(NatsConfig::schema(),
                                {{"url", url},
                                 {"subject_per_room", true},
                                 {"subject_prefix", "nudge.cluster-test." + unique_ + "."},
                                 {"reconnect_wait_ms", std::int64_t{100}},
                                 {"connect_timeout_ms", std::int64_t{1000}}},
                                &error);
    EXPECT_EQ(error, "");
    instances_.push_back(std::make_unique<Instance>(io_, name + "-" + unique_, config));
    Instance& instance = *instances_.back();
    instance.fanout->set_room_interest(room_, true);
    EXPECT_TRUE(instance.fanout->start(instance.receiver).ok());
    EXPECT_TRUE(run_until([&] { return instance.fanout->connected(); }, std::chrono::seconds(5)));
    return instance;
  }

  template <class Predicate>
  bool run_until(Predicate done, milliseconds timeout) {
    return nudge::testing::run_until(io_, std::move(done), timeout);
  }

  /// Probes until every instance heard every instance: the subscriptions
  /// have reached every node over the routes.
  bool warm_up() {
    auto all_heard = [&] {
      for (const auto& r : instances_)
        for (const auto& s : instances_)
          if (!r->receiver.probes_from.count(s->id)) return false;
      return true;
    };
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!all_heard() && Clock::now() < deadline) {
      for (const auto& s : instances_) s->fanout->publish(make_message(s->id, room_, 0, true));
      run_until(all_heard, milliseconds(50));
    }
    return all_heard();
  }

  /// 1-based index of the node `instance` is connected to, 0 if unknown.
  int node_of(const Instance& instance) const {
    for (std::size_t i = 0; i < servers_.size(); ++i)
      if (instance.fanout->server_url() == url_of(servers_[i])) return static_cast<int>(i) + 1;
    return 0;
  }

  void kill_node(int index) {
    const std::optional<pid_t> pid = node_pid(index);
    ASSERT_TRUE(pid) << "no pid for node " << index << " under " << var_dir() << "/services/nats-cluster";
    ASSERT_EQ(::kill(*pid, SIGKILL), 0);
    killed_ = true;
  }

  /// Every instance publishes one message each `period` until `stop` says so.
  void start_load(milliseconds period, const std::function<bool()>& stop) {
    auto timer = std::make_shared<boost::asio::steady_timer>(io_);
    auto tick = std::make_shared<std::function<void()>>();
    *tick = [this, period, stop, timer, tick] {
      if (stop()) {
        load_running_ = false;
        *tick = nullptr;  // breaks the self-reference; this closure is gone after it
        return;
      }
      for (const auto& i : instances_) {
        i->fanout->publish(make_message(i->id, room_, static_cast<std::int64_t>(i->sent_at.size()), false));
        i->sent_at.push_back(Clock::now());
      }
      timer->expires_at(timer->expiry() + period);
      timer->async_wait([tick](const boost::system::error_code& ec) {
        if (!ec && *tick) (*tick)();
      });
    };
    load_running_ = true;
    timer->expires_after(period);
    timer->async_wait([tick](const boost::system::error_code& ec) {
      if (!ec && *tick) (*tick)();
    });
  }

  void stop_all() {
    int stopped = 0;
    const int n = static_cast<int>(instances_.size());
    for (const auto& instance : instances_) instance->fanout->stop([&] { ++stopped; });
    run_until([&] { return stopped == n; }, std::chrono::seconds(10));
    EXPECT_EQ(stopped, n) << "stop() must call done";
    stopped_.insert(stopped_.end(), std::make_move_iterator(instances_.begin()),
                    std::make_move_iterator(instances_.end()));
    instances_.clear();
  }

  boost::asio::io_context io_;
  std::vector<NatsServer> servers_;
  std::string unique_;
  std::string room_;
  bool killed_ = false;
  bool load_running_ = false;
  std::vector<std::unique_ptr<Instance>> instances_;
  std::vector<std::unique_ptr<Instance>> stopped_;
};

constexpr auto kPeriod = milliseconds(2);  // 500 messages/s per instance

TEST_F(NatsFanoutClusterTest, DeliveryComesBackWithin5sWhenTheNodeOfAnInstanceIsKilledUnderLoad) {
  // a knows all three nodes; b only the two a is not on, so they are on
  // different nodes and b's node survives.
  Instance& a = add("a", join(servers_));
  const int a_node = node_of(a);
  ASSERT_NE(a_node, 0) << "a is connected to '" << a.fanout->server_url() << "'";
  std::vector<NatsServer> others;
  for (std::size_t i = 0; i < servers_.size(); ++i)
    if (static_cast<int>(i) + 1 != a_node) others.push_back(servers_[i]);
  Instance& b = add("b", join(others));
  const int b_node = node_of(b);
  ASSERT_NE(b_node, 0);
  ASSERT_NE(a_node, b_node);
  ASSERT_TRUE(warm_up()) << "the instances do not hear each other across the cluster";

  std::optional<Clock::time_point> killed_at;
  Clock::time_point stop_at = Clock::now() + std::chrono::seconds(30);
  start_load(kPeriod, [&] { return Clock::now() >= stop_at; });
  run_until([] { return false; }, milliseconds(1000));
  kill_node(a_node);
  killed_at = Clock::now();
  // Load goes on until a is connected again and 1.5 s of traffic went
  // through after that, or 8 s after the kill at most.
  stop_at = *killed_at + std::chrono::seconds(8);
  std::optional<Clock::time_point> back_at;
  run_until(
      [&] {
        // The reconnect count, not connected(): the loss and the reconnect
        // may both be handled between two looks.
        if (!back_at && a.metric("reconnects") > 0) {
          back_at = Clock::now();
          stop_at = std::min(stop_at, *back_at + milliseconds(1500));
        }
        return !load_running_;
      },
      std::chrono::seconds(12));
  ASSERT_FALSE(load_running_);
  // What is still in flight arrives.
  auto all_in = [&] {
    for (Instance* r : {&a, &b})
      for (Instance* s : {&a, &b}) {
        auto it = r->receiver.from.find(s->id);
        if (it == r->receiver.from.end() || it->second.empty() ||
            it->second.back().seq + 1 < static_cast<std::int64_t>(s->sent_at.size()))
          return false;
      }
    return true;
  };
  EXPECT_TRUE(run_until(all_in, std::chrono::seconds(3))) << "the last messages sent did not arrive";

  ASSERT_TRUE(back_at) << "a never reconnected";
  const int a_new_node = node_of(a);
  std::cout << "[ MEASURED ] node " << a_node << " (a's) SIGKILLed; a reconnected to node " << a_new_node << " after "
            << std::chrono::duration_cast<milliseconds>(*back_at - *killed_at).count() << " ms; b stayed on node "
            << b_node << "; load " << 1000 / kPeriod.count() << " messages/s per instance" << std::endl;
  for (const PairReport& r :
       {analyse("a -> b", a, b.receiver, *killed_at), analyse("b -> a", b, a.receiver, *killed_at),
        analyse("a -> a", a, a.receiver, *killed_at), analyse("b -> b", b, b.receiver, *killed_at)}) {
    SCOPED_TRACE(r.name);
    std::cout << "[ MEASURED ] " << r.name << ": sent " << r.sent << ", received " << r.received << ", lost " << r.lost
              << "; delivery back " << r.recovery_ms << " ms after the kill; during that gap sent " << r.sent_in_gap
              << ", received " << r.received_in_gap << ", lost " << r.sent_in_gap - r.received_in_gap
              << "; lost in flight (sent before the kill) " << r.lost_before_kill << ", the earliest sent "
              << r.earliest_lost_ms << " ms before it" << std::endl;
    EXPECT_GE(r.recovery_ms, 0) << "delivery never came back";
    EXPECT_LT(r.recovery_ms, 5000) << "delivery must be back within 5 s";
    EXPECT_EQ(r.duplicates_or_reordered, 0) << "at most once, in order per publisher";
    EXPECT_EQ(r.lost_in_last_second, 0) << "after the failover nothing may be lost";
    // At-most-once loses what was in flight through the killed node (sent
    // shortly before the kill, not yet forwarded) and what was sent in the
    // gap; nothing sent earlier.
    EXPECT_EQ(r.lost, r.lost_before_kill + r.sent_in_gap - r.received_in_gap);
    EXPECT_LT(r.earliest_lost_ms, 500) << "a message sent well before the kill was lost";
  }
  EXPECT_NE(a_new_node, 0);
  EXPECT_NE(a_new_node, a_node) << "a must have failed over to a live node";
  EXPECT_EQ(a.metric("reconnects"), 1u);
  EXPECT_EQ(a.metric("failovers"), 1u);
  EXPECT_EQ(a.context.logger().count(LogLevel::warn, "lost the connection to nats at '" + url_of(servers_[a_node - 1])),
            1u);
  EXPECT_EQ(a.context.logger().count(LogLevel::info, "(failed over from '" + url_of(servers_[a_node - 1]) + "'"), 1u);
  EXPECT_EQ(b.metric("reconnects"), 0u) << "b's node stayed up";
  EXPECT_EQ(b.metric("failovers"), 0u);
  for (Instance* i : {&a, &b}) {
    EXPECT_EQ(i->metric("publish_errors"), 0u);
    EXPECT_EQ(i->metric("dropped_while_disconnected"), 0u) << "the reconnect buffer held a's messages";
    EXPECT_EQ(i->metric("dropped_slow_consumer"), 0u);
  }
}

TEST_F(NatsFanoutClusterTest, KillingANodeNoInstanceUsesLosesNothing) {
  Instance& a = add("a", url_of(servers_[0]));
  Instance& b = add("b", url_of(servers_[1]));
  ASSERT_TRUE(warm_up());
  bool stop = false;
  start_load(kPeriod, [&] { return stop; });
  run_until([] { return false; }, milliseconds(500));
  kill_node(3);
  const Clock::time_point killed_at = Clock::now();
  run_until([] { return false; }, milliseconds(1000));
  stop = true;
  run_until([&] { return !load_running_; }, std::chrono::seconds(2));
  run_until([] { return false; }, milliseconds(300));
  for (const PairReport& r :
       {analyse("a -> b", a, b.receiver, killed_at), analyse("b -> a", b, a.receiver, killed_at)}) {
    SCOPED_TRACE(r.name);
    std::cout << "[ MEASURED ] node 3 (unused) killed; " << r.name << ": sent " << r.sent << ", received " << r.received
              << ", lost " << r.lost << std::endl;
    EXPECT_GT(r.sent, 500);
    EXPECT_EQ(r.lost, 0);
    EXPECT_EQ(r.duplicates_or_reordered, 0);
  }
  EXPECT_EQ(a.metric("reconnects") + b.metric("reconnects"), 0u);
}

}  // namespace
}  // namespace nudge::plugins::nats
