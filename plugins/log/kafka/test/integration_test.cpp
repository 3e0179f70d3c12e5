// Against a real broker at KAFKA_BROKERS (default 127.0.0.1:9092), started
// with `scripts/services/kafka start`. Skipped when no broker answers.

#include <gtest/gtest.h>

#include <cstdlib>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "scenarios.hpp"

namespace nudge::plugins::kafka::test {
namespace {

std::string brokers() {
  const char* env = std::getenv("KAFKA_BROKERS");
  return env && *env ? env : "127.0.0.1:9092";
}

/// True when a broker answers a metadata request within a few seconds.
bool broker_reachable(const std::string& bootstrap) {
  // A refused connection fails at once; librdkafka would retry until its timeout.
  std::string host;
  std::uint16_t port = 0;
  if (!parse_host_port(bootstrap.substr(0, bootstrap.find(',')), host, port)) return false;
  try {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    boost::asio::connect(socket, boost::asio::ip::tcp::resolver(io).resolve(host, std::to_string(port)));
  } catch (const std::exception&) {
    return false;
  }
  char errstr[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) return false;
  const rd_kafka_metadata_t* metadata = nullptr;
  const bool ok = rd_kafka_metadata(rk, 0, nullptr, &metadata, 3000) == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (metadata) rd_kafka_metadata_destroy(metadata);
  rd_kafka_destroy(rk);
  return ok;
}

/// The topic's partition count from a metadata request (blocking; tests only).
int partition_count(const std::string& bootstrap, const std::string& topic_name) {
  char errstr[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  rd_kafka_topic_t* topic = rd_kafka_topic_new(rk, topic_name.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  int count = -1;
  if (rd_kafka_metadata(rk, 0, topic, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1)
    count = metadata->topics[0].partition_cnt;
  if (metadata) rd_kafka_metadata_destroy(metadata);
  rd_kafka_topic_destroy(topic);
  rd_kafka_destroy(rk);
  return count;
}

/// Deletes a test's topic (blocking; tests only).
void delete_topic(const std::string& bootstrap, const std::string& topic_name) {
  char errstr[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) return;
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopic_t* topic = rd_kafka_DeleteTopic_new(topic_name.c_str());
  rd_kafka_DeleteTopics(rk, &topic, 1, nullptr, queue);
  if (rd_kafka_event_t* result = rd_kafka_queue_poll(queue, 10000)) rd_kafka_event_destroy(result);
  rd_kafka_DeleteTopic_destroy(topic);
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy(rk);
}

class KafkaIntegrationTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (env_.topic.empty()) return;
    delete_topic(env_.brokers, env_.topic);
    delete_topic(env_.brokers, env_.topic + ".dead-letter");  // made by the consumer's log, when it is
  }
  void SetUp() override {
    static const bool reachable = broker_reachable(brokers());
    if (!reachable)
      GTEST_SKIP() << "no Kafka broker answers at " << brokers()
                   << " (start one with scripts/services/kafka start, or set KAFKA_BROKERS)";
    env_ = Env{brokers(), "nudge.it." + unique_suffix(), "nudge-it-" + unique_suffix(), 6};
  }
  Env env_;
};

TEST_F(KafkaIntegrationTest, CreatesTheTopicWithTheConfiguredPartitions) {
  boost::asio::io_context io;
  auto config = base_overrides(env_.brokers, env_.topic, env_.group);
  config["partitions"] = std::int64_t{5};
  {
    LogUnderTest log(io, config);
    ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
    EXPECT_TRUE(run_until(
        io, [&] { return log.context.logger().count(LogLevel::info, "created topic") > 0; }, 20s));
    ASSERT_TRUE(stop_log(io, log.log));
  }
  {
    // A second start finds it and leaves it as it is.
    config["partitions"] = std::int64_t{7};
    LogUnderTest log(io, config);
    ASSERT_TRUE(log.log.start(LogStartOptions{true, nullptr, 500}).ok());
    EXPECT_EQ(produce_messages(io, log.log, 10, 2).ok, 10u);
    ASSERT_TRUE(stop_log(io, log.log));
    EXPECT_EQ(log.context.logger().count(LogLevel::warn, "topic"), 0u);
  }
  EXPECT_EQ(partition_count(env_.brokers, env_.topic), 5);
}

TEST_F(KafkaIntegrationTest, PartitionLagGaugesPerPartitionAndTheSummedConsumerLag) {
  boost::asio::io_context io;
  RecordingSink sink;
  LogUnderTest log(io, env_overrides(env_));
  EXPECT_FALSE(log.log.consumer_lag().has_value()) << "unknown before consuming";
  ASSERT_TRUE(log.log.start(LogStartOptions{true, &sink, 500}).ok());
  EXPECT_TRUE(log.log.readiness().ready) << log.log.readiness().reason;
  // Consumed and confirmed: offsets are stored.
  ASSERT_EQ(produce_messages(io, log.log, 60, 6, 30s).ok, 60u);
  ASSERT_TRUE(run_until(
      io, [&] { return sink.deliveries.size() >= 60; }, 60s));
  ASSERT_TRUE(run_until(
      io, [&] { return log.log.consumer_lag() == std::optional<std::int64_t>(0); }, 20s));
  EXPECT_TRUE(log.log.readiness().ready) << log.log.readiness().reason;

  // The sink holds the next batch unanswered: what comes now is lag.
  std::vector<Completion> held;
  sink.policy = [&](const BatchPtr&, Completion& done) { held.push_back(std::move(done)); };
  ASSERT_EQ(produce_messages(io, log.log, 60, 6, 30s).ok, 60u);
  auto& metrics = log.context.metrics();
  auto lag_of = [&](int partition) {
    return metrics.gauge_value("partition_lag", {{"topic", env_.topic}, {"partition", std::to_string(partition)}});
  };
  auto summed = [&] {
    std::int64_t sum = 0;
    for (int p = 0; p < env_.partitions; ++p) sum += lag_of(p);
    return sum;
  };
  ASSERT_TRUE(run_until(
      io, [&] { return summed() == 60 && log.log.consumer_lag() == std::optional<std::int64_t>(60); }, 20s))
      << "partition lags sum to " << summed() << ", consumer_lag " << log.log.consumer_lag().value_or(-1);
  int partitions_behind = 0;
  for (int p = 0; p < env_.partitions; ++p) {
    std::printf("partition %d: lag %lld\n", p, static_cast<long long>(lag_of(p)));
    partitions_behind += lag_of(p) > 0;
  }
  EXPECT_GE(partitions_behind, 2) << "6 rooms over 6 partitions";
  EXPECT_EQ(metrics.gauge_value("consumer_lag"), 60);

  // Answered: the lag drains to 0 on every partition.
  sink.policy = nullptr;
  for (auto& done : held)
    if (done) done(Status::success());
  ASSERT_TRUE(run_until(
      io, [&] { return summed() == 0 && log.log.consumer_lag() == std::optional<std::int64_t>(0); }, 30s))
      << "partition lags sum to " << summed();
  ASSERT_TRUE(stop_log(io, log.log));
}

TEST_F(KafkaIntegrationTest, ACaughtUpRestartReadsNoLagAndABacklogReadsWhatKafkaSees) {
  scenario_lag_after_restart(env_, 600, 300);
}

TEST_F(KafkaIntegrationTest, TenThousandMessagesInTwentyRoomsAreConsumedOnceInOrderAndCommitted) {
  scenario_produce_consume(env_, 10000, 20, true);
}

TEST_F(KafkaIntegrationTest, AHundredThousandMessagesInAHundredRooms) {
  scenario_produce_consume(env_, 100000, 100, true);
}

TEST_F(KafkaIntegrationTest, ASecondMemberTakesOverPartitionsAndNothingIsLost) { scenario_rebalance(env_, 30000); }

TEST_F(KafkaIntegrationTest, AFailedBatchIsDeliveredAgain) { scenario_failed_batch_is_redelivered(env_, 2000); }

TEST_F(KafkaIntegrationTest, ARestartMidStreamLosesNothing) { scenario_restart_mid_stream(env_, 10000); }

TEST_F(KafkaIntegrationTest, UndecodableRecordsGoToTheDeadLetterTopicByteForByteAndAreCommittedPast) {
  scenario_undecodable_records_are_dead_lettered(env_);
  // Made by the log (the broker would have made 4 partitions on its own).
  EXPECT_EQ(partition_count(env_.brokers, env_.topic + ".dead-letter"), 1);
}

TEST_F(KafkaIntegrationTest, AnUndecodableRecordStopsItsPartitionRightBeforeItWhenAskedTo) {
  scenario_undecodable_record_stops_its_partition(env_);
}

}  // namespace
}  // namespace nudge::plugins::kafka::test
