// Fault injection with librdkafka's mock cluster (rdkafka_mock.h): an
// in-process Kafka that speaks the protocol on real sockets, so the plugin
// runs unchanged against it, and requests can be made to fail on purpose.

#include <gtest/gtest.h>

#include "mock_cluster.hpp"
#include "scenarios.hpp"

namespace nudge::plugins::kafka::test {
namespace {

using api::kProduce;

class MockClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(cluster_.get(), nullptr) << "cannot start librdkafka's mock cluster";
    // The 2.0.2 mock cluster names no controller, so CreateTopics cannot
    // succeed on it (it times out after 5 s); the topic is made here instead,
    // and the log does not try. Topic creation is covered by the integration
    // tests.
    env_ = Env{cluster_.bootstraps(), "nudge.test." + unique_suffix(), "nudge-test-" + unique_suffix(), 6, false};
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster_.get(), env_.topic.c_str(), env_.partitions, 1),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster_.get(), (env_.topic + ".dead-letter").c_str(), 1, 1),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  std::map<std::string, ConfigValue> overrides() const { return env_overrides(env_); }

  MockCluster cluster_;
  Env env_;
};

TEST_F(MockClusterTest, TransientProduceErrorsStillAckEveryMessageExactlyOnce) {
  // Every produce request in the first round fails with a retriable error.
  rd_kafka_mock_push_request_errors(cluster_.get(), kProduce, 8, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND);
  boost::asio::io_context io;
  constexpr int n = 3000;
  ProduceOutcome produced;
  {
    LogUnderTest log(io, overrides());
    ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
    produced = produce_messages(io, log.log, n, 20);
    EXPECT_EQ(produced.ok, static_cast<std::size_t>(n));
    EXPECT_EQ(produced.failed, 0u);
    EXPECT_EQ(produced.extra_calls, 0u);
    ASSERT_TRUE(stop_log(io, log.log));
  }
  // And the topic holds each exactly once, rooms in order.
  RecordingSink sink;
  LogUnderTest consumer(io, overrides());
  ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 500}).ok());
  EXPECT_TRUE(run_until(
      io, [&] { return sink.deliveries.size() >= static_cast<std::size_t>(n); }, 60s));
  run_for(io, 300ms);
  expect_exactly_once_in_order(produced.sent, sink.deliveries);
  ASSERT_TRUE(stop_log(io, consumer.log));
}

TEST_F(MockClusterTest, MessageTimeoutFailsTheAppendAndNeverAcksIt) {
  boost::asio::io_context io;
  auto config = overrides();
  config["delivery_timeout_ms"] = std::int64_t{1500};
  LogUnderTest log(io, config);
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  // A first message makes sure the topic and the producer id exist...
  ASSERT_EQ(produce_messages(io, log.log, 1, 1).ok, 1u);
  // ...then the only broker goes away.
  ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster_.get(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto outcome = produce_messages(io, log.log, 200, 5, 20s);
  EXPECT_EQ(outcome.ok, 0u) << "acked while no broker could store it";
  EXPECT_EQ(outcome.failed, 200u);
  EXPECT_EQ(outcome.extra_calls, 0u);
  EXPECT_EQ(outcome.codes.count(StatusCode::timeout) ? outcome.codes.at(StatusCode::timeout) : 0u, 200u);
  EXPECT_LT(outcome.seconds, 10.0);
  EXPECT_EQ(log.context.metrics().value("produce_errors"), 200u);
  // The broker comes back: appends succeed again with the same producer.
  // (The producer reconnects with a backoff of up to 10 s, longer than this
  // delivery timeout, so the first appends may still time out.)
  ASSERT_EQ(rd_kafka_mock_broker_set_up(cluster_.get(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (produce_messages(io, log.log, 1, 1).ok != 1 && std::chrono::steady_clock::now() < deadline) {
  }
  const auto recovered = produce_messages(io, log.log, 100, 5, 30s);
  EXPECT_EQ(recovered.ok, 100u);
  EXPECT_EQ(recovered.extra_calls, 0u);
  ASSERT_TRUE(stop_log(io, log.log));
}

TEST_F(MockClusterTest, StopAnswersEveryAppendBeforeItCompletes) {
  boost::asio::io_context io;
  LogUnderTest log(io, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  constexpr int n = 5000;
  std::size_t answered = 0;
  std::size_t ok = 0;
  for (int i = 0; i < n; ++i)
    log.log.append(make_message(i % 7, i), [&](Status s) {
      ++answered;
      if (s.ok()) ++ok;
    });
  bool stopped = false;
  std::size_t answered_at_stop = 0;
  log.log.stop([&] {
    stopped = true;
    answered_at_stop = answered;
  });
  ASSERT_TRUE(run_until(
      io, [&] { return stopped; }, 30s));
  EXPECT_EQ(answered_at_stop, static_cast<std::size_t>(n));
  EXPECT_EQ(ok, static_cast<std::size_t>(n)) << "a healthy cluster stores everything during the drain";
  run_for(io, 100ms);
  EXPECT_EQ(answered, static_cast<std::size_t>(n));
}

TEST_F(MockClusterTest, StopPurgesWhatCannotBeDeliveredAndAnswersWithErrors) {
  boost::asio::io_context io;
  LogUnderTest log(io, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  ASSERT_EQ(produce_messages(io, log.log, 1, 1).ok, 1u);
  ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster_.get(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::size_t answered = 0;
  std::size_t ok = 0;
  for (int i = 0; i < 100; ++i)
    log.log.append(make_message(0, i), [&](Status s) {
      ++answered;
      if (s.ok()) ++ok;
    });
  bool stopped = false;
  log.log.producer()->stop([&] { stopped = true; }, 500ms);
  ASSERT_TRUE(run_until(
      io, [&] { return stopped; }, 15s));
  EXPECT_EQ(answered, 100u);
  EXPECT_EQ(ok, 0u);
  ASSERT_TRUE(stop_log(io, log.log));
}

TEST_F(MockClusterTest, AFatalProducerErrorFailsAppendsThenRecreatesTheProducer) {
  boost::asio::io_context io;
  LogUnderTest log(io, overrides());
  ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
  ASSERT_EQ(produce_messages(io, log.log, 10, 2).ok, 10u);
  rd_kafka_t* first = log.log.producer()->handle_for_test();
  ASSERT_EQ(rd_kafka_test_fatal_error(first, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "injected by the test"),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(run_until(
      io, [&] { return log.context.metrics().value("fatal_errors") == 1; }, 5s));
  const auto during = produce_messages(io, log.log, 10, 2, 5s);
  EXPECT_EQ(during.ok, 0u);
  EXPECT_EQ(during.codes.count(StatusCode::unavailable) ? during.codes.at(StatusCode::unavailable) : 0u, 10u);
  ASSERT_TRUE(run_until(
      io, [&] { return log.context.logger().count(LogLevel::info, "Kafka producer was recreated") == 1; }, 10s));
  ASSERT_NE(log.log.producer()->handle_for_test(), nullptr);
  EXPECT_EQ(produce_messages(io, log.log, 10, 2).ok, 10u);
  ASSERT_TRUE(stop_log(io, log.log));
}

TEST_F(MockClusterTest, AFailedBatchIsDeliveredAgain) { scenario_failed_batch_is_redelivered(env_, 1000); }

TEST_F(MockClusterTest, ANewMaxBatchSizeAppliesFromTheNextBatch) {
  // A reload of the sink's batch_max_messages reaches the consumer that makes the batches.
  boost::asio::io_context io;
  auto overrides = env_overrides(env_);
  overrides["batch_wait_ms"] = std::int64_t{0};
  {
    LogUnderTest producer(io, overrides);
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    ASSERT_EQ(produce_messages(io, producer.log, 1000, 10).ok, 1000u);
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  RecordingSink sink;
  LogUnderTest consumer(io, overrides);
  std::vector<std::size_t> sizes;
  Completion held;
  sink.policy = [&](const BatchPtr& batch, Completion& done) {
    sizes.push_back(batch->size());
    if (sizes.size() == 1) held = std::exchange(done, nullptr);
  };
  ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 200}).ok());
  // While the first batch is held, records pile up: more than the new size allows in one batch.
  ASSERT_TRUE(run_until(
      io, [&] { return held && consumer.log.consumer()->buffered() >= 40; }, 60s));
  consumer.log.set_max_batch_messages(20);
  std::exchange(held, nullptr)(Status::success());
  ASSERT_TRUE(run_until(
      io, [&] { return sink.deliveries.size() >= 1000u; }, 60s));
  ASSERT_GE(sizes.size(), 2u);
  for (std::size_t i = 1; i < sizes.size(); ++i) EXPECT_LE(sizes[i], 20u) << "batch " << i;
  ASSERT_TRUE(stop_log(io, consumer.log));
}

TEST_F(MockClusterTest, UndecodableRecordsGoToTheDeadLetterTopicByteForByteAndAreCommittedPast) {
  scenario_undecodable_records_are_dead_lettered(env_);
}

TEST_F(MockClusterTest, ABatchTheSinkFailsWritesItsUndecodableRecordToTheDeadLetterTopicOnce) {
  boost::asio::io_context io;
  const auto before = room_messages(0, 0, 5);
  const auto after = room_messages(0, 5, 5);
  auto garbage = std::vector<RawRecord>{undecodable_records("room-0")[1]};
  {
    LogUnderTest producer(io, overrides());
    ASSERT_TRUE(producer.log.start(LogStartOptions{true, nullptr, 500}).ok());
    ASSERT_EQ(append_messages(io, producer.log, before), before.size());
    produce_records(env_.brokers, env_.topic, garbage);
    ASSERT_EQ(append_messages(io, producer.log, after), after.size());
    ASSERT_TRUE(stop_log(io, producer.log));
  }
  // The batch that carries the undecodable record fails once, while its
  // dead-letter produce is in flight; it comes again with the record.
  RecordingSink sink;
  std::size_t failed = 0;
  sink.policy = [&](const BatchPtr&, Completion& done) {
    if (failed++ == 0) std::exchange(done, nullptr)(Status::error(StatusCode::unavailable, "test: the sink is down"));
  };
  LogUnderTest consumer(io, overrides());
  ASSERT_TRUE(consumer.log.start(LogStartOptions{false, &sink, 100}).ok());
  auto& metrics = consumer.context.metrics();
  EXPECT_TRUE(run_until(
      io, [&] { return failed >= 2 && metrics.value("dead_lettered") >= 1; }, 30s));
  run_for(io, 500ms);
  EXPECT_EQ(metrics.value("batch_failures"), 1u);
  EXPECT_EQ(metrics.value("dead_lettered"), 1u) << "produced again with the batch handed over again";
  std::vector<MessagePtr> good(before);
  good.insert(good.end(), after.begin(), after.end());
  std::vector<MessagePtr> accepted(sink.deliveries.begin() + static_cast<std::ptrdiff_t>(good.size()),
                                   sink.deliveries.end());
  expect_exactly_once_in_order(good, accepted);
  ASSERT_TRUE(stop_log(io, consumer.log));
  EXPECT_EQ(committed_offsets(env_.brokers, env_.topic, env_.group, env_.partitions), committed_at_the_end(env_));
  expect_dead_lettered(env_, garbage);
}

TEST_F(MockClusterTest, AnUndecodableRecordStopsItsPartitionRightBeforeItWhenAskedTo) {
  env_.session_timeout_ms = 3000;  // the restart joins in 2 s rather than 9
  scenario_undecodable_record_stops_its_partition(env_);
}

TEST_F(MockClusterTest, ACaughtUpRestartReadsNoLagAndABacklogReadsWhatKafkaSees) {
  env_.session_timeout_ms = 3000;  // each restart joins in 2 s rather than 9
  scenario_lag_after_restart(env_, 600, 300);
}

}  // namespace
}  // namespace nudge::plugins::kafka::test
