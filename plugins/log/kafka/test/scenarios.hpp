#pragma once

// Scenarios run both against librdkafka's mock cluster (unit) and against a
// real broker (integration): the same code, only the brokers differ.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <librdkafka/rdkafka.h>

#include "kafka_log.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::kafka::test {

using namespace std::chrono_literals;
using nudge::testing::run_for;
using nudge::testing::run_until;
using nudge::testing::TestContext;

/// The plugin's Config from its schema's defaults and `overrides`.
inline Config make_config(const std::map<std::string, ConfigValue>& overrides = {}) {
  return nudge::testing::make_config(KafkaConfig::schema(), overrides);
}

inline std::string unique_suffix() {
  std::random_device rd;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%08x%04x", rd(), rd() & 0xffff);
  return buffer;
}

inline MessagePtr make_message(int room, int seq) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = "room-" + std::to_string(room);
  m->sender = "tester";
  m->payload = std::to_string(seq);
  m->timestamp_ms = m->id.unix_ms();
  m->origin = "test-instance";
  return m;
}

/// A LogConsumer that records what it gets. `policy` decides each batch's
/// answer (default: ok at once); it may keep `done` to answer later.
class RecordingSink final : public LogConsumer {
 public:
  using Policy = std::function<void(const BatchPtr&, Completion&)>;
  void on_batch(BatchPtr batch, Completion done) override {
    ++batches;
    max_batch_seen = std::max(max_batch_seen, batch->size());
    if (in_flight) ++overlapping;  // a second batch before the first was answered
    in_flight = true;
    for (const auto& m : *batch) {
      if (!m->log_position.valid()) ++missing_positions;
      deliveries.push_back(m);
    }
    Completion wrapped = [this, done = std::move(done)](Status s) {
      in_flight = false;
      done(std::move(s));
    };
    if (policy) policy(batch, wrapped);
    if (wrapped) wrapped(Status::success());
  }
  Policy policy;
  std::vector<MessagePtr> deliveries;
  std::size_t batches = 0;
  std::size_t max_batch_seen = 0;
  std::size_t overlapping = 0;
  std::size_t missing_positions = 0;
  bool in_flight = false;
};

/// A log plugin instance with its own context.
struct LogUnderTest {
  LogUnderTest(boost::asio::io_context& io, const std::map<std::string, ConfigValue>& overrides)
      : context(io, "log.kafka"), log(make_config(overrides), context) {}
  TestContext context;
  KafkaLog log;
};

inline std::map<std::string, ConfigValue> base_overrides(const std::string& brokers, const std::string& topic,
                                                          const std::string& group) {
  return {{"brokers", brokers}, {"topic", topic}, {"group_id", group}, {"partitions", std::int64_t{6}}};
}

/// Stops a log and runs the loop until it says it is done.
inline bool stop_log(boost::asio::io_context& io, KafkaLog& log, std::chrono::milliseconds timeout = 30s) {
  bool stopped = false;
  log.stop([&] { stopped = true; });
  return run_until(io, [&] { return stopped; }, timeout);
}

struct ProduceOutcome {
  std::vector<MessagePtr> sent;
  std::size_t ok = 0;
  std::size_t failed = 0;
  std::size_t extra_calls = 0;  // completions called more than once
  std::map<StatusCode, std::size_t> codes;
  double seconds = 0;
};

/// Appends `n` messages spread over `rooms` rooms and waits for every completion.
inline ProduceOutcome produce_messages(boost::asio::io_context& io, KafkaLog& log, int n, int rooms,
                                       std::chrono::milliseconds timeout = 60s, int first_room = 0) {
  ProduceOutcome out;
  std::vector<int> seq(static_cast<std::size_t>(rooms), 0);
  auto calls = std::make_shared<std::vector<int>>(static_cast<std::size_t>(n), 0);
  std::size_t answered = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    const int room = i % rooms;
    auto message = make_message(first_room + room, seq[static_cast<std::size_t>(room)]++);
    out.sent.push_back(message);
    log.append(message, [&out, &answered, calls, i](Status s) {
      if ((*calls)[static_cast<std::size_t>(i)]++ > 0) {
        ++out.extra_calls;
        return;
      }
      ++answered;
      if (s.ok()) ++out.ok;
      else {
        ++out.failed;
        ++out.codes[s.code()];
      }
    });
  }
  run_until(io, [&] { return answered == static_cast<std::size_t>(n); }, timeout);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run_for(io, 50ms);  // let any (wrong) second completion show up
  return out;
}

/// Every sent message arrived exactly once, and each room's messages in order.
inline void expect_exactly_once_in_order(const std::vector<MessagePtr>& sent, const std::vector<MessagePtr>& got) {
  std::map<MessageId, int> count;
  for (const auto& m : got) ++count[m->id];
  std::size_t missing = 0;
  std::size_t duplicated = 0;
  for (const auto& m : sent) {
    const int c = count[m->id];
    if (c == 0) ++missing;
    if (c > 1) ++duplicated;
  }
  EXPECT_EQ(missing, 0u) << "messages lost";
  EXPECT_EQ(duplicated, 0u) << "messages delivered twice";
  EXPECT_EQ(got.size(), sent.size());
  std::map<std::string, int> last;
  std::size_t out_of_order = 0;
  for (const auto& m : got) {
    const int seq = std::stoi(m->payload);
    auto [it, fresh] = last.emplace(m->room, seq);
    if (!fresh) {
      if (seq <= it->second) ++out_of_order;
      it->second = seq;
    }
  }
  EXPECT_EQ(out_of_order, 0u) << "a room's messages arrived out of order";
}

/// The committed offset of `group` for each partition of `topic` (-1: none),
/// or an empty vector when Kafka did not answer (blocking; tests only).
inline std::vector<std::int64_t> committed_offsets(const std::string& brokers, const std::string& topic,
                                                   const std::string& group, int partitions) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) return {};
  auto* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  std::vector<std::int64_t> offsets;
  if (rd_kafka_committed(rk, list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    offsets.assign(static_cast<std::size_t>(partitions), -1);
    for (int i = 0; i < list->cnt; ++i) {
      const auto& p = list->elems[i];
      offsets[static_cast<std::size_t>(p.partition)] = p.offset >= 0 ? p.offset : -1;
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return offsets;
}

/// Sum of the committed offsets of `group` on `topic` (-1 when Kafka did not
/// answer; blocking; tests only).
inline std::int64_t committed_total(const std::string& brokers, const std::string& topic, const std::string& group,
                                    int partitions) {
  const auto offsets = committed_offsets(brokers, topic, group, partitions);
  if (offsets.empty()) return -1;
  std::int64_t total = 0;
  for (const auto offset : offsets)
    if (offset > 0) total += offset;
  return total;
}

/// Produces raw bytes (not envelopes) to the topic, blocking; tests only.
inline void produce_raw(const std::string& brokers, const std::string& topic, const std::vector<std::string>& values,
                        const std::string& key) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  ASSERT_NE(rk, nullptr) << errstr;
  for (const auto& v : values)
    ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                                RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
}

struct Env {
  std::string brokers;
  std::string topic;
  std::string group;
  int partitions = 6;
  /// False where the topic is made by the test (the mock cluster cannot create topics).
  bool create_topic = true;
};

/// The overrides of the log under test in `env`.
inline std::map<std::string, ConfigValue> env_overrides(const Env& env) {
  auto overrides = base_overrides(env.brokers, env.topic, env.group);
  overrides["create_topic"] = env.create_topic;
  return overrides;
}

/// Produce n messages in `rooms` rooms (all acked exactly once), consume them
/// in a group (each exactly once, rooms in order), check the group committed
/// everything, and that a second run of the group gets nothing old.
inline void scenario_produce_consume(const Env& env, int n, int rooms, bool print_rates) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  ProduceOutcome produced;
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    // The first message waits for the new topic's metadata; time the rest.
    const auto warmup = produce_messages(io, producer.log, 1, 1, 30s, rooms);
    ASSERT_EQ(warmup.ok, 1u);
    produced = produce_messages(io, producer.log, n, rooms);
    produced.sent.insert(produced.sent.begin(), warmup.sent.front());
    ++n;
    EXPECT_EQ(produced.ok + 1, static_cast<std::size_t>(n));
    EXPECT_EQ(produced.failed, 0u);
    EXPECT_EQ(produced.extra_calls, 0u);
    EXPECT_EQ(producer.context.metrics().value("produced"), static_cast<std::uint64_t>(n));
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  if (print_rates)
    std::printf("produce: %d messages acked in %.3f s = %.0f msgs/s\n", n - 1, produced.seconds,
                (n - 1) / produced.seconds);

  RecordingSink sink;
  {
    LogUnderTest consumer(io, overrides);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 500}).ok());
    const auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point first{};
    EXPECT_TRUE(run_until(
        io,
        [&] {
          if (first == std::chrono::steady_clock::time_point{} && !sink.deliveries.empty())
            first = std::chrono::steady_clock::now();
          return sink.deliveries.size() >= static_cast<std::size_t>(n);
        },
        120s));
    const auto end = std::chrono::steady_clock::now();
    run_for(io, 300ms);  // nothing more may come
    expect_exactly_once_in_order(produced.sent, sink.deliveries);
    EXPECT_EQ(sink.overlapping, 0u) << "a batch was handed over before the previous one was answered";
    EXPECT_EQ(sink.missing_positions, 0u);
    EXPECT_LE(sink.max_batch_seen, 500u);
    EXPECT_EQ(consumer.context.metrics().value("decode_errors"), 0u);
    if (print_rates) {
      std::printf("consume: %zu messages in %zu batches; %.3f s from start (%.3f s after the first) = %.0f msgs/s\n",
                  sink.deliveries.size(), sink.batches, std::chrono::duration<double>(end - start).count(),
                  std::chrono::duration<double>(end - first).count(),
                  sink.deliveries.size() / std::chrono::duration<double>(end - first).count());
    }
    ASSERT_TRUE(stop_log(io, consumer.log));
  }
  EXPECT_EQ(committed_total(env.brokers, env.topic, env.group, env.partitions), n) << "the group did not commit all";

  RecordingSink again;
  {
    LogUnderTest consumer(io, overrides);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &again, 500}).ok());
    EXPECT_TRUE(run_until(
        io, [&] { return consumer.context.metrics().gauge_value("assigned_partitions") == env.partitions; }, 60s));
    run_for(io, 2s);
    EXPECT_EQ(again.deliveries.size(), 0u) << "a second run of the group got old messages";
    ASSERT_TRUE(stop_log(io, consumer.log));
  }
}

/// The first batch fails; it is handed over again and nothing is lost.
inline void scenario_failed_batch_is_redelivered(const Env& env, int n) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  overrides["batch_wait_ms"] = std::int64_t{0};
  ProduceOutcome produced;
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    produced = produce_messages(io, producer.log, n, 10);
    ASSERT_EQ(produced.ok, static_cast<std::size_t>(n));
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  RecordingSink sink;
  std::vector<MessageId> failed_ids;
  std::vector<MessagePtr> accepted;
  sink.policy = [&](const BatchPtr& batch, Completion& done) {
    if (failed_ids.empty()) {
      for (const auto& m : *batch) failed_ids.push_back(m->id);
      auto answer = std::exchange(done, nullptr);
      answer(Status::error(StatusCode::unavailable, "test: the sink is down"));
      return;
    }
    accepted.insert(accepted.end(), batch->begin(), batch->end());
  };
  LogUnderTest consumer(io, overrides);
  ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 100}).ok());
  EXPECT_TRUE(run_until(io, [&] { return accepted.size() >= static_cast<std::size_t>(n); }, 60s));
  run_for(io, 300ms);
  ASSERT_FALSE(failed_ids.empty());
  expect_exactly_once_in_order(produced.sent, accepted);
  // The failed batch came again: its first message is among the next batch's.
  std::set<MessageId> accepted_ids;
  for (const auto& m : accepted) accepted_ids.insert(m->id);
  for (const auto& id : failed_ids) EXPECT_TRUE(accepted_ids.contains(id));
  EXPECT_EQ(consumer.context.metrics().value("batch_failures"), 1u);
  ASSERT_TRUE(stop_log(io, consumer.log));
  EXPECT_EQ(committed_total(env.brokers, env.topic, env.group, env.partitions), n);
}

/// The log stops while the sink holds a batch (answered with an error, as the
/// runtime does at shutdown); a new run of the group sees every message, and
/// duplicates only from that uncommitted batch.
inline void scenario_restart_mid_stream(const Env& env, int n) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  ProduceOutcome produced;
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    produced = produce_messages(io, producer.log, n, 20);
    ASSERT_EQ(produced.ok, static_cast<std::size_t>(n));
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  std::set<MessageId> seen_first;
  std::vector<MessageId> held_ids;
  Completion held;
  RecordingSink first;
  first.policy = [&](const BatchPtr& batch, Completion& done) {
    if (seen_first.size() >= static_cast<std::size_t>(n) / 3 && !held) {
      for (const auto& m : *batch) held_ids.push_back(m->id);
      held = std::exchange(done, nullptr);  // answered only at shutdown
      return;
    }
    for (const auto& m : *batch) seen_first.insert(m->id);
  };
  {
    LogUnderTest consumer(io, overrides);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &first, 100}).ok());
    ASSERT_TRUE(run_until(io, [&] { return static_cast<bool>(held); }, 60s));
    const auto batches_at_hold = first.batches;
    run_for(io, 1s);  // the log keeps serving (and pauses) while the batch is held
    EXPECT_EQ(first.batches, batches_at_hold) << "a batch was handed over while one was held";
    std::printf("restart: while a batch was held, %zu records were taken ahead of the sink\n",
                consumer.log.consumer()->buffered());
    EXPECT_LE(consumer.log.consumer()->buffered(), consumer.log.consumer()->buffer_limit())
        << "records must not pile up in the plugin while the sink is busy";
    bool stopped = false;
    consumer.log.stop([&] { stopped = true; });
    run_for(io, 200ms);
    EXPECT_FALSE(stopped) << "stop() must wait for the batch in flight";
    std::exchange(held, nullptr)(Status::error(StatusCode::cancelled, "test: shutting down"));
    EXPECT_TRUE(run_until(io, [&] { return stopped; }, 30s));
  }
  RecordingSink second;
  {
    LogUnderTest consumer(io, overrides);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &second, 500}).ok());
    run_until(
        io,
        [&] {
          std::set<MessageId> all(seen_first);
          for (const auto& m : second.deliveries) all.insert(m->id);
          return all.size() >= static_cast<std::size_t>(n);
        },
        60s);
    run_for(io, 500ms);
    ASSERT_TRUE(stop_log(io, consumer.log));
  }
  std::set<MessageId> all(seen_first);
  std::set<MessageId> held_set(held_ids.begin(), held_ids.end());
  std::size_t unexpected_duplicates = 0;
  for (const auto& m : second.deliveries) {
    if (seen_first.contains(m->id) && !held_set.contains(m->id)) ++unexpected_duplicates;
    all.insert(m->id);
  }
  for (const auto& m : produced.sent) EXPECT_TRUE(all.contains(m->id)) << "lost " << m->id.to_string();
  EXPECT_EQ(unexpected_duplicates, 0u) << "messages of committed batches came again";
  std::printf("restart: first run confirmed %zu, held %zu uncommitted; second run got %zu\n", seen_first.size(),
              held_ids.size(), second.deliveries.size());
}

/// Records that are not envelopes are skipped (counted) and committed past.
inline void scenario_undecodable_records_are_skipped(const Env& env) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  ProduceOutcome produced;
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    produced = produce_messages(io, producer.log, 50, 1);
    ASSERT_EQ(produced.ok, 50u);
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  produce_raw(env.brokers, env.topic, {"not an envelope", "", std::string("NG\x01garbage", 10)}, "room-0");
  ProduceOutcome after;
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    after = produce_messages(io, producer.log, 50, 1);
    ASSERT_EQ(after.ok, 50u);
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  RecordingSink sink;
  LogUnderTest consumer(io, overrides);
  ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 500}).ok());
  EXPECT_TRUE(run_until(io, [&] { return sink.deliveries.size() >= 100; }, 60s));
  run_for(io, 300ms);
  EXPECT_EQ(sink.deliveries.size(), 100u);
  std::vector<MessageId> expected;
  for (const auto& m : produced.sent) expected.push_back(m->id);
  for (const auto& m : after.sent) expected.push_back(m->id);
  std::vector<MessageId> got;
  for (const auto& m : sink.deliveries) got.push_back(m->id);
  EXPECT_EQ(got, expected) << "the valid records, in order, each once";
  EXPECT_EQ(consumer.context.metrics().value("decode_errors"), 3u);
  EXPECT_GE(consumer.context.logger().count(LogLevel::warn, "undecodable"), 1u);
  ASSERT_TRUE(stop_log(io, consumer.log));
  EXPECT_EQ(committed_total(env.brokers, env.topic, env.group, env.partitions), 103) << "not committed past them";
}

/// A second member joins the group mid-stream: the partitions are shared
/// (cooperative rebalance), nothing is lost, and only records of a batch in
/// flight on a moved partition may come twice.
inline void scenario_rebalance(const Env& env, int n) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  ProduceOutcome produced;
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    produced = produce_messages(io, producer.log, n, 50);
    ASSERT_EQ(produced.ok, static_cast<std::size_t>(n));
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  // A sink that takes 15 ms per batch, so the stream lasts while B joins
  // (A hears of the rebalance with its next heartbeat, within 3 s).
  auto slow = [&io](const BatchPtr&, Completion& done) {
    auto timer = std::make_shared<boost::asio::steady_timer>(io, 15ms);
    timer->async_wait([timer, done = std::exchange(done, nullptr)](boost::system::error_code) {
      done(Status::success());
    });
  };
  RecordingSink a_sink;
  RecordingSink b_sink;
  a_sink.policy = slow;
  b_sink.policy = slow;
  constexpr std::size_t batch = 100;
  auto a = std::make_unique<LogUnderTest>(io, overrides);
  ASSERT_TRUE(a->log.start(LogStartOptions{false, &a_sink, batch}).ok());
  ASSERT_TRUE(run_until(io, [&] { return a_sink.deliveries.size() >= static_cast<std::size_t>(n) / 10; }, 60s));
  auto b = std::make_unique<LogUnderTest>(io, overrides);
  ASSERT_TRUE(b->log.start(LogStartOptions{false, &b_sink, batch}).ok());
  auto seen = [&] {
    std::set<MessageId> all;
    for (const auto& m : a_sink.deliveries) all.insert(m->id);
    for (const auto& m : b_sink.deliveries) all.insert(m->id);
    return all;
  };
  EXPECT_TRUE(run_until(io, [&] { return seen().size() >= static_cast<std::size_t>(n); }, 120s));
  run_for(io, 300ms);
  const auto a_parts = a->context.metrics().gauge_value("assigned_partitions");
  const auto b_parts = b->context.metrics().gauge_value("assigned_partitions");
  EXPECT_EQ(a_parts + b_parts, env.partitions);
  EXPECT_GT(b_parts, 0) << "the second member got no partition";
  EXPECT_GT(b_sink.deliveries.size(), 0u);
  EXPECT_GT(a->context.metrics().value("rebalances"), 1u);
  const auto all = seen();
  for (const auto& m : produced.sent) EXPECT_TRUE(all.contains(m->id)) << "lost " << m->id.to_string();
  const std::size_t duplicates = a_sink.deliveries.size() + b_sink.deliveries.size() - all.size();
  EXPECT_LE(duplicates, batch) << "more came twice than one batch in flight";
  std::printf("rebalance: member A got %zu, member B got %zu (partitions %lld/%lld), %zu twice\n",
              a_sink.deliveries.size(), b_sink.deliveries.size(), static_cast<long long>(a_parts),
              static_cast<long long>(b_parts), duplicates);
  ASSERT_TRUE(stop_log(io, b->log));
  ASSERT_TRUE(stop_log(io, a->log));
}

}  // namespace nudge::plugins::kafka::test
