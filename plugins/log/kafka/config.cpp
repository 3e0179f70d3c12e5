#include "config.hpp"

#include <stdexcept>
#include <vector>

namespace nudge::plugins::kafka {

bool is_broker_list(std::string_view text) {
  if (text.empty()) return false;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::string host;
    std::uint16_t port = 0;
    if (!parse_host_port(item, host, port) || port == 0) return false;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return true;
}

bool is_topic_name(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

std::string non_empty(const ConfigValue& v) {
  return std::get<std::string>(v).empty() ? std::string("must not be empty") : std::string();
}

}  // namespace

ConfigSchema KafkaConfig::schema() {
  ConfigSchema s;
  s.string("brokers", "127.0.0.1:9092", "Bootstrap brokers, a comma-separated list of host:port")
      .with_example("\"${KAFKA_BROKERS:-127.0.0.1:9092}\"")
      .with_check([](const ConfigValue& v) {
        return is_broker_list(std::get<std::string>(v)) ? std::string()
                                                        : std::string("must be a comma-separated list of host:port");
      });
  s.string("topic", "nudge.messages", "Topic the messages are appended to and consumed from")
      .with_check([](const ConfigValue& v) {
        return is_topic_name(std::get<std::string>(v))
                   ? std::string()
                   : std::string("must be a Kafka topic name: 1 to 249 characters of [A-Za-z0-9._-]");
      });
  s.integer("partitions", 6,
            "Partitions of the topic when the log creates it (an existing topic is left as it is); "
            "each room lives in one partition, so this bounds the consumers that share the work")
      .range(1, 10000);
  s.integer("replication_factor", 1, "Replicas of each partition when the log creates the topic (at most the brokers)")
      .range(1, 100);
  s.integer("min_insync_replicas", 0,
            "min.insync.replicas of the topic when the log creates it: how many replicas must have a message "
            "before it is acked (at most replication_factor; 2 with replication_factor 3 survives one lost broker "
            "and refuses writes rather than confirm a single copy); 0 leaves the brokers' default")
      .range(0, 100);
  s.string("group_id", "nudge-persist",
           "Consumer group of the sink side; instances with the same group share the partitions")
      .with_check(non_empty);
  s.string("client_id", "nudge", "Client id the brokers see in their logs and quotas").with_check(non_empty);
  s.integer("linger_ms", 5,
            "How long the producer waits to fill a batch before sending it (senders wait for their ack meanwhile)")
      .range(0, 999);
  s.integer("batch_size", 1024 * 1024, "Largest producer batch, in bytes").range(1024, 100 * 1024 * 1024);
  s.string("compression", "none", "Compression of producer batches").one_of({"none", "lz4", "zstd", "snappy", "gzip"});
  s.integer("delivery_timeout_ms", 30000,
            "How long the producer keeps trying to store a message (retries included) before the sender "
            "gets a timeout error")
      .range(1000, 3600000);
  s.integer("batch_wait_ms", 10,
            "How long the consumer side waits for more messages before it hands a batch that is not "
            "full to the sink; 0 hands over whatever is there at once")
      .range(0, 1000);
  s.boolean("create_topic", true,
            "Create the topic at start when it is missing; false when the cluster's operators manage topics "
            "(no CreateTopics permission needed, and the consumer joins its group at once)");
  s.integer("session_timeout_ms", 10000,
            "How long the consumer group waits for a silent member before its partitions go to the others "
            "(heartbeats every third of it, at most every 3 s); brokers accept 6000 to 1800000 by default")
      .range(1000, 3600000);
  s.string("on_undecodable", "dead-letter",
           "What the consumer does with a record it cannot decode (written by a newer build or another "
           "producer): \"dead-letter\" writes it byte for byte to dead_letter_topic and commits past it only once "
           "Kafka confirmed it there; \"stop\" stops its partition right before it (not ready, nothing at or past "
           "it committed) until a build that reads it runs")
      .one_of({"dead-letter", "stop"});
  s.string("dead_letter_topic", "",
           "Topic undecodable records are written to with on_undecodable = \"dead-letter\"; empty: the topic's "
           "name followed by \".dead-letter\". With create_topic, made when missing (1 partition, "
           "replication_factor)")
      .with_check([](const ConfigValue& v) {
        const auto& name = std::get<std::string>(v);
        return name.empty() || is_topic_name(name)
                   ? std::string()
                   : std::string("must be empty or a Kafka topic name: 1 to 249 characters of [A-Za-z0-9._-]");
      });
  return s;
}

KafkaConfig KafkaConfig::from(const Config& c) {
  KafkaConfig k;
  k.brokers = c.get_string("brokers");
  k.topic = c.get_string("topic");
  k.partitions = c.get_int("partitions");
  k.replication_factor = c.get_int("replication_factor");
  k.min_insync_replicas = c.get_int("min_insync_replicas");
  // Such a topic would refuse every append (NOT_ENOUGH_REPLICAS) forever.
  if (k.min_insync_replicas > k.replication_factor)
    throw std::invalid_argument("min_insync_replicas: " + std::to_string(k.min_insync_replicas) +
                                " is more than replication_factor (" + std::to_string(k.replication_factor) +
                                "): every append would be refused");
  k.group_id = c.get_string("group_id");
  k.client_id = c.get_string("client_id");
  k.linger_ms = c.get_int("linger_ms");
  k.batch_size = c.get_int("batch_size");
  k.compression = c.get_string("compression");
  k.delivery_timeout_ms = c.get_int("delivery_timeout_ms");
  k.batch_wait_ms = c.get_int("batch_wait_ms");
  k.create_topic = c.get_bool("create_topic");
  k.session_timeout_ms = c.get_int("session_timeout_ms");
  k.on_undecodable = c.get_string("on_undecodable") == "stop" ? OnUndecodable::stop : OnUndecodable::dead_letter;
  k.dead_letter_topic = c.get_string("dead_letter_topic");
  if (k.dead_letter_topic.empty()) {
    k.dead_letter_topic = k.topic + ".dead-letter";
    if (!is_topic_name(k.dead_letter_topic))
      throw std::invalid_argument("dead_letter_topic: '" + k.dead_letter_topic +
                                  "' (the topic's name followed by '.dead-letter') is longer than Kafka allows; "
                                  "set dead_letter_topic");
  }
  // Dead-lettering into the topic being consumed would read each record back, forever.
  if (k.dead_letter_topic == k.topic)
    throw std::invalid_argument("dead_letter_topic: must differ from topic ('" + k.topic + "')");
  // librdkafka requires message.timeout.ms > linger.ms; the ranges
  // (linger_ms < 1000 <= delivery_timeout_ms) guarantee it.
  return k;
}

DurabilityAssessment assess_durability(const KafkaConfig& config, const std::string& topic,
                                       const TopicDurability& found) {
  const std::string rf = std::to_string(found.replication_factor);
  const std::string isr = std::to_string(found.min_insync_replicas);
  const std::string alter = "kafka-configs.sh --bootstrap-server " + config.brokers +
                            " --alter --entity-type topics --entity-name " + topic +
                            " --add-config min.insync.replicas=";
  std::vector<std::string> problems;
  if (found.min_insync_replicas > found.replication_factor)
    problems.push_back("min.insync.replicas " + isr + " is more than its replication factor " + rf +
                       ", so every append is refused (NOT_ENOUGH_REPLICAS): " + alter + rf);
  if (found.replication_factor < config.replication_factor)
    problems.push_back("it has replication factor " + rf +
                       " where replication_factor = " + std::to_string(config.replication_factor) +
                       " is configured (an existing topic is left as it is): add replicas with "
                       "kafka-reassign-partitions.sh, or recreate the topic");
  if (config.min_insync_replicas > 0 && found.min_insync_replicas < config.min_insync_replicas &&
      found.min_insync_replicas <= found.replication_factor)
    problems.push_back("min.insync.replicas is " + isr +
                       " where min_insync_replicas = " + std::to_string(config.min_insync_replicas) +
                       " is configured: " + alter + std::to_string(config.min_insync_replicas));
  else if (found.replication_factor >= 2 && found.min_insync_replicas < 2)
    problems.push_back("with replication factor " + rf + " and min.insync.replicas " + isr +
                       ", acks=all is met by the leader alone once its followers fall behind, and a leader lost "
                       "then loses acked messages: " +
                       alter + "2 (min_insync_replicas = 2)");
  DurabilityAssessment a;
  if (!problems.empty()) {
    a.verdict = DurabilityVerdict::broken;
    a.text = "topic '" + topic + "' cannot hold what an ack promises: ";
    for (std::size_t i = 0; i < problems.size(); ++i) a.text += (i ? "; " : "") + problems[i];
  } else if (found.replication_factor == 1) {
    a.verdict = DurabilityVerdict::single_copy;
    a.text = "topic '" + topic +
             "' keeps one copy of each message (replication factor 1): an ack means one broker "
             "has it, and losing that broker's disk loses acked messages; on a cluster use replication_factor = 3 "
             "and min_insync_replicas = 2";
  }
  return a;
}

}  // namespace nudge::plugins::kafka
