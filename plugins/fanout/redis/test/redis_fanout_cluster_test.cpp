// The redis fanout's cluster mode against a real Redis Cluster
// (REDIS_CLUSTER_URL, default redis://127.0.0.1:7001: three masters and three
// replicas from `scripts/services/redis-cluster start`). Skipped when it does
// not answer. These tests SIGKILL masters and move slots: never point them at
// a cluster anyone else uses. A killed node is relaunched (it rejoins as a
// replica) by the same script after the test.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cluster_slots.hpp"
#include "config.hpp"
#include "nudge/sdk/testing.hpp"
#include "redis_fanout.hpp"

namespace nudge::plugins::redis {
namespace {

using Clock = std::chrono::steady_clock;
using nudge::testing::make_config;
using nudge::testing::TestContext;
using std::chrono::milliseconds;

std::string cluster_url() {
  const char* env = std::getenv("REDIS_CLUSTER_URL");
  return env && *env ? env : "redis://127.0.0.1:7001";
}

/// A blocking connection to one node, for the test's own commands.
struct Node {
  redisContext* c = nullptr;
  explicit Node(const std::string& address) {
    std::string host;
    std::uint16_t port = 0;
    if (parse_host_port(address, host, port)) c = redisConnectWithTimeout(host.c_str(), port, timeval{1, 0});
  }
  ~Node() {
    if (c) redisFree(c);
  }
  bool ok() const { return c && !c->err; }
  /// The reply, owned; null when the connection failed.
  std::unique_ptr<redisReply, void (*)(void*)> run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    void* r = ok() ? redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()) : nullptr;
    return {static_cast<redisReply*>(r), &freeReplyObject};
  }
  std::string text(const std::vector<std::string>& args) {
    auto r = run(args);
    if (!r) return "<no connection>";
    if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
    return r->str ? std::string(r->str, r->len) : std::string();
  }
};

std::vector<cluster::Shard> shards_of(const std::string& address) {
  Node n(address);
  auto reply = n.run({"CLUSTER", "SHARDS"});
  std::vector<cluster::Shard> shards;
  std::string error;
  if (reply) cluster::parse_shards(reply.get(), shards, error);
  return shards;
}

std::string owner_in(const std::vector<cluster::Shard>& shards, std::uint16_t slot) {
  for (const auto& s : shards)
    for (const auto& [a, b] : s.ranges)
      if (slot >= a && slot <= b) return s.address;
  return {};
}

long long pid_of(const std::string& address) {
  Node n(address);
  const std::string info = n.text({"INFO", "server"});
  const auto at = info.find("process_id:");
  return at == std::string::npos ? -1 : std::stoll(info.substr(at + 11));
}

struct Recorder final : FanoutReceiver {
  std::map<std::string, std::vector<std::int64_t>> by_room;  // seqs as received
  std::map<std::string, Clock::time_point> first_after;      // room -> first message sent after `mark`
  std::set<std::string> probed;
  std::int64_t mark = -1;  // seq from which first_after is recorded
  Clock::time_point last_arrival{};
  std::int64_t longest_gap_ms = 0;
  void on_fanout_message(MessagePtr m) override {
    const auto now = Clock::now();
    if (last_arrival != Clock::time_point{})
      longest_gap_ms =
          std::max<std::int64_t>(longest_gap_ms, std::chrono::duration_cast<milliseconds>(now - last_arrival).count());
    last_arrival = now;
    for (const auto& [k, v] : m->headers) {
      if (k == "probe") {
        probed.insert(m->room);
        return;
      }
      if (k == "seq") {
        const std::int64_t seq = std::stoll(v);
        by_room[m->room].push_back(seq);
        if (mark >= 0 && seq >= mark) first_after.try_emplace(m->room, now);
      }
    }
  }
};

MessagePtr message(const std::string& room, std::int64_t seq, bool probe = false) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = room;
  m->sender = "tester";
  m->origin = "a";
  m->payload = "payload " + std::to_string(seq) + std::string(static_cast<std::size_t>(seq % 200), 'x');
  m->headers = {{probe ? "probe" : "seq", std::to_string(seq)}};
  return m;
}

struct Instance {
  TestContext context;
  Recorder receiver;
  std::unique_ptr<RedisFanout> fanout;
  Instance(boost::asio::io_context& io, const std::string& id, const Config& config)
      : context(io, "fanout.redis@" + id, id), fanout(std::make_unique<RedisFanout>(config, context)) {}
};

class RedisClusterFanoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);
    url_ = cluster_url();
    std::string error;
    if (!parse_redis_url(url_, parsed_, error)) FAIL() << url_ << ": " << error;
    Node probe(parsed_.endpoint());
    if (!probe.ok() || probe.text({"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos)
      GTEST_SKIP() << "no Redis Cluster at '" << url_ << "'; start one with scripts/services/redis-cluster start "
                   << "or set REDIS_CLUSTER_URL";
    unique_ = std::to_string(::getpid()) + "-" + std::to_string(Clock::now().time_since_epoch().count() % 1000000);
  }

  void TearDown() override {
    instances_.clear();
    if (killed_) {
      // The killed node comes back and rejoins as a replica of its successor.
      const std::string cmd = std::string(NUDGE_SOURCE_DIR) + "/scripts/services/redis-cluster start >/dev/null";
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }

  Config config() {
    return make_config(RedisConfig::schema(), {{"url", url_},
                                               {"cluster", true},
                                               {"channel_per_room", true},
                                               {"channel_prefix", "nudge:ctest:" + unique_ + ":room:"},
                                               {"recent_key_prefix", "nudge:ctest:" + unique_ + ":recent:"},
                                               {"recent_ttl_s", std::int64_t{300}},
                                               {"reconnect_initial_ms", std::int64_t{50}},
                                               {"reconnect_max_ms", std::int64_t{250}},
                                               {"connect_timeout_ms", std::int64_t{500}}});
  }

  Instance& add(const std::string& id) {
    instances_.push_back(std::make_unique<Instance>(io_, id, config()));
    auto& i = *instances_.back();
    EXPECT_TRUE(i.fanout->start(i.receiver).ok());
    return i;
  }

  bool run_until(const std::function<bool()>& done, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      io_.run_for(milliseconds(5));
    }
    return true;
  }

  /// Rooms and the master that owns each, `n` of them.
  std::vector<std::string> rooms(int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back("r" + std::to_string(i));
    return out;
  }

  /// Every instance subscribed to `rooms` and hearing probes from the first.
  void join_all(const std::vector<std::string>& rs) {
    for (auto& i : instances_)
      for (const auto& r : rs) i->fanout->set_room_interest(r, true);
    ASSERT_TRUE(run_until(
        [&] {
          for (auto& i : instances_)
            if (!i->fanout->connected()) return false;
          return true;
        },
        milliseconds(5000)))
        << "not connected to the cluster";
    // Probes until every instance hears every room: its SSUBSCRIBEs went through.
    ASSERT_TRUE(run_until(
        [&] {
          for (const auto& r : rs) instances_[0]->fanout->publish(message(r, 0, true));
          io_.run_for(milliseconds(50));
          for (auto& i : instances_)
            if (i->receiver.probed.size() < rs.size()) return false;
          return true;
        },
        milliseconds(5000)))
        << "subscriptions did not reach every shard";
  }

  std::string url_;
  RedisUrl parsed_;
  std::string unique_;
  bool killed_ = false;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

TEST_F(RedisClusterFanoutTest, RoomsSpreadOverEveryShardAndReachOtherInstances) {
  auto& a = add("a");
  auto& b = add("b");
  const auto rs = rooms(24);
  join_all(rs);
  if (HasFatalFailure()) return;

  // Each shard owns some of the rooms, by the cluster's own map and by the fanout's.
  const auto shards = shards_of(parsed_.endpoint());
  ASSERT_EQ(shards.size(), 3u);
  std::map<std::string, std::vector<std::string>> per_shard;
  for (const auto& r : rs) {
    const auto slot = cluster::key_slot("nudge:ctest:" + unique_ + ":room:{" + r + "}");
    const std::string owner = owner_in(shards, slot);
    EXPECT_EQ(a.fanout->cluster()->owner_of(r), owner) << r;
    per_shard[owner].push_back(r);
  }
  ASSERT_EQ(per_shard.size(), 3u) << "the test rooms do not cover all three shards";
  for (const auto& [owner, owned] : per_shard) {
    EXPECT_GE(owned.size(), 1u) << owner;
    // Sharded Pub/Sub: both instances are subscribed on the owner, nowhere else.
    Node n(owner);
    auto reply = n.run({"PUBSUB", "SHARDNUMSUB", "nudge:ctest:" + unique_ + ":room:{" + owned[0] + "}"});
    ASSERT_TRUE(reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2);
    EXPECT_EQ(reply->element[1]->integer, 2) << owner;
    for (const auto& [other, unused] : per_shard) {
      if (other == owner) continue;
      Node o(other);
      auto none = o.run({"PUBSUB", "SHARDNUMSUB", "nudge:ctest:" + unique_ + ":room:{" + owned[0] + "}"});
      ASSERT_TRUE(none && none->type == REDIS_REPLY_ARRAY && none->elements == 2);
      EXPECT_EQ(none->element[1]->integer, 0) << other << " holds subscribers of a room it does not own";
    }
  }

  constexpr int kPerRoom = 40;
  std::int64_t seq = 1;
  for (int k = 0; k < kPerRoom; ++k)
    for (const auto& r : rs) a.fanout->publish(message(r, seq++));
  const std::size_t total = rs.size() * kPerRoom;
  auto count = [](const Recorder& rec) {
    std::size_t n = 0;
    for (const auto& [room, seqs] : rec.by_room) n += seqs.size();
    return n;
  };
  ASSERT_TRUE(run_until([&] { return count(b.receiver) >= total && count(a.receiver) >= total; }, milliseconds(5000)))
      << "b got " << count(b.receiver) << ", a got " << count(a.receiver) << " of " << total;
  for (const auto& r : rs) {
    const auto& seqs = b.receiver.by_room[r];
    EXPECT_EQ(seqs.size(), static_cast<std::size_t>(kPerRoom)) << r;
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end())) << r;
  }

  // The recent window lives on the room's shard and answers through the fanout.
  ASSERT_TRUE(run_until([&] { return b.fanout->cluster()->pending() == 0; }, milliseconds(1000)));
  io_.run_for(milliseconds(100));
  for (const auto& [owner, owned] : per_shard) {
    Node n(owner);
    // kPerRoom and the probes that went before them.
    EXPECT_GE(std::stoll(n.text({"XLEN", "nudge:ctest:" + unique_ + ":recent:{" + owned[0] + "}"})), kPerRoom) << owner;
    std::vector<MessagePtr> got;
    bool answered = false;
    b.fanout->read_recent(HistoryQuery{owned[0], 10, std::nullopt}, [&](Status s, std::vector<MessagePtr> ms) {
      EXPECT_TRUE(s.ok()) << s.message();
      got = std::move(ms);
      answered = true;
    });
    ASSERT_TRUE(run_until([&] { return answered; }, milliseconds(2000)));
    ASSERT_EQ(got.size(), 10u);
    EXPECT_EQ(got.back()->headers[0].second, b.receiver.by_room[owned[0]].empty()
                                                 ? std::string()
                                                 : std::to_string(b.receiver.by_room[owned[0]].back()));
  }
  EXPECT_EQ(a.context.metrics().value("publish_errors"), 0u);
  EXPECT_EQ(a.context.metrics().value("recent_errors"), 0u);
  std::cout << "spread: " << rs.size() << " rooms over " << per_shard.size() << " shards (";
  for (const auto& [owner, owned] : per_shard) std::cout << owner << "=" << owned.size() << " ";
  std::cout << "), " << total << " messages delivered to both instances\n";
}

TEST_F(RedisClusterFanoutTest, AMasterKilledIsReplacedByItsReplicaAndDeliveryComesBackWithinFiveSeconds) {
  auto& a = add("a");
  auto& b = add("b");
  const auto rs = rooms(12);
  join_all(rs);
  if (HasFatalFailure()) return;
  const std::string victim = a.fanout->cluster()->owner_of(rs[0]);
  std::set<std::string> victim_rooms;
  for (const auto& r : rs)
    if (a.fanout->cluster()->owner_of(r) == victim) victim_rooms.insert(r);
  const long long pid = pid_of(victim);
  ASSERT_GT(pid, 0);

  // Traffic: one message to every room each 20 ms.
  std::int64_t seq = 1;
  std::map<std::int64_t, std::string> sent_room;
  auto pump = [&](milliseconds for_how_long) {
    const auto until = Clock::now() + for_how_long;
    while (Clock::now() < until) {
      for (const auto& r : rs) {
        sent_room[seq] = r;
        a.fanout->publish(message(r, seq++));
      }
      io_.run_for(milliseconds(20));
    }
  };
  pump(milliseconds(500));
  const std::int64_t first_after_kill = seq;
  b.receiver.mark = first_after_kill;
  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGKILL), 0);
  killed_ = true;
  // Until every victim room has delivered a message sent after the kill, or 8 s.
  while (Clock::now() - killed_at < std::chrono::seconds(8)) {
    pump(milliseconds(100));
    bool all = true;
    for (const auto& r : victim_rooms) all = all && b.receiver.first_after.count(r);
    if (all) break;
  }
  std::int64_t recovery_ms = 0;
  for (const auto& r : victim_rooms) {
    ASSERT_TRUE(b.receiver.first_after.count(r)) << "room " << r << " on the killed master never came back";
    recovery_ms = std::max<std::int64_t>(
        recovery_ms, std::chrono::duration_cast<milliseconds>(b.receiver.first_after[r] - killed_at).count());
  }
  const std::int64_t recovered_from = seq;
  pump(milliseconds(1000));
  ASSERT_TRUE(run_until([&] { return a.fanout->cluster()->pending() == 0; }, milliseconds(2000)));
  io_.run_for(milliseconds(200));

  // After recovery nothing is lost, on any shard; during it only the killed
  // master's rooms may lose messages (at-most-once: those in flight).
  std::size_t lost_elsewhere = 0, lost_victim = 0, lost_after = 0;
  std::map<std::string, std::set<std::int64_t>> got;
  for (const auto& [room, seqs] : b.receiver.by_room) got[room].insert(seqs.begin(), seqs.end());
  for (const auto& [s, room] : sent_room) {
    if (got[room].count(s)) continue;
    if (s >= recovered_from) ++lost_after;
    else if (victim_rooms.count(room)) ++lost_victim;
    else ++lost_elsewhere;
  }
  const std::string promoted = a.fanout->cluster()->owner_of(rs[0]);
  std::cout << "failover: killed master " << victim << " (pid " << pid << ", " << victim_rooms.size() << " of "
            << rs.size() << " rooms), replica " << promoted << " took over; delivery back after " << recovery_ms
            << " ms; lost in flight on the killed shard " << lost_victim << ", elsewhere " << lost_elsewhere
            << ", after recovery " << lost_after << " of " << sent_room.size() << " sent\n";
  EXPECT_LT(recovery_ms, 5000);
  EXPECT_NE(promoted, victim);
  EXPECT_EQ(lost_elsewhere, 0u);
  EXPECT_EQ(lost_after, 0u);
  // Only what was in flight at the kill (a publish or two per room), not the
  // backlog held while the shard had no master.
  EXPECT_LE(lost_victim, 4 * victim_rooms.size());
  EXPECT_TRUE(a.fanout->readiness().ready) << a.fanout->readiness().reason;
  EXPECT_TRUE(b.fanout->readiness().ready) << b.fanout->readiness().reason;

  // The window of a room on the killed shard works again on its successor:
  // its newest messages, the last one sent last.
  const std::string& room = *victim_rooms.begin();
  std::int64_t last_sent = 0;
  for (const auto& [s, r] : sent_room)
    if (r == room) last_sent = s;
  std::vector<MessagePtr> recent;
  bool answered = false;
  b.fanout->read_recent(HistoryQuery{room, 5, std::nullopt}, [&](Status st, std::vector<MessagePtr> ms) {
    EXPECT_TRUE(st.ok()) << st.message();
    recent = std::move(ms);
    answered = true;
  });
  ASSERT_TRUE(run_until([&] { return answered; }, milliseconds(2000)));
  ASSERT_EQ(recent.size(), 5u);
  EXPECT_EQ(recent.back()->headers[0].second, std::to_string(last_sent));
}

TEST_F(RedisClusterFanoutTest, ASlotMigratedUnderTrafficKeepsDelivering) {
  auto& a = add("a");
  auto& b = add("b");
  const std::string room = "moving";
  join_all({room});
  if (HasFatalFailure()) return;
  const std::string channel = "nudge:ctest:" + unique_ + ":room:{" + room + "}";
  const auto slot = cluster::key_slot(channel);
  const std::string src = a.fanout->cluster()->owner_of(room);
  std::string dst;
  for (const auto& s : shards_of(parsed_.endpoint()))
    if (s.address != src) dst = s.address;
  ASSERT_FALSE(src.empty());
  ASSERT_FALSE(dst.empty());

  std::int64_t seq = 1;
  auto pump = [&](milliseconds for_how_long) {
    const auto until = Clock::now() + for_how_long;
    while (Clock::now() < until) {
      a.fanout->publish(message(room, seq++));
      io_.run_for(milliseconds(5));
    }
  };
  pump(milliseconds(500));

  // The spec's steps: IMPORTING on the target, MIGRATING on the source, the
  // keys moved with MIGRATE, then the slot given to the target everywhere.
  Node s(src), d(dst);
  const std::string src_id = s.text({"CLUSTER", "MYID"}), dst_id = d.text({"CLUSTER", "MYID"});
  ASSERT_EQ(d.text({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", src_id}), "OK");
  ASSERT_EQ(s.text({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", dst_id}), "OK");
  const auto migrating_at = Clock::now();
  pump(milliseconds(200));
  std::string dst_host;
  std::uint16_t dst_port = 0;
  ASSERT_TRUE(parse_host_port(dst, dst_host, dst_port));
  auto keys = s.run({"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "100"});
  ASSERT_TRUE(keys && keys->type == REDIS_REPLY_ARRAY);
  std::vector<std::string> migrate{"MIGRATE", dst_host, std::to_string(dst_port), "", "0", "5000", "KEYS"};
  for (std::size_t i = 0; i < keys->elements; ++i) migrate.emplace_back(keys->element[i]->str, keys->element[i]->len);
  const std::size_t moved_keys = keys->elements;
  if (moved_keys > 0) {
    ASSERT_EQ(s.text(migrate), "OK");
  }
  pump(milliseconds(200));
  const std::int64_t before_handover = seq;
  const auto handover_at = Clock::now();
  for (const auto& shard : shards_of(parsed_.endpoint())) {
    Node n(shard.address);
    ASSERT_EQ(n.text({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", dst_id}), "OK") << shard.address;
  }
  b.receiver.mark = before_handover;
  pump(milliseconds(1500));
  const std::int64_t settled = seq;
  pump(milliseconds(500));
  ASSERT_TRUE(run_until([&] { return a.fanout->cluster()->pending() == 0; }, milliseconds(2000)));
  io_.run_for(milliseconds(200));

  const auto& seqs = b.receiver.by_room[room];
  std::set<std::int64_t> got(seqs.begin(), seqs.end());
  std::size_t lost = 0, lost_after = 0;
  for (std::int64_t i = 1; i < seq; ++i)
    if (!got.count(i)) (i >= settled ? ++lost_after : ++lost);
  const auto back_ms =
      b.receiver.first_after.count(room)
          ? std::chrono::duration_cast<milliseconds>(b.receiver.first_after[room] - handover_at).count()
          : -1;
  std::cout << "migration: slot " << slot << " " << src << " -> " << dst << " (" << moved_keys
            << " keys by MIGRATE) under " << seq - 1 << " messages; first message after the handover delivered after "
            << back_ms << " ms; lost " << lost << " around the handover, " << lost_after
            << " after it; longest gap at the receiver " << b.receiver.longest_gap_ms << " ms; "
            << a.context.metrics().value("cluster_redirects") << " redirects followed\n";
  (void)migrating_at;
  EXPECT_EQ(a.fanout->cluster()->owner_of(room), dst);
  EXPECT_GE(back_ms, 0);
  EXPECT_LT(back_ms, 5000);
  EXPECT_EQ(lost_after, 0u);
  // The publisher holds what MOVED refused until the subscribers moved (9-10
  // were lost at the handover without that).
  EXPECT_LE(lost, 5u);
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  // The window followed the slot: readable from the new owner, newest last.
  Node n(dst);
  EXPECT_NE(n.text({"XLEN", "nudge:ctest:" + unique_ + ":recent:{" + room + "}"}), "0");
  std::vector<MessagePtr> recent;
  bool answered = false;
  b.fanout->read_recent(HistoryQuery{room, 5, std::nullopt}, [&](Status st, std::vector<MessagePtr> ms) {
    EXPECT_TRUE(st.ok()) << st.message();
    recent = std::move(ms);
    answered = true;
  });
  ASSERT_TRUE(run_until([&] { return answered; }, milliseconds(2000)));
  ASSERT_EQ(recent.size(), 5u);
  EXPECT_EQ(recent.back()->headers[0].second, std::to_string(seq - 1));
}

}  // namespace
}  // namespace nudge::plugins::redis
