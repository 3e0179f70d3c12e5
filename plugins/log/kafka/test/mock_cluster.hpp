#pragma once

// librdkafka's in-process mock cluster (rdkafka_mock.h): a Kafka that speaks
// the protocol on real sockets of the loopback, so the plugin runs unchanged
// against it, and whose requests can be made to fail on purpose.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <librdkafka/rdkafka.h>
// After rdkafka.h, which it needs.
#include <librdkafka/rdkafka_mock.h>

#include "nudge/sdk/message.hpp"

namespace nudge::plugins::kafka::test {

/// Kafka protocol API keys (the request types errors are injected into).
namespace api {
constexpr std::int16_t kProduce = 0;
constexpr std::int16_t kFetch = 1;
constexpr std::int16_t kListOffsets = 2;
constexpr std::int16_t kMetadata = 3;
constexpr std::int16_t kOffsetCommit = 8;
constexpr std::int16_t kOffsetFetch = 9;
constexpr std::int16_t kFindCoordinator = 10;
constexpr std::int16_t kJoinGroup = 11;
constexpr std::int16_t kHeartbeat = 12;
constexpr std::int16_t kSyncGroup = 14;
constexpr std::int16_t kInitProducerId = 22;
}  // namespace api

/// A mock cluster of `brokers` brokers (ids 1 to `brokers`), living in a
/// handle of its own, which goes away with this object.
///
/// The 2.0.2 mock serves the calls of its API (push errors, broker down, ...)
/// from the loop that serves its sockets, which may sleep for a second with
/// a call waiting; a client asking for metadata every 20 ms keeps it awake,
/// so that each call takes milliseconds instead of up to a second.
class MockCluster {
 public:
  explicit MockCluster(int brokers = 1) {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", errstr, sizeof errstr);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    cluster_ = rk_ ? rd_kafka_mock_cluster_new(rk_, brokers) : nullptr;
    if (!cluster_) return;
    rd_kafka_conf_t* pacer_conf = rd_kafka_conf_new();
    rd_kafka_conf_set(pacer_conf, "bootstrap.servers", bootstraps().c_str(), errstr, sizeof errstr);
    rd_kafka_conf_set(pacer_conf, "topic.metadata.refresh.interval.ms", "20", errstr, sizeof errstr);
    rd_kafka_conf_set(pacer_conf, "log_level", "0", errstr, sizeof errstr);
    pacer_ = rd_kafka_new(RD_KAFKA_PRODUCER, pacer_conf, errstr, sizeof errstr);
    // A known topic is what the refresh asks about.
    if (pacer_) pacer_topic_ = rd_kafka_topic_new(pacer_, "nudge.test.pacer", nullptr);
  }
  /// Destroys the cluster and its handles on a thread of their own (the
  /// 2.0.2 mock sometimes takes a second to stop): the next test need not
  /// wait. Every such thread is joined when the program ends.
  ~MockCluster() {
    reapers().emplace_back([cluster = cluster_, pacer = pacer_, pacer_topic = pacer_topic_, rk = rk_] {
      if (cluster) rd_kafka_mock_cluster_destroy(cluster);
      if (pacer_topic) rd_kafka_topic_destroy(pacer_topic);
      if (pacer) rd_kafka_destroy(pacer);
      if (rk) rd_kafka_destroy(rk);
    });
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  rd_kafka_mock_cluster_t* get() const { return cluster_; }
  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

 private:
  /// Threads destroying clusters, joined at exit.
  struct Reapers : std::vector<std::thread> {
    ~Reapers() {
      for (auto& t : *this) t.join();
    }
  };
  static Reapers& reapers() {
    static Reapers threads;
    return threads;
  }

  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  rd_kafka_t* pacer_ = nullptr;
  rd_kafka_topic_t* pacer_topic_ = nullptr;
};

/// The partition a room's messages go to: the producer's partitioner
/// (murmur2 of the key, as the Java client).
inline std::int32_t partition_of(const std::string& room, int partitions) {
  return rd_kafka_msg_partitioner_murmur2_random(nullptr, room.data(), room.size(), partitions, nullptr, nullptr);
}

/// Every record of `topic`, read from the beginning of each partition to its
/// end (its high watermark when called) without a consumer group, decoded
/// (undecodable records are left out), each with its log position; empty
/// when the topic could not be read whole within 10 s. Blocking, tests only.
inline std::vector<MessagePtr> read_topic(const std::string& brokers, const std::string& topic, int partitions) {
  std::vector<MessagePtr> out;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof errstr);
  // A group only so that consumer_poll works; assign() joins nothing, commits nothing.
  rd_kafka_conf_set(conf, "group.id", "nudge-test-reader", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) return out;
  std::map<std::int32_t, std::int64_t> begin;
  std::map<std::int32_t, std::int64_t> end;  // partitions still to read, up to this offset
  for (int p = 0; p < partitions; ++p) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_destroy(rk);
      return {};
    }
    if (high > low) {
      begin[p] = low;
      end[p] = high;
    }
  }
  auto* list = rd_kafka_topic_partition_list_new(partitions);
  for (const auto& [p, high] : end) rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = begin[p];
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!end.empty() && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* record = rd_kafka_consumer_poll(rk, 50);
    if (!record) continue;
    if (!record->err) {
      std::shared_ptr<Message> message;
      const std::string_view bytes(static_cast<const char*>(record->payload), record->len);
      if (decode_envelope(bytes, message).ok()) {
        message->log_position = LogPosition{record->partition, record->offset};
        out.push_back(std::move(message));
      }
      const auto it = end.find(record->partition);
      if (it != end.end() && record->offset + 1 >= it->second) end.erase(it);
    }
    rd_kafka_message_destroy(record);
  }
  rd_kafka_destroy(rk);
  if (!end.empty()) return {};
  return out;
}

}  // namespace nudge::plugins::kafka::test
