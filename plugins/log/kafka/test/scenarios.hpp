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
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <boost/asio/steady_timer.hpp>

#include "dead_letter.hpp"
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
  return run_until(
      io, [&] { return stopped; }, timeout);
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
  run_until(
      io, [&] { return answered == static_cast<std::size_t>(n); }, timeout);
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

/// A record as Kafka holds it, byte for byte: a null key, value or header
/// value stays null (nullopt), apart from an empty one.
struct RawRecord {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

/// Produces `records` as they are to `topic`, each to its key's partition
/// (murmur2, as the log), and fills in where each landed; blocking, tests only.
inline void produce_records(const std::string& brokers, const std::string& topic, std::vector<RawRecord>& records) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof errstr);
  // One at a time, so that they land in the order given.
  rd_kafka_conf_set(conf, "max.in.flight.requests.per.connection", "1", errstr, sizeof errstr);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* report, void*) {
    auto* record = static_cast<RawRecord*>(report->_private);
    if (report->err) return;
    record->partition = report->partition;
    record->offset = report->offset;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  ASSERT_NE(rk, nullptr) << errstr;
  for (auto& r : records) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(r.headers.size());
    for (const auto& [name, value] : r.headers)
      rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value ? value->data() : nullptr,
                          value ? static_cast<ssize_t>(value->size()) : 0);
    const void* key = r.key ? r.key->data() : nullptr;
    const std::size_t key_size = r.key ? r.key->size() : 0;
    void* value = r.value ? r.value->data() : nullptr;
    const std::size_t value_size = r.value ? r.value->size() : 0;
    ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key, key_size),
                                RD_KAFKA_V_VALUE(value, value_size), RD_KAFKA_V_HEADERS(headers),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&r), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  EXPECT_EQ(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
  for (const auto& r : records) EXPECT_GE(r.offset, 0) << "a raw record was not stored";
}

/// The low and high watermarks (first offset, one past the last) of each
/// partition of `topic`; empty when Kafka did not answer (blocking; tests only).
inline std::vector<std::pair<std::int64_t, std::int64_t>> watermarks(const std::string& brokers,
                                                                     const std::string& topic, int partitions) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) return {};
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (int p = 0; p < partitions; ++p) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      out.clear();
      break;
    }
    out.emplace_back(low, high);
  }
  rd_kafka_destroy(rk);
  return out;
}

/// The high watermark (one past the last offset) of each partition of
/// `topic`; empty when Kafka did not answer (blocking; tests only).
inline std::vector<std::int64_t> end_offsets(const std::string& brokers, const std::string& topic, int partitions) {
  std::vector<std::int64_t> out;
  for (const auto& [low, high] : watermarks(brokers, topic, partitions)) out.push_back(high);
  return out;
}

/// `group`'s lag on each partition of `topic` as Kafka sees it, computed as
/// kafka-consumer-groups --describe does: the log-end offset minus the
/// committed offset (minus the log start where nothing is committed, as the
/// group reads from the earliest); empty when Kafka did not answer
/// (blocking; tests only).
inline std::vector<std::int64_t> kafka_lag(const std::string& brokers, const std::string& topic,
                                           const std::string& group, int partitions) {
  const auto committed = committed_offsets(brokers, topic, group, partitions);
  const auto marks = watermarks(brokers, topic, partitions);
  if (committed.empty() || marks.empty()) return {};
  std::vector<std::int64_t> lag;
  for (int p = 0; p < partitions; ++p) {
    const auto [low, high] = marks[static_cast<std::size_t>(p)];
    const auto from = std::max(committed[static_cast<std::size_t>(p)], low);
    lag.push_back(std::max<std::int64_t>(0, high - from));
  }
  return lag;
}

/// Every record of `topic` as stored, from the beginning of each partition
/// to its end when called, in partition then offset order; empty when it
/// could not be read whole within 10 s (blocking; tests only).
inline std::vector<RawRecord> read_records(const std::string& brokers, const std::string& topic, int partitions) {
  const auto end = end_offsets(brokers, topic, partitions);
  if (end.empty()) return {};
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "group.id", "nudge-test-raw-reader", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) return {};
  std::map<std::int32_t, std::int64_t> left;  // partitions still to read, up to this offset
  auto* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    if (end[static_cast<std::size_t>(p)] > 0) {
      left[p] = end[static_cast<std::size_t>(p)];
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<RawRecord> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 50);
    if (!m) continue;
    if (!m->err) {
      RawRecord r;
      if (m->key) r.key.emplace(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.value.emplace(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* value = nullptr;
        std::size_t size = 0;
        for (std::size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == 0; ++i)
          r.headers.emplace_back(
              name,
              value ? std::optional<std::string>(std::string(static_cast<const char*>(value), size)) : std::nullopt);
      }
      r.partition = m->partition;
      r.offset = m->offset;
      out.push_back(std::move(r));
      const auto it = left.find(m->partition);
      if (it != left.end() && m->offset + 1 >= it->second) left.erase(it);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_destroy(rk);
  if (!left.empty()) return {};
  std::sort(out.begin(), out.end(), [](const RawRecord& a, const RawRecord& b) {
    return std::pair(a.partition, a.offset) < std::pair(b.partition, b.offset);
  });
  return out;
}

struct Env {
  std::string brokers;
  std::string topic;
  std::string group;
  int partitions = 6;
  /// False where the topic is made by the test (the mock cluster cannot create topics).
  bool create_topic = true;
  /// The log's session_timeout_ms when not 0. The mock cluster makes a
  /// member that joins after another left wait this minus 1 s.
  std::int64_t session_timeout_ms = 0;
};

/// The overrides of the log under test in `env`.
inline std::map<std::string, ConfigValue> env_overrides(const Env& env) {
  auto overrides = base_overrides(env.brokers, env.topic, env.group);
  overrides["create_topic"] = env.create_topic;
  if (env.session_timeout_ms > 0) overrides["session_timeout_ms"] = env.session_timeout_ms;
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
  EXPECT_TRUE(run_until(
      io, [&] { return accepted.size() >= static_cast<std::size_t>(n); }, 60s));
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
    ASSERT_TRUE(run_until(
        io, [&] { return static_cast<bool>(held); }, 60s));
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
    EXPECT_TRUE(run_until(
        io, [&] { return stopped; }, 30s));
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

/// Appends `messages` and waits for their answers; how many were acked.
inline std::size_t append_messages(boost::asio::io_context& io, KafkaLog& log, const std::vector<MessagePtr>& messages,
                                   std::chrono::milliseconds timeout = 30s) {
  auto acked = std::make_shared<std::size_t>(0);
  auto answered = std::make_shared<std::size_t>(0);
  for (const auto& m : messages)
    log.append(m, [acked, answered](Status s) {
      ++*answered;
      if (s.ok()) ++*acked;
    });
  run_until(
      io, [&] { return *answered == messages.size(); }, timeout);
  return *acked;
}

/// What committed_offsets() reads once the group committed everything: each
/// partition's end, -1 for one that never had a record.
inline std::vector<std::int64_t> committed_at_the_end(const Env& env) {
  auto end = end_offsets(env.brokers, env.topic, env.partitions);
  for (auto& offset : end)
    if (offset == 0) offset = -1;
  return end;
}

/// `n` messages of `room`, their payloads `first` to `first + n - 1` (their order in the room).
inline std::vector<MessagePtr> room_messages(int room, int first, int n) {
  std::vector<MessagePtr> out;
  for (int i = 0; i < n; ++i) out.push_back(make_message(room, first + i));
  return out;
}

/// A room whose partition (of `partitions`) is not room 0's.
inline int room_beside_room_0(int partitions) {
  auto partition = [partitions](int room) {
    const std::string key = "room-" + std::to_string(room);
    return rd_kafka_msg_partitioner_murmur2_random(nullptr, key.data(), key.size(), partitions, nullptr, nullptr);
  };
  int room = 1;
  while (partition(room) == partition(0)) ++room;
  return room;
}

/// Records this build cannot decode, keyed `key`: a newer build's envelope
/// (a version byte this one does not know), with headers (an empty and a
/// null value among them); text; an empty value; a null value.
inline std::vector<RawRecord> undecodable_records(const std::string& key) {
  std::string newer = make_message(0, 0)->envelope();
  newer[2] = static_cast<char>(newer[2] + 1);
  return {
      RawRecord{key, newer, {{"trace-id", std::string("4bf92f3577b34da6")}, {"empty", std::string()}, {"null", {}}}},
      RawRecord{key, std::string("not an envelope"), {}},
      RawRecord{key, std::string(), {{"h", std::string("\x00\xff", 2)}}},
      RawRecord{key, std::nullopt, {}},
  };
}

/// The dead-letter topic holds each of `garbage` once, in order, byte for
/// byte (key, value, its own headers first), with the provenance headers
/// naming where it was read and why it is there.
inline void expect_dead_lettered(const Env& env, const std::vector<RawRecord>& garbage) {
  const auto dead = read_records(env.brokers, env.topic + ".dead-letter", 1);
  ASSERT_EQ(dead.size(), garbage.size()) << "the dead-letter topic holds what was not decodable, once each";
  for (std::size_t i = 0; i < garbage.size(); ++i) {
    SCOPED_TRACE("undecodable record " + std::to_string(i));
    const auto& got = dead[i];
    const auto& sent = garbage[i];
    EXPECT_EQ(got.key, sent.key);
    EXPECT_EQ(got.value, sent.value);
    ASSERT_GE(got.headers.size(), sent.headers.size());
    const std::vector<std::pair<std::string, std::optional<std::string>>> own(
        got.headers.begin(), got.headers.begin() + static_cast<std::ptrdiff_t>(sent.headers.size()));
    EXPECT_EQ(own, sent.headers);
    std::map<std::string, std::string> provenance;
    for (auto it = got.headers.begin() + static_cast<std::ptrdiff_t>(sent.headers.size()); it != got.headers.end();
         ++it)
      provenance[it->first] = it->second.value_or("(null)");
    EXPECT_EQ(provenance[dead_letter_header::kTopic], env.topic);
    EXPECT_EQ(provenance[dead_letter_header::kPartition], std::to_string(sent.partition));
    EXPECT_EQ(provenance[dead_letter_header::kOffset], std::to_string(sent.offset));
    EXPECT_EQ(provenance[dead_letter_header::kGroup], env.group);
    EXPECT_EQ(provenance[dead_letter_header::kTimestampType], "create");
    const auto ts = std::stoll(provenance[dead_letter_header::kTimestamp]);
    const auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    EXPECT_GT(ts, now - 600000) << "the record's own timestamp, within the last 10 minutes";
    EXPECT_LE(ts, now);
    EXPECT_FALSE(provenance[dead_letter_header::kError].empty());
    // A newer build's envelope says why, in the decoder's words.
    if (sent.value && sent.value->starts_with("NG")) {
      EXPECT_NE(provenance[dead_letter_header::kError].find("version"), std::string::npos)
          << provenance[dead_letter_header::kError];
    }
  }
}

/// Records that are not envelopes go to the dead-letter topic byte for
/// byte; every good message is handed over once, in order; the group
/// commits to the end, past the undecodable ones.
inline void scenario_undecodable_records_are_dead_lettered(const Env& env) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  const int other = room_beside_room_0(env.partitions);
  const auto before = room_messages(0, 0, 25);
  const auto beside = room_messages(other, 0, 25);
  const auto after = room_messages(0, 25, 25);
  auto garbage = undecodable_records("room-0");
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    ASSERT_EQ(append_messages(io, producer.log, before), before.size());
    ASSERT_EQ(append_messages(io, producer.log, beside), beside.size());
    produce_records(env.brokers, env.topic, garbage);
    ASSERT_EQ(append_messages(io, producer.log, after), after.size());
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  std::vector<MessagePtr> good(before);
  good.insert(good.end(), beside.begin(), beside.end());
  good.insert(good.end(), after.begin(), after.end());

  RecordingSink sink;
  LogUnderTest consumer(io, overrides);
  // Small batches: the undecodable records travel with good ones, and some batches after them.
  ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 10}).ok());
  auto& metrics = consumer.context.metrics();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(run_until(
      io, [&] { return sink.deliveries.size() >= good.size() && metrics.value("dead_lettered") == garbage.size(); },
      60s));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run_for(io, 300ms);
  expect_exactly_once_in_order(good, sink.deliveries);
  EXPECT_EQ(metrics.value("decode_errors"), garbage.size());
  EXPECT_EQ(metrics.value("dead_lettered"), garbage.size());
  EXPECT_EQ(metrics.value("dead_letter_errors"), 0u);
  EXPECT_EQ(metrics.value("partition_stops"), 0u);
  EXPECT_TRUE(consumer.log.readiness().ready) << consumer.log.readiness().reason;
  EXPECT_GE(consumer.context.logger().count(LogLevel::warn, "dead-letter topic"), 1u);
  ASSERT_TRUE(stop_log(io, consumer.log));
  EXPECT_EQ(committed_offsets(env.brokers, env.topic, env.group, env.partitions), committed_at_the_end(env))
      << "the group did not commit to the end, past the undecodable records";
  expect_dead_lettered(env, garbage);
  std::printf("dead-letter: %zu good messages written once and %zu undecodable records dead-lettered in %.2f s\n",
              sink.deliveries.size(), garbage.size(), took);
}

/// on_undecodable = "stop": the good records before an undecodable one are
/// written and committed, nothing at or past it; the log says why it is not
/// ready; other partitions go on. A restart that can deal with it (here:
/// dead-letter) goes on from exactly there.
inline void scenario_undecodable_record_stops_its_partition(const Env& env) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  const int other = room_beside_room_0(env.partitions);
  const auto before = room_messages(0, 0, 20);
  const auto beside = room_messages(other, 0, 20);
  const auto after = room_messages(0, 20, 20);
  std::vector<RawRecord> garbage{undecodable_records("room-0").front()};
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    ASSERT_EQ(append_messages(io, producer.log, before), before.size());
    ASSERT_EQ(append_messages(io, producer.log, beside), beside.size());
    produce_records(env.brokers, env.topic, garbage);
    ASSERT_EQ(append_messages(io, producer.log, after), after.size());
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  const std::int32_t stopped = garbage[0].partition;
  const std::int64_t at = garbage[0].offset;

  RecordingSink sink;
  {
    auto stopping = overrides;
    stopping["on_undecodable"] = std::string("stop");
    LogUnderTest consumer(io, stopping);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 10}).ok());
    EXPECT_TRUE(run_until(
        io, [&] { return sink.deliveries.size() >= before.size() + beside.size() && !consumer.log.readiness().ready; },
        60s));
    run_for(io, 1s);  // nothing past the undecodable record comes
    std::vector<MessagePtr> expected(before);
    expected.insert(expected.end(), beside.begin(), beside.end());
    expect_exactly_once_in_order(expected, sink.deliveries);
    const auto readiness = consumer.log.readiness();
    EXPECT_FALSE(readiness.ready);
    for (const std::string& part :
         std::vector<std::string>{"partition " + std::to_string(stopped), "offset " + std::to_string(at),
                                  "'" + env.topic + "'", "on_undecodable", "restart"})
      EXPECT_NE(readiness.reason.find(part), std::string::npos) << "'" << part << "' not in: " << readiness.reason;
    auto& metrics = consumer.context.metrics();
    EXPECT_EQ(metrics.value("partition_stops"), 1u);
    EXPECT_EQ(metrics.value("decode_errors"), 1u);
    EXPECT_EQ(metrics.value("dead_lettered"), 0u);
    EXPECT_EQ(consumer.context.logger().count(LogLevel::error, "stopped at offset"), 1u);
    std::printf("stop: partition %d stopped at offset %lld; not ready: %s\n", stopped, static_cast<long long>(at),
                readiness.reason.c_str());
    ASSERT_TRUE(stop_log(io, consumer.log));
  }
  auto expected = committed_at_the_end(env);
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(env.partitions));
  expected[static_cast<std::size_t>(stopped)] = at;
  EXPECT_EQ(committed_offsets(env.brokers, env.topic, env.group, env.partitions), expected)
      << "committed exactly up to the undecodable record in its partition, to the end in the others";

  // Restarted with a way to deal with it: it goes on from the record it stopped at.
  RecordingSink again;
  {
    LogUnderTest consumer(io, overrides);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &again, 10}).ok());
    EXPECT_TRUE(run_until(
        io,
        [&] {
          return again.deliveries.size() >= after.size() && consumer.context.metrics().value("dead_lettered") == 1;
        },
        60s));
    run_for(io, 300ms);
    expect_exactly_once_in_order(after, again.deliveries);
    EXPECT_TRUE(consumer.log.readiness().ready) << consumer.log.readiness().reason;
    ASSERT_TRUE(stop_log(io, consumer.log));
  }
  EXPECT_EQ(committed_offsets(env.brokers, env.topic, env.group, env.partitions), committed_at_the_end(env));
  expect_dead_lettered(env, garbage);
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
    timer->async_wait(
        [timer, done = std::exchange(done, nullptr)](boost::system::error_code) { done(Status::success()); });
  };
  RecordingSink a_sink;
  RecordingSink b_sink;
  a_sink.policy = slow;
  b_sink.policy = slow;
  constexpr std::size_t batch = 100;
  auto a = std::make_unique<LogUnderTest>(io, overrides);
  ASSERT_TRUE(a->log.start(LogStartOptions{false, &a_sink, batch}).ok());
  ASSERT_TRUE(run_until(
      io, [&] { return a_sink.deliveries.size() >= static_cast<std::size_t>(n) / 10; }, 60s));
  auto b = std::make_unique<LogUnderTest>(io, overrides);
  ASSERT_TRUE(b->log.start(LogStartOptions{false, &b_sink, batch}).ok());
  auto seen = [&] {
    std::set<MessageId> all;
    for (const auto& m : a_sink.deliveries) all.insert(m->id);
    for (const auto& m : b_sink.deliveries) all.insert(m->id);
    return all;
  };
  EXPECT_TRUE(run_until(
      io, [&] { return seen().size() >= static_cast<std::size_t>(n); }, 120s));
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

/// What a consuming log reported as its lag, sampled every time `sample()`
/// runs (each turn of run_until): the largest figure of each kind seen, and
/// the summed lag's successive values.
struct LagSamples {
  LagSamples(LogUnderTest& log, const Env& env) : log(log), env(env) {}
  std::int64_t partition(int p) {
    return log.context.metrics().gauge_value("partition_lag", {{"topic", env.topic}, {"partition", std::to_string(p)}});
  }
  void sample() {
    ++count;
    if (const auto lag = log.log.consumer_lag()) {
      max_lag = std::max(max_lag, *lag);
      if (values.empty() || values.back() != *lag) values.push_back(*lag);
    }
    max_gauge = std::max(max_gauge, log.context.metrics().gauge_value("consumer_lag"));
    for (int p = 0; p < env.partitions; ++p) max_partition = std::max(max_partition, partition(p));
  }
  /// Every owned partition is counted in consumer_lag().
  bool measured() {
    return log.context.metrics().gauge_value("assigned_partitions") == env.partitions &&
           log.log.consumer()->unmeasured_partitions() == 0 && log.log.consumer_lag().has_value();
  }
  std::vector<std::int64_t> partitions() {
    std::vector<std::int64_t> out;
    for (int p = 0; p < env.partitions; ++p) out.push_back(partition(p));
    return out;
  }
  LogUnderTest& log;
  const Env& env;
  std::size_t count = 0;
  std::int64_t max_lag = -1;
  std::int64_t max_gauge = -1;
  std::int64_t max_partition = -1;
  std::vector<std::int64_t> values;
};

/// A member that wrote and committed everything starts again with nothing
/// new: within seconds its lag reads 0 on every partition, as Kafka's own
/// view does, and never the log-end offset meanwhile (a partition from which
/// nothing was fetched since the start used to count from offset 0). Then
/// `backlog` messages arrive while it is stopped: the next start reads
/// exactly that, as Kafka does, and the lag only falls, to 0, as the sink
/// writes.
inline void scenario_lag_after_restart(const Env& env, int n, int backlog) {
  boost::asio::io_context io;
  auto overrides = env_overrides(env);
  auto produce = [&](int count) {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    ASSERT_EQ(produce_messages(io, producer.log, count, env.partitions).ok, static_cast<std::size_t>(count));
    ASSERT_TRUE(stop_log(io, producer.log));
  };
  ASSERT_NO_FATAL_FAILURE(produce(n));
  {
    RecordingSink sink;
    LogUnderTest consumer(io, overrides);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 500}).ok());
    ASSERT_TRUE(run_until(
        io, [&] { return sink.deliveries.size() >= static_cast<std::size_t>(n); }, 60s));
    ASSERT_TRUE(stop_log(io, consumer.log));  // commits what is stored
  }
  ASSERT_EQ(committed_total(env.brokers, env.topic, env.group, env.partitions), n);
  const std::vector<std::int64_t> zeros(static_cast<std::size_t>(env.partitions), 0);
  ASSERT_EQ(kafka_lag(env.brokers, env.topic, env.group, env.partitions), zeros) << "Kafka sees a lag";

  {
    // Caught up, nothing new.
    RecordingSink sink;
    LogUnderTest consumer(io, overrides);
    LagSamples lag(consumer, env);
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 500}).ok());
    const bool zero = run_until(
        io,
        [&] {
          lag.sample();
          return lag.measured() && consumer.log.consumer_lag() == std::optional<std::int64_t>(0);
        },
        20s);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Two more measures (one a second) must not change it.
    run_until(
        io,
        [&] {
          lag.sample();
          return false;
        },
        2500ms);
    std::printf(
        "caught-up restart: lag measured on every partition %.2f s after the start; consumer_lag %lld; "
        "largest figure read over %zu samples: consumer_lag %lld, gauge %lld, a partition %lld "
        "(the topic holds %d)\n",
        took, static_cast<long long>(consumer.log.consumer_lag().value_or(-1)), lag.count,
        static_cast<long long>(lag.max_lag), static_cast<long long>(lag.max_gauge),
        static_cast<long long>(lag.max_partition), n);
    EXPECT_TRUE(zero) << "the lag did not read 0 on every partition within 20 s: "
                      << consumer.log.consumer_lag().value_or(-1);
    EXPECT_LT(took, 10.0);
    EXPECT_EQ(lag.max_lag, 0) << "consumer_lag() read a backlog that does not exist";
    EXPECT_EQ(lag.max_gauge, 0) << "the consumer_lag gauge read a backlog that does not exist";
    EXPECT_EQ(lag.max_partition, 0) << "a partition_lag gauge read a backlog that does not exist";
    EXPECT_EQ(lag.partitions(), kafka_lag(env.brokers, env.topic, env.group, env.partitions));
    EXPECT_EQ(sink.deliveries.size(), 0u);
    ASSERT_TRUE(stop_log(io, consumer.log));
  }

  // A backlog arrives while no member runs.
  ASSERT_NO_FATAL_FAILURE(produce(backlog));
  const auto behind = kafka_lag(env.brokers, env.topic, env.group, env.partitions);
  ASSERT_EQ(std::accumulate(behind.begin(), behind.end(), std::int64_t{0}), backlog);
  {
    // The sink holds the first batch until the lag was read.
    RecordingSink sink;
    Completion held;
    sink.policy = [&](const BatchPtr&, Completion& done) {
      if (!held) held = std::exchange(done, nullptr);
    };
    LogUnderTest consumer(io, overrides);
    LagSamples lag(consumer, env);
    ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 20}).ok());
    const bool full = run_until(
        io,
        [&] {
          lag.sample();
          return lag.measured() && consumer.log.consumer_lag() == std::optional<std::int64_t>(backlog) &&
                 static_cast<bool>(held);
        },
        20s);
    std::printf("restart with a backlog of %d: consumer_lag %lld, partitions", backlog,
                static_cast<long long>(consumer.log.consumer_lag().value_or(-1)));
    for (const auto p : lag.partitions()) std::printf(" %lld", static_cast<long long>(p));
    std::printf(" (Kafka:");
    for (const auto p : behind) std::printf(" %lld", static_cast<long long>(p));
    std::printf(")\n");
    EXPECT_TRUE(full) << "the lag did not read the backlog";
    EXPECT_EQ(lag.partitions(), behind) << "per partition, the lag is not Kafka's";
    EXPECT_LE(lag.max_lag, backlog) << "consumer_lag() read more than the backlog";
    EXPECT_LE(lag.max_partition, *std::max_element(behind.begin(), behind.end()));
    // Written slowly, so the lag is read on its way down.
    sink.policy = [&io](const BatchPtr&, Completion& done) {
      auto timer = std::make_shared<boost::asio::steady_timer>(io, 150ms);
      timer->async_wait(
          [timer, done = std::exchange(done, nullptr)](boost::system::error_code) { done(Status::success()); });
    };
    // Partitions not yet measured are left out of the figure, so it may rise
    // while the start is read; from the full reading on, it only falls.
    lag.values = {backlog};
    if (held) std::exchange(held, nullptr)(Status::success());
    const bool drained = run_until(
        io,
        [&] {
          lag.sample();
          return consumer.log.consumer_lag() == std::optional<std::int64_t>(0) && lag.partitions() == zeros;
        },
        30s);
    std::printf("draining: consumer_lag read");
    for (const auto v : lag.values) std::printf(" %lld", static_cast<long long>(v));
    std::printf("\n");
    EXPECT_TRUE(drained) << "the lag did not fall to 0";
    EXPECT_TRUE(std::is_sorted(lag.values.rbegin(), lag.values.rend())) << "the lag rose while nothing arrived";
    EXPECT_GE(lag.values.size(), 3u) << "the lag was not read on its way down";
    EXPECT_EQ(sink.deliveries.size(), static_cast<std::size_t>(backlog));
    ASSERT_TRUE(stop_log(io, consumer.log));
  }
  EXPECT_EQ(kafka_lag(env.brokers, env.topic, env.group, env.partitions), zeros);
}

}  // namespace nudge::plugins::kafka::test
