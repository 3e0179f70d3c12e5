#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::kafka {

/// What the consumer does with a record it cannot decode.
enum class OnUndecodable {
  /// Writes it to the dead-letter topic; commits past it once Kafka has it there.
  dead_letter,
  /// Stops its partition right before it until a build that reads it runs.
  stop,
};

/// The `[log.kafka]` table, parsed and validated.
struct KafkaConfig {
  std::string brokers;
  std::string topic;
  std::int64_t partitions = 6;
  std::int64_t replication_factor = 1;
  /// 0: the brokers' own min.insync.replicas applies to the topic it creates.
  std::int64_t min_insync_replicas = 0;
  std::string group_id;
  std::string client_id;
  std::int64_t linger_ms = 5;
  std::int64_t batch_size = 1024 * 1024;
  std::string compression;
  std::int64_t delivery_timeout_ms = 30000;
  std::int64_t batch_wait_ms = 10;
  bool create_topic = true;
  std::int64_t session_timeout_ms = 10000;
  OnUndecodable on_undecodable = OnUndecodable::dead_letter;
  /// Never empty once read: the configured name or "<topic>.dead-letter".
  std::string dead_letter_topic;

  static ConfigSchema schema();
  /// Reads a validated Config. Throws std::invalid_argument for what no
  /// single key can check (the dead-letter topic's name against the topic's).
  static KafkaConfig from(const Config& config);
};

/// What an existing topic keeps of each message, as the brokers describe it.
struct TopicDurability {
  std::int64_t replication_factor = 0;   ///< the fewest replicas of any partition
  std::int64_t min_insync_replicas = 0;  ///< the topic's effective min.insync.replicas
};

/// How far a topic's settings hold the promise of an ack (acks=all: stored).
enum class DurabilityVerdict {
  /// Survives the loss of a broker, refuses writes rather than confirm one copy.
  holds,
  /// One copy, as configured (replication_factor = 1): a single broker's promise.
  single_copy,
  /// Weaker than configured, an ack the leader alone can give, or no ack at all.
  broken,
};

struct DurabilityAssessment {
  DurabilityVerdict verdict = DurabilityVerdict::holds;
  /// One paragraph naming the topic, the figures and what to do; empty when it holds.
  std::string text;
};

/// Judges a topic's replication against the config and the acks=all promise.
DurabilityAssessment assess_durability(const KafkaConfig& config, const std::string& topic,
                                       const TopicDurability& found);

/// True for a comma-separated list of host:port pairs ("a:9092,b:9092").
bool is_broker_list(std::string_view text);
/// True for a legal Kafka topic name: 1 to 249 of [A-Za-z0-9._-], not "." or "..".
bool is_topic_name(std::string_view name);

}  // namespace nudge::plugins::kafka
