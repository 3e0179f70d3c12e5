#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::kafka {

/// The `[log.kafka]` table, parsed and validated.
struct KafkaConfig {
  std::string brokers;
  std::string topic;
  std::int64_t partitions = 6;
  std::int64_t replication_factor = 1;
  std::string group_id;
  std::string client_id;
  std::int64_t linger_ms = 5;
  std::int64_t batch_size = 1024 * 1024;
  std::string compression;
  std::int64_t delivery_timeout_ms = 30000;
  std::int64_t batch_wait_ms = 10;
  bool create_topic = true;
  std::int64_t session_timeout_ms = 10000;

  static ConfigSchema schema();
  /// Reads a validated Config.
  static KafkaConfig from(const Config& config);
};

/// True for a comma-separated list of host:port pairs ("a:9092,b:9092").
bool is_broker_list(std::string_view text);
/// True for a legal Kafka topic name: 1 to 249 of [A-Za-z0-9._-], not "." or "..".
bool is_topic_name(std::string_view name);

}  // namespace nudge::plugins::kafka
