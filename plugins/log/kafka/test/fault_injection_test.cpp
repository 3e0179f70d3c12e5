// Broker faults injected request by request into librdkafka's mock cluster,
// the plugin driven through its Log interface only (append with a
// completion; a LogConsumer that gets batches and confirms them).
//
// The 2.0.2 mock cluster has timings of its own: a group's first member
// waits 3 s before it is given partitions, and a rejoin waits the group's
// session timeout minus 1 s; so the log runs with session_timeout_ms = 3000
// and create_topic = false (the mock names no controller, so CreateTopics
// would only time out; the topic is made through the mock API).

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <set>

#include "mock_cluster.hpp"
#include "scenarios.hpp"

namespace nudge::plugins::kafka::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kPartitions = 6;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// Appends messages and keeps, for each, every answer its completion got.
class Appender {
 public:
  struct Entry {
    MessagePtr message;
    int room = 0;
    int calls = 0;
    std::optional<Status> status;  // the first answer
    Clock::time_point appended{};
    Clock::time_point answered{};
  };

  Appender(boost::asio::io_context& io, KafkaLog& log) : io_(io), log_(log) {}

  /// Appends the next message of `room` (its payload is its sequence number in the room).
  std::shared_ptr<Entry> append(int room) {
    auto entry = std::make_shared<Entry>();
    entry->message = make_message(room, seq_[room]++);
    entry->room = room;
    entry->appended = Clock::now();
    entries.push_back(entry);
    log_.append(entry->message, [entry](Status s) {
      if (entry->calls++ == 0) {
        entry->status = std::move(s);
        entry->answered = Clock::now();
      }
    });
    return entry;
  }
  /// Appends `n` messages spread over `rooms`.
  void append_many(int n, const std::vector<int>& rooms) {
    for (int i = 0; i < n; ++i) append(rooms[static_cast<std::size_t>(i) % rooms.size()]);
  }
  /// Runs the loop until every append was answered; false on timeout. Then
  /// runs a little longer so that a (wrong) second answer shows up.
  bool wait_all(std::chrono::milliseconds timeout) {
    const bool all = run_until(
        io_, [&] { return answered() == entries.size(); }, timeout);
    run_for(io_, 50ms);
    return all;
  }

  std::size_t answered() const {
    return count([](const Entry& e) { return e.calls > 0; });
  }
  std::size_t ok() const {
    return count([](const Entry& e) { return e.status && e.status->ok(); });
  }
  std::size_t failed() const {
    return count([](const Entry& e) { return e.status && !e.status->ok(); });
  }
  std::size_t failed_with(StatusCode code) const {
    return count([code](const Entry& e) { return e.status && !e.status->ok() && e.status->code() == code; });
  }
  std::size_t answered_twice() const {
    return count([](const Entry& e) { return e.calls > 1; });
  }
  std::vector<MessagePtr> acked() const {
    std::vector<MessagePtr> out;
    for (const auto& e : entries)
      if (e->status && e->status->ok()) out.push_back(e->message);
    return out;
  }
  template <class Predicate>
  std::size_t count(Predicate p) const {
    std::size_t n = 0;
    for (const auto& e : entries)
      if (p(*e)) ++n;
    return n;
  }

  /// Each distinct failure message with how many appends got it (for the report of a failed test).
  std::string failures() const {
    std::map<std::string, int> seen;
    for (const auto& e : entries)
      if (e->status && !e->status->ok()) ++seen[e->status->message()];
    std::string out;
    for (const auto& [text, n] : seen) out += std::to_string(n) + " x " + text + "; ";
    return out;
  }

  std::vector<std::shared_ptr<Entry>> entries;

 private:
  boost::asio::io_context& io_;
  KafkaLog& log_;
  std::map<int, int> seq_;
};

/// `stored` holds each of `acked` exactly once, no message twice, nothing of
/// `never` (messages that must not have been stored), and each room's
/// messages in order.
void expect_stored_exactly(const std::vector<MessagePtr>& acked, const std::vector<MessagePtr>& stored,
                           const std::vector<MessagePtr>& never = {}) {
  std::map<MessageId, int> count;
  for (const auto& m : stored) ++count[m->id];
  std::size_t missing = 0;
  for (const auto& m : acked)
    if (count[m->id] == 0) ++missing;
  std::size_t twice = 0;
  for (const auto& [id, n] : count)
    if (n > 1) ++twice;
  std::size_t unexpected = 0;
  for (const auto& m : never)
    if (count.contains(m->id) && count[m->id] > 0) ++unexpected;
  EXPECT_EQ(missing, 0u) << "acked messages are not in the log";
  EXPECT_EQ(twice, 0u) << "messages are in the log twice";
  EXPECT_EQ(unexpected, 0u) << "failed appends were stored";
  std::map<std::string, int> last;
  std::size_t out_of_order = 0;
  for (const auto& m : stored) {
    const int seq = std::stoi(m->payload);
    auto [it, fresh] = last.emplace(m->room, seq);
    if (!fresh && seq <= it->second) ++out_of_order;
    it->second = seq;
  }
  EXPECT_EQ(out_of_order, 0u) << "a room's messages are out of order";
}

class KafkaFaultTest : public ::testing::Test {
 protected:
  /// A mock cluster of `brokers` brokers with the test's topic; partition p
  /// is led by broker p % brokers + 1.
  void start_cluster(int brokers) {
    cluster_ = std::make_unique<MockCluster>(brokers);
    ASSERT_NE(cluster_->get(), nullptr) << "cannot start librdkafka's mock cluster";
    brokers_ = brokers;
    topic_ = "nudge.fault." + unique_suffix();
    group_ = "nudge-fault-" + unique_suffix();
    ASSERT_EQ(rd_kafka_mock_topic_create(mock(), topic_.c_str(), kPartitions, brokers), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_mock_topic_create(mock(), (topic_ + ".dead-letter").c_str(), 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < kPartitions; ++p)
      ASSERT_EQ(rd_kafka_mock_partition_set_leader(mock(), topic_.c_str(), p, leader_of_partition(p)),
                RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  rd_kafka_mock_cluster_t* mock() const { return cluster_->get(); }
  int leader_of_partition(int partition) const { return partition % brokers_ + 1; }
  int leader_of_room(int room) const {
    return leader_of_partition(partition_of("room-" + std::to_string(room), kPartitions));
  }
  /// The first `n` rooms whose partition `broker` leads (or, with `other`, does not lead).
  std::vector<int> rooms_led_by(int broker, std::size_t n, bool other = false) const {
    std::vector<int> rooms;
    for (int room = 0; rooms.size() < n; ++room)
      if ((leader_of_room(room) == broker) != other) rooms.push_back(room);
    return rooms;
  }
  std::size_t errors_left(int broker, std::int16_t api_key) const {
    std::size_t n = 0;
    rd_kafka_mock_broker_error_stack_cnt(mock(), broker, api_key, &n);
    return n;
  }
  std::map<std::string, ConfigValue> overrides() const {
    auto o = base_overrides(cluster_->bootstraps(), topic_, group_);
    o["create_topic"] = false;
    o["session_timeout_ms"] = std::int64_t{3000};
    return o;
  }
  std::vector<MessagePtr> stored() const { return read_topic(cluster_->bootstraps(), topic_, kPartitions); }
  std::vector<std::int64_t> committed() const {
    return committed_offsets(cluster_->bootstraps(), topic_, group_, kPartitions);
  }
  Env env() const { return Env{cluster_->bootstraps(), topic_, group_, kPartitions, false}; }

  /// Room 0's partition: 30 messages, `garbage`, 30 more; and 30 of a room in another partition.
  struct Mixed {
    std::vector<MessagePtr> good;
    std::vector<RawRecord> garbage;
  };
  Mixed put_undecodable_among_good(std::vector<RawRecord> garbage) {
    Mixed mixed;
    const auto before = room_messages(0, 0, 30);
    const auto beside = room_messages(room_beside_room_0(kPartitions), 0, 30);
    const auto after = room_messages(0, 30, 30);
    LogUnderTest producer(io_, overrides());
    EXPECT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    EXPECT_EQ(append_messages(io_, producer.log, before), before.size());
    EXPECT_EQ(append_messages(io_, producer.log, beside), beside.size());
    produce_records(cluster_->bootstraps(), topic_, garbage);
    EXPECT_EQ(append_messages(io_, producer.log, after), after.size());
    EXPECT_TRUE(stop_log(io_, producer.log));
    for (const auto* part : {&before, &beside, &after}) mixed.good.insert(mixed.good.end(), part->begin(), part->end());
    mixed.garbage = std::move(garbage);
    return mixed;
  }

  boost::asio::io_context io_;
  std::unique_ptr<MockCluster> cluster_;
  int brokers_ = 1;
  std::string topic_;
  std::string group_;
};

// 1. Retriable produce errors: retried by the idempotent producer, so every
// append is acked once and the topic holds each message once, rooms in order.
TEST_F(KafkaFaultTest, RetriableProduceErrorsAckEveryAppendOnceAndStoreEveryMessageOnceInOrder) {
  start_cluster(1);
  // The next 12 produce requests fail, some only after a delay.
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(
                mock(), 1, api::kProduce, 12, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 100, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, 20, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, 0,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 0,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 50, RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, 0,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, 0, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, 0,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  LogUnderTest log(io_, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  Appender appender(io_, log.log);
  std::vector<int> rooms;
  for (int r = 0; r < 20; ++r) rooms.push_back(r);
  constexpr int n = 2000;
  const auto start = Clock::now();
  appender.append_many(n, rooms);
  ASSERT_TRUE(appender.wait_all(20s)) << appender.answered() << " of " << n << " appends answered";
  const double produce_s = seconds_since(start);
  EXPECT_EQ(appender.ok(), static_cast<std::size_t>(n));
  EXPECT_EQ(appender.failed(), 0u) << appender.failures();
  EXPECT_EQ(appender.answered_twice(), 0u);
  EXPECT_EQ(errors_left(1, api::kProduce), 0u) << "not every injected error was met";
  EXPECT_EQ(log.context.metrics().value("produced"), static_cast<std::uint64_t>(n));
  EXPECT_EQ(log.context.metrics().value("produce_errors"), 0u);

  ASSERT_TRUE(stop_log(io_, log.log));
  // Read back from the topic: each message once (retries were not stored
  // twice), each room in order.
  expect_exactly_once_in_order(appender.acked(), stored());
  std::printf("retriable: %d appends acked in %.2f s through 12 failed produce requests\n", n, produce_s);
}

// 2. Produce errors that retrying cannot fix fail the appends of the failed
// request (never ok), leave the others alone, and the log goes on.
TEST_F(KafkaFaultTest, NonRetriableProduceErrorsFailOnlyTheAffectedAppendsAndTheLogGoesOn) {
  start_cluster(3);
  const int victim = rooms_led_by(1, 1).front();             // its partition is led by broker 1
  const std::vector<int> others = rooms_led_by(1, 4, true);  // brokers 2 and 3
  std::vector<int> all_rooms = others;
  all_rooms.push_back(victim);
  LogUnderTest log(io_, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  Appender appender(io_, log.log);
  appender.append_many(static_cast<int>(all_rooms.size()), all_rooms);  // connections and producer id
  ASSERT_TRUE(appender.wait_all(10s));
  ASSERT_EQ(appender.ok(), all_rooms.size());

  std::vector<MessagePtr> failed;
  struct Case {
    rd_kafka_resp_err_t error;
    StatusCode expected;
    // librdkafka marks the whole topic failed: the messages of other
    // partitions not sent yet fail with it, and new ones are refused until
    // it has read the topic's metadata again (about a second later).
    bool topic_wide;
  };
  for (const Case c : {Case{RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, StatusCode::invalid_argument, false},
                       Case{RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, StatusCode::unavailable, true},
                       // Retried by the Java client, not by librdkafka 2.0.2.
                       Case{RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION, StatusCode::unavailable, false}}) {
    SCOPED_TRACE(rd_kafka_err2name(c.error));
    // Broker 1 fails the next produce request: the victim room's batch.
    ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mock(), 1, api::kProduce, 1, c.error, 0),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    std::vector<std::shared_ptr<Appender::Entry>> hit;
    std::vector<std::shared_ptr<Appender::Entry>> rest;
    for (int i = 0; i < 20; ++i) hit.push_back(appender.append(victim));
    for (int i = 0; i < 60; ++i) rest.push_back(appender.append(others[static_cast<std::size_t>(i) % others.size()]));
    const auto start = Clock::now();
    ASSERT_TRUE(appender.wait_all(10s));
    std::size_t hit_ok = 0;
    std::size_t hit_expected = 0;
    for (const auto& e : hit) {
      if (e->status->ok()) ++hit_ok;
      else failed.push_back(e->message);
      if (!e->status->ok() && e->status->code() == c.expected) ++hit_expected;
    }
    std::size_t rest_ok = 0;
    std::size_t rest_expected = 0;
    for (const auto& e : rest) {
      if (e->status->ok()) ++rest_ok;
      else failed.push_back(e->message);
      if (!e->status->ok() && e->status->code() == c.expected) ++rest_expected;
    }
    EXPECT_EQ(hit_ok, 0u) << "an append whose request failed was acked";
    EXPECT_EQ(hit_expected, hit.size()) << appender.failures();
    if (c.topic_wide) EXPECT_EQ(rest_ok + rest_expected, rest.size()) << appender.failures();
    else EXPECT_EQ(rest_ok, rest.size()) << "appends to partitions of other brokers failed: " << appender.failures();
    EXPECT_EQ(errors_left(1, api::kProduce), 0u);
    EXPECT_EQ(appender.answered_twice(), 0u);
    const double failed_s = seconds_since(start);
    // The log goes on.
    std::size_t refused = 0;
    for (;;) {
      auto e = appender.append(victim);
      ASSERT_TRUE(appender.wait_all(10s));
      if (e->status->ok()) break;
      failed.push_back(e->message);
      ++refused;
      EXPECT_TRUE(c.topic_wide) << appender.failures();
      ASSERT_LT(seconds_since(start), 5.0) << "the log did not recover: " << appender.failures();
      run_for(io_, 100ms);
    }
    std::printf(
        "non-retriable %s: %zu appends failed (answered in %.3f s), %zu of 60 on other brokers acked; "
        "appends acked again %.2f s later (%zu refused meanwhile)\n",
        rd_kafka_err2name(c.error), hit.size() - hit_ok, failed_s, rest_ok, seconds_since(start), refused);
  }
  // Every other append was acked, and the log goes on, for every room.
  EXPECT_EQ(appender.failed(), failed.size()) << appender.failures();
  EXPECT_EQ(appender.ok(), appender.entries.size() - failed.size());
  const auto before = appender.entries.size();
  appender.append_many(100, all_rooms);
  ASSERT_TRUE(appender.wait_all(10s));
  EXPECT_EQ(appender.ok(), before + 100 - failed.size()) << "the log did not recover: " << appender.failures();
  EXPECT_EQ(log.context.metrics().value("fatal_errors"), 0u);

  ASSERT_TRUE(stop_log(io_, log.log));
  // The topic holds every acked message once, in room order, and none of the failed.
  const auto in_topic = stored();
  expect_stored_exactly(appender.acked(), in_topic, failed);
  EXPECT_EQ(in_topic.size(), appender.ok());
}

// 3a. The broker is down for less than delivery_timeout_ms: the appends made
// meanwhile are acked once it is back, each once, and nothing is acked while
// it is down.
TEST_F(KafkaFaultTest, BrokerDownBrieflyAppendsAreAckedOnceItIsBack) {
  start_cluster(1);
  auto config = overrides();
  config["delivery_timeout_ms"] = std::int64_t{10000};
  LogUnderTest log(io_, config);
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  Appender appender(io_, log.log);
  appender.append(0);
  ASSERT_TRUE(appender.wait_all(10s));
  ASSERT_EQ(appender.ok(), 1u);

  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::vector<int> rooms{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  appender.append_many(200, rooms);
  run_for(io_, 1s);
  EXPECT_EQ(appender.answered(), 1u) << "appends answered while the only broker was down";
  const auto up = Clock::now();
  ASSERT_EQ(rd_kafka_mock_broker_set_up(mock(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(appender.wait_all(15s)) << appender.answered() << " answered";
  const double recovery_s = seconds_since(up);
  EXPECT_EQ(appender.ok(), 201u);
  EXPECT_EQ(appender.failed(), 0u);
  EXPECT_EQ(appender.answered_twice(), 0u);
  EXPECT_LT(recovery_s, 10.0);
  std::printf("broker down 1 s: 200 appends acked %.2f s after it came back\n", recovery_s);
  ASSERT_TRUE(stop_log(io_, log.log));
  expect_stored_exactly(appender.acked(), stored());
}

// 3c. Readiness follows the brokers: not ready once librdkafka finds them
// all down, ready again once one is up (librdkafka's statistics say so).
TEST_F(KafkaFaultTest, NotReadyWhileEveryBrokerIsDown) {
  start_cluster(1);
  LogUnderTest log(io_, overrides());
  EXPECT_FALSE(log.log.readiness().ready) << "not started";
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  Appender appender(io_, log.log);
  appender.append(0);
  ASSERT_TRUE(appender.wait_all(10s));
  EXPECT_TRUE(log.log.readiness().ready) << log.log.readiness().reason;

  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto t0 = Clock::now();
  ASSERT_TRUE(run_until(
      io_, [&] { return !log.log.readiness().ready; }, 15s));
  std::printf("not ready %.2f s after the broker went down: %s\n", seconds_since(t0),
              log.log.readiness().reason.c_str());
  EXPECT_NE(log.log.readiness().reason.find("all Kafka brokers are down"), std::string::npos)
      << log.log.readiness().reason;
  EXPECT_GE(log.context.metrics().value("brokers_down"), 1u);

  ASSERT_EQ(rd_kafka_mock_broker_set_up(mock(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  t0 = Clock::now();
  ASSERT_TRUE(run_until(
      io_, [&] { return log.log.readiness().ready; }, 15s))
      << log.log.readiness().reason;
  std::printf("ready %.2f s after the broker came back\n", seconds_since(t0));
  ASSERT_TRUE(stop_log(io_, log.log));
}

TEST(KafkaStatsTest, ABrokerIsUpOnlyWhenAServerBrokerSaysUp) {
  const std::string up =
      R"({"name":"x","brokers":{"localhost:9092/1":{"name":"localhost:9092/1","nodeid":1,"nodename":"localhost:9092",)"
      R"("source":"learned","state":"UP","stateage":1},":0/internal":{"name":":0/internal","nodeid":-1,)"
      R"("nodename":"","source":"internal","state":"UP"}},"cgrp":{"state":"up"}})";
  EXPECT_TRUE(KafkaClient::any_broker_up(up));
  const std::string down =
      R"({"name":"x","brokers":{"localhost:9092/bootstrap":{"name":"b","nodeid":-1,"nodename":"localhost:9092",)"
      R"("source":"configured","state":"CONNECT"},":0/internal":{"name":":0/internal","nodeid":-1,)"
      R"("nodename":"","source":"internal","state":"UP"}},"cgrp":{"state":"up"}})";
  EXPECT_FALSE(KafkaClient::any_broker_up(down)) << "the internal broker and the group are no server";
}

// 3b. The broker stays down past delivery_timeout_ms: appends fail with a
// timeout, never silently and never ok; once it is back, appends are acked
// again. Appends go on all along, and both outcomes are counted.
TEST_F(KafkaFaultTest, BrokerDownPastTheDeliveryTimeoutFailsAppendsWithTimeoutThenRecovers) {
  start_cluster(1);
  auto config = overrides();
  config["delivery_timeout_ms"] = std::int64_t{1000};
  LogUnderTest log(io_, config);
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  Appender appender(io_, log.log);
  appender.append(0);
  ASSERT_TRUE(appender.wait_all(10s));
  ASSERT_EQ(appender.ok(), 1u);

  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto down = Clock::now();
  // One append every 20 ms, 2.5 s down, then until 20 in a row were acked.
  int room = 0;
  while (Clock::now() - down < 2500ms) {
    appender.append(room++ % 10);
    run_for(io_, 20ms);
  }
  const std::size_t during = appender.entries.size() - 1;
  const std::size_t ok_while_down = appender.ok() - 1;
  const auto up = Clock::now();
  ASSERT_EQ(rd_kafka_mock_broker_set_up(mock(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  // Acked in a row among the latest answered appends.
  auto acked_in_a_row = [&] {
    auto it = appender.entries.rbegin();
    while (it != appender.entries.rend() && !(*it)->status) ++it;
    std::size_t n = 0;
    for (; it != appender.entries.rend() && (*it)->status && (*it)->status->ok(); ++it) ++n;
    return n;
  };
  while (acked_in_a_row() < 20 && Clock::now() - up < 15s) {
    appender.append(room++ % 10);
    run_for(io_, 20ms);
  }
  ASSERT_TRUE(appender.wait_all(10s)) << appender.answered() << " of " << appender.entries.size() << " answered";
  EXPECT_GE(acked_in_a_row(), 20u) << "appends did not recover after the broker came back";
  EXPECT_EQ(ok_while_down, 0u) << "acked while no broker could store it";
  EXPECT_EQ(appender.answered_twice(), 0u);
  EXPECT_EQ(appender.failed(), appender.failed_with(StatusCode::timeout)) << "failures other than timeout";
  // Those appended in the first second timed out before the broker came back.
  std::size_t early = 0;
  std::size_t early_timeout = 0;
  for (const auto& e : appender.entries)
    if (e->appended > down && e->appended - down < 1000ms) {
      ++early;
      if (e->status && !e->status->ok() && e->status->code() == StatusCode::timeout) ++early_timeout;
    }
  EXPECT_GT(early, 0u);
  EXPECT_EQ(early_timeout, early);
  // No failure came before delivery_timeout_ms, nor long after it.
  auto slowest_failure = Clock::duration::zero();
  for (const auto& e : appender.entries) {
    if (e->status && !e->status->ok()) {
      EXPECT_GE(e->answered - e->appended, 950ms);
      slowest_failure = std::max(slowest_failure, e->answered - e->appended);
    }
  }
  // librdkafka checks the timeouts every second, and a down broker's
  // messages only when it tries to reconnect (at most a second apart).
  EXPECT_LT(slowest_failure, 3500ms) << "timeouts answered long after delivery_timeout_ms";
  EXPECT_EQ(log.context.metrics().value("produce_errors"), appender.failed());
  std::printf(
      "broker down 2.5 s (delivery timeout 1 s): %zu appends while down; %zu acked, %zu timed out in all "
      "(the slowest answered %.2f s after its append); 20 in a row acked %.2f s after it came back\n",
      during, appender.ok(), appender.failed(), std::chrono::duration<double>(slowest_failure).count(),
      seconds_since(up));
  ASSERT_TRUE(stop_log(io_, log.log));
  // Timed-out messages never left the client: none of them is stored.
  std::vector<MessagePtr> timed_out;
  for (const auto& e : appender.entries)
    if (e->status && !e->status->ok()) timed_out.push_back(e->message);
  expect_stored_exactly(appender.acked(), stored(), timed_out);
}

// 4. Offset commits fail: confirmed batches are committed once commits work
// again; a restart (new instance, same group) loses no confirmed batch and
// delivers again only what was not committed.
TEST_F(KafkaFaultTest, CommitErrorsLoseNothingAndARestartRepeatsOnlyTheUncommitted) {
  start_cluster(1);
  std::vector<int> rooms{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  RecordingSink first;
  std::size_t committed_before = 0;
  std::vector<std::int64_t> committed_at_restart;
  std::vector<MessagePtr> sent;
  {
    LogUnderTest log(io_, overrides());
    ASSERT_TRUE(log.log.start(LogStartOptions{true, &first, 100}).ok());
    // Phase 1: a few commits fail, then work: everything is committed.
    // (COORDINATOR_NOT_AVAILABLE comes in phase 2: librdkafka 2.0.2 then
    // drops the coordinator's connection, and the retried commit fails with
    // it each time it comes back; heartbeats fail meanwhile, so with this
    // test's 3 s session the member may lose its partitions and rejoin,
    // which takes seconds on the mock.)
    rd_kafka_mock_push_request_errors(mock(), api::kOffsetCommit, 3, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    Appender appender(io_, log.log);
    appender.append_many(600, rooms);
    ASSERT_TRUE(appender.wait_all(10s));
    ASSERT_EQ(appender.ok(), 600u);
    ASSERT_TRUE(run_until(
        io_, [&] { return first.deliveries.size() >= 600; }, 15s));
    const auto phase1 = Clock::now();
    ASSERT_TRUE(run_until(
        io_,
        [&] {
          run_for(io_, 200ms);
          return committed_total(cluster_->bootstraps(), topic_, group_, kPartitions) == 600;
        },
        15s))
        << "confirmed batches were not committed once commits worked again";
    EXPECT_GE(log.context.metrics().value("commit_errors"), 1u);
    std::printf(
        "commit errors: 600 confirmed records committed %.2f s after the last batch; %llu commit "
        "errors seen\n",
        seconds_since(phase1), static_cast<unsigned long long>(log.context.metrics().value("commit_errors")));
    committed_before = 600;

    // Phase 2: every commit fails from now on, also when the member leaves.
    std::vector<rd_kafka_resp_err_t> errors;
    for (int i = 0; i < 100; ++i) {
      errors.push_back(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE);
      errors.push_back(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
      errors.push_back(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    }
    rd_kafka_mock_push_request_errors_array(mock(), api::kOffsetCommit, errors.size(), errors.data());
    appender.append_many(600, rooms);
    ASSERT_TRUE(appender.wait_all(10s));
    ASSERT_EQ(appender.ok(), 1200u);
    ASSERT_TRUE(run_until(
        io_, [&] { return first.deliveries.size() >= 1200; }, 15s));
    run_for(io_, 1100ms);  // an auto commit (failing)
    EXPECT_EQ(first.batches, log.context.metrics().value("batches"));
    sent = appender.acked();
    ASSERT_TRUE(stop_log(io_, log.log));
  }
  committed_at_restart = committed();
  rd_kafka_mock_clear_request_errors(mock(), api::kOffsetCommit);
  ASSERT_EQ(committed_at_restart.size(), static_cast<std::size_t>(kPartitions));
  std::int64_t total_at_restart = 0;
  for (auto o : committed_at_restart) total_at_restart += std::max<std::int64_t>(0, o);
  EXPECT_EQ(total_at_restart, static_cast<std::int64_t>(committed_before))
      << "commits were expected to fail throughout phase 2";
  // The uncommitted range: what the first member confirmed at or past the committed offset.
  auto uncommitted = [&](const MessagePtr& m) {
    return m->log_position.offset >= committed_at_restart[static_cast<std::size_t>(m->log_position.partition)];
  };
  std::set<MessageId> uncommitted_ids;
  for (const auto& m : first.deliveries)
    if (uncommitted(m)) uncommitted_ids.insert(m->id);

  RecordingSink second;
  const auto restart = Clock::now();
  {
    LogUnderTest log(io_, overrides());
    ASSERT_TRUE(log.log.start(LogStartOptions{false, &second, 100}).ok());
    EXPECT_TRUE(run_until(
        io_, [&] { return second.deliveries.size() >= uncommitted_ids.size(); }, 15s));
    run_for(io_, 300ms);                  // nothing more comes
    ASSERT_TRUE(stop_log(io_, log.log));  // leaving the group commits
  }
  const double restart_s = seconds_since(restart);
  std::set<MessageId> first_ids;
  for (const auto& m : first.deliveries) first_ids.insert(m->id);
  std::set<MessageId> seen_twice;
  std::set<MessageId> all(first_ids);
  for (const auto& m : second.deliveries) {
    if (first_ids.contains(m->id)) seen_twice.insert(m->id);
    all.insert(m->id);
  }
  for (const auto& m : sent) EXPECT_TRUE(all.contains(m->id)) << "lost " << m->id.to_string();
  std::size_t outside = 0;
  for (const auto& id : seen_twice)
    if (!uncommitted_ids.contains(id)) ++outside;
  EXPECT_EQ(outside, 0u) << "committed messages were delivered again";
  EXPECT_EQ(seen_twice, uncommitted_ids) << "the uncommitted confirmed batches must come again";
  EXPECT_FALSE(uncommitted_ids.empty());
  EXPECT_EQ(committed_total(cluster_->bootstraps(), topic_, group_, kPartitions), 1200);
  std::printf(
      "commit errors: %zu confirmed but uncommitted at the restart, %zu delivered twice; the restarted "
      "member got %zu in %.2f s\n",
      uncommitted_ids.size(), seen_twice.size(), second.deliveries.size(), restart_s);
}

// 5. Coordinator and fetch errors while consuming: consumption resumes and
// everything is delivered and committed.
TEST_F(KafkaFaultTest, CoordinatorAndFetchErrorsWhileConsumingDeliverEverything) {
  start_cluster(3);
  std::vector<int> rooms;
  for (int r = 0; r < 12; ++r) rooms.push_back(r);
  // The group's first steps fail: finding the coordinator, then reading the
  // committed offsets (which librdkafka does not retry: the log must assign
  // the partitions again, or they would never be fetched). Two reads of them
  // follow an assignment, librdkafka's and the log's own (where the lag
  // counts from), in either order: the first error is retried, whichever
  // read gets it, and each read then gets a NOT_COORDINATOR.
  rd_kafka_mock_push_request_errors(mock(), api::kFindCoordinator, 1, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE);
  rd_kafka_mock_push_request_errors(mock(), api::kOffsetFetch, 3, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                    RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  RecordingSink sink;
  LogUnderTest log(io_, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{true, &sink, 100}).ok());
  Appender appender(io_, log.log);
  appender.append_many(1000, rooms);
  ASSERT_TRUE(appender.wait_all(10s));
  ASSERT_EQ(appender.ok(), 1000u);
  const auto start = Clock::now();
  ASSERT_TRUE(run_until(
      io_, [&] { return sink.deliveries.size() >= 1000; }, 20s))
      << "consumption stalled: " << sink.deliveries.size() << " of 1000 delivered";
  std::printf("coordinator and offset fetch errors at join: first 1000 delivered %.2f s after they were acked\n",
              seconds_since(start));

  // Mid-stream: fetches fail, heartbeats fail, and the coordinator moves.
  const auto faults = Clock::now();
  rd_kafka_mock_push_request_errors(mock(), api::kFetch, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                                    RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                                    RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR);
  // One heartbeat fails (two in a row would end the 3 s session).
  rd_kafka_mock_push_request_errors(mock(), api::kHeartbeat, 1, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  for (int broker = 1; broker <= 3; ++broker)
    rd_kafka_mock_broker_push_request_error_rtts(mock(), broker, api::kFetch, 2, RD_KAFKA_RESP_ERR__TRANSPORT, 0,
                                                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0);
  ASSERT_EQ(rd_kafka_mock_coordinator_set(mock(), "group", group_.c_str(), 3), RD_KAFKA_RESP_ERR_NO_ERROR);
  appender.append_many(1000, rooms);
  ASSERT_TRUE(appender.wait_all(10s));
  ASSERT_EQ(appender.ok(), 2000u);
  EXPECT_TRUE(run_until(
      io_, [&] { return sink.deliveries.size() >= 2000; }, 20s));
  const double resumed_s = seconds_since(faults);
  run_for(io_, 300ms);
  // Everything, and (no rebalance took partitions away) each once, in room order.
  expect_exactly_once_in_order(appender.acked(), sink.deliveries);
  EXPECT_EQ(log.context.metrics().value("rebalances"), 1u) << "the member lost its partitions";
  EXPECT_EQ(log.context.metrics().value("partition_restarts"), static_cast<std::uint64_t>(kPartitions));
  // The log's own read failed too, and was retried: the lag is measured on every partition.
  EXPECT_GE(log.context.metrics().value("start_lookup_errors"), 1u);
  EXPECT_EQ(log.log.consumer()->unmeasured_partitions(), 0u);
  EXPECT_TRUE(run_until(
      io_,
      [&] {
        run_for(io_, 200ms);
        return committed_total(cluster_->bootstraps(), topic_, group_, kPartitions) == 2000;
      },
      15s));
  for (int broker = 1; broker <= 3; ++broker) EXPECT_EQ(errors_left(broker, api::kFetch), 0u);
  std::printf(
      "fetch and coordinator errors mid-stream: the next 1000 delivered %.2f s after the faults; "
      "rebalances %llu\n",
      resumed_s, static_cast<unsigned long long>(log.context.metrics().value("rebalances")));
  ASSERT_TRUE(stop_log(io_, log.log));
}

// 7. Undecodable records among good ones (dead-letter): the group's
// committed offset does not pass the first before the dead-letter topic
// acknowledged it (the dead-letter produce is answered 2.5 s late here),
// though the sink has the good records around it by then.
TEST_F(KafkaFaultTest, AnUndecodableRecordIsCommittedPastOnlyOnceTheDeadLetterTopicAcknowledgedIt) {
  start_cluster(1);
  auto all = undecodable_records("room-0");
  const auto mixed = put_undecodable_among_good({all[0], all[1]});
  const auto garbage = mixed.garbage;
  const auto partition = static_cast<std::size_t>(garbage[0].partition);
  const std::int64_t first = garbage[0].offset;
  ASSERT_EQ(garbage[1].offset, first + 1);
  // The dead-letter producer's request: stored, and answered late.
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mock(), 1, api::kProduce, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 2500),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  RecordingSink sink;
  LogUnderTest log(io_, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{false, &sink, 10}).ok());
  auto& metrics = log.context.metrics();
  std::int64_t highest = -1;  // the highest offset of the partition committed before the acknowledgement
  std::size_t samples = 0;
  bool sink_had_records_past_it = false;
  std::optional<Clock::time_point> held_since;
  const auto deadline = Clock::now() + 30s;
  while (metrics.value("dead_lettered") == 0 && Clock::now() < deadline) {
    // The loop does not run while Kafka is asked: the acknowledgement and
    // the offsets it lets the log store come together, or not at all.
    const auto offsets = committed();
    if (offsets.size() == static_cast<std::size_t>(kPartitions)) {
      ++samples;
      highest = std::max(highest, offsets[partition]);
    }
    for (const auto& m : sink.deliveries)
      if (static_cast<std::size_t>(m->log_position.partition) == partition && m->log_position.offset > first + 1) {
        sink_had_records_past_it = true;
        if (!held_since) held_since = Clock::now();
      }
    run_for(io_, 100ms);
  }
  const double held_s = held_since ? seconds_since(*held_since) : 0;
  EXPECT_EQ(highest, first) << "committed past the undecodable record before the dead-letter topic had it, or not "
                               "up to it";
  EXPECT_GE(samples, 10u);
  EXPECT_TRUE(sink_had_records_past_it) << "the records after it were expected in the sink meanwhile";
  EXPECT_TRUE(run_until(
      io_, [&] { return sink.deliveries.size() >= mixed.good.size() && metrics.value("dead_lettered") == 2; }, 15s));
  EXPECT_TRUE(run_until(
      io_,
      [&] {
        run_for(io_, 200ms);
        return committed() == committed_at_the_end(env());
      },
      10s))
      << "not committed to the end once the dead-letter topic had them";
  expect_exactly_once_in_order(mixed.good, sink.deliveries);
  std::printf(
      "dead-letter acknowledged 2.5 s late: the partition stayed committed at offset %lld (the undecodable "
      "record) for %.2f s while the sink had the records after it; %zu samples\n",
      static_cast<long long>(highest), held_s, samples);
  ASSERT_TRUE(stop_log(io_, log.log));
  expect_dead_lettered(env(), garbage);
}

// 8. The dead-letter topic refuses the record (no permission, say): the batch and everything behind it wait, nothing
// past the record is committed, the log says why it is not ready; it is retried with backoff until it is taken, and
// nothing is lost or written twice.
TEST_F(KafkaFaultTest, AFailingDeadLetterTopicHoldsThePartitionAndRetriesUntilItTakesTheRecord) {
  start_cluster(1);
  const auto mixed = put_undecodable_among_good({undecodable_records("room-0")[0]});
  const auto garbage = mixed.garbage;
  const auto partition = static_cast<std::size_t>(garbage[0].partition);
  const std::int64_t at = garbage[0].offset;
  // librdkafka then refuses the topic's records itself for a moment: a few more failures.
  rd_kafka_mock_push_request_errors(mock(), api::kProduce, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  RecordingSink sink;
  LogUnderTest log(io_, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{false, &sink, 10}).ok());
  auto& metrics = log.context.metrics();
  ASSERT_TRUE(run_until(
      io_, [&] { return metrics.value("dead_letter_errors") >= 1; }, 15s));
  const auto failing = Clock::now();
  const auto handed_over = sink.deliveries.size();
  std::int64_t highest = -1;
  std::size_t not_ready = 0;
  std::size_t samples = 0;
  std::string reason;
  while (metrics.value("dead_lettered") == 0 && seconds_since(failing) < 20) {
    const auto offsets = committed();
    if (offsets.size() == static_cast<std::size_t>(kPartitions)) highest = std::max(highest, offsets[partition]);
    ++samples;
    const auto readiness = log.log.readiness();
    if (!readiness.ready) {
      ++not_ready;
      reason = readiness.reason;
    }
    EXPECT_EQ(sink.deliveries.size(), handed_over) << "a batch was handed over while the dead letter was failing";
    run_for(io_, 100ms);
  }
  const double failing_s = seconds_since(failing);
  EXPECT_EQ(metrics.value("dead_lettered"), 1u);
  EXPECT_LE(highest, at) << "committed past the record while the dead-letter topic refused it";
  EXPECT_GE(metrics.value("dead_letter_errors"), 1u);
  EXPECT_EQ(errors_left(1, api::kProduce), 0u);
  EXPECT_EQ(not_ready, samples) << "ready while the dead-letter topic refused the record";
  for (const std::string& part : std::vector<std::string>{
           "dead-letter topic '" + topic_ + ".dead-letter'",
           "partition " + std::to_string(partition) + " offset " + std::to_string(at), "nothing past it is committed"})
    EXPECT_NE(reason.find(part), std::string::npos) << "'" << part << "' not in: " << reason;
  EXPECT_GE(log.context.logger().count(LogLevel::warn, "cannot write the undecodable record"), 1u);
  EXPECT_TRUE(run_until(
      io_, [&] { return sink.deliveries.size() >= mixed.good.size(); }, 15s));
  EXPECT_TRUE(log.log.readiness().ready) << log.log.readiness().reason;
  EXPECT_TRUE(run_until(
      io_,
      [&] {
        run_for(io_, 200ms);
        return committed() == committed_at_the_end(env());
      },
      10s));
  expect_exactly_once_in_order(mixed.good, sink.deliveries);
  std::printf(
      "dead-letter topic refusing: %llu failed produces, held %.2f s (not ready: %s); then taken, "
      "everything committed\n",
      static_cast<unsigned long long>(metrics.value("dead_letter_errors")), failing_s, reason.c_str());
  ASSERT_TRUE(stop_log(io_, log.log));
  expect_dead_lettered(env(), garbage);  // once: the refused attempts stored nothing
}

// 6. A member whose JoinGroup was answered but that never received an
// assignment (every SyncGroup fails, as when the broker stalls in the middle
// of the first join) stops cleanly. librdkafka 2.0.2 aborts the process when
// such a handle is destroyed (librdkafka #4312); the log keeps the handle.
TEST_F(KafkaFaultTest, StoppingBeforeTheFirstAssignmentDoesNotAbort) {
  start_cluster(1);
  std::vector<rd_kafka_resp_err_t> errors(500, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  rd_kafka_mock_push_request_errors_array(mock(), api::kSyncGroup, errors.size(), errors.data());
  RecordingSink sink;
  LogUnderTest log(io_, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{false, &sink, 100}).ok());
  run_for(io_, 3s);  // joins, and fails to sync, again and again
  EXPECT_EQ(log.context.metrics().value("rebalances"), 0u) << "an assignment arrived after all";
  ASSERT_TRUE(stop_log(io_, log.log));  // before the fix: abort() in rd_kafka_destroy
}

}  // namespace
}  // namespace nudge::plugins::kafka::test
