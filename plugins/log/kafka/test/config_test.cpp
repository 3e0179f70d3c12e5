#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <toml++/toml.h>

#include "scenarios.hpp"

namespace nudge::plugins::kafka::test {
namespace {

std::string problem(const std::string& key, const ConfigValue& value) {
  const ConfigSchema schema = KafkaConfig::schema();
  const ConfigField* field = schema.find(key);
  if (!field) return "no such key";
  return field->validate(value);
}

TEST(KafkaConfigTest, DefaultsAreTheDocumentedOnes) {
  const KafkaConfig c = KafkaConfig::from(make_config());
  EXPECT_EQ(c.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.topic, "nudge.messages");
  EXPECT_EQ(c.partitions, 6);
  EXPECT_EQ(c.replication_factor, 1);
  EXPECT_EQ(c.group_id, "nudge-persist");
  EXPECT_EQ(c.client_id, "nudge");
  EXPECT_EQ(c.linger_ms, 5);
  EXPECT_EQ(c.batch_size, 1024 * 1024);
  EXPECT_EQ(c.compression, "none");
  EXPECT_EQ(c.delivery_timeout_ms, 30000);
  EXPECT_EQ(c.batch_wait_ms, 10);
  EXPECT_TRUE(c.create_topic);
  EXPECT_EQ(c.session_timeout_ms, 10000);
  EXPECT_EQ(c.on_undecodable, OnUndecodable::dead_letter);
  EXPECT_EQ(c.dead_letter_topic, "nudge.messages.dead-letter");
}

TEST(KafkaConfigTest, TheDeadLetterTopicFollowsTheTopicUnlessNamed) {
  EXPECT_EQ(KafkaConfig::from(make_config({{"topic", std::string("chat")}})).dead_letter_topic, "chat.dead-letter");
  const auto named =
      KafkaConfig::from(make_config({{"topic", std::string("chat")}, {"dead_letter_topic", std::string("chat-dlq")}}));
  EXPECT_EQ(named.dead_letter_topic, "chat-dlq");
  EXPECT_EQ(KafkaConfig::from(make_config({{"on_undecodable", std::string("stop")}})).on_undecodable,
            OnUndecodable::stop);
}

TEST(KafkaConfigTest, RefusesADeadLetterTopicThatIsTheTopicOrTooLong) {
  // Dead-lettering into the consumed topic would read every such record back, forever.
  try {
    KafkaConfig::from(make_config({{"topic", std::string("chat")}, {"dead_letter_topic", std::string("chat")}}));
    FAIL() << "accepted the topic itself as its dead-letter topic";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dead_letter_topic: must differ from topic"), std::string::npos) << e.what();
  }
  // 240 characters are a topic name; with ".dead-letter" they are not.
  try {
    KafkaConfig::from(make_config({{"topic", std::string(240, 't')}}));
    FAIL() << "derived a dead-letter topic name longer than Kafka allows";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("set dead_letter_topic"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(KafkaConfig::from(
      make_config({{"topic", std::string(240, 't')}, {"dead_letter_topic", std::string("short.dead-letter")}})));
}

TEST(KafkaConfigTest, EveryKeyHasADefaultAndADescription) {
  const ConfigSchema schema = KafkaConfig::schema();
  std::set<std::string> keys;
  for (const auto& field : schema.fields()) {
    keys.insert(field.key);
    EXPECT_FALSE(field.required()) << field.key;
    EXPECT_FALSE(field.description.empty()) << field.key;
  }
  EXPECT_EQ(keys, (std::set<std::string>{"brokers", "topic", "partitions", "replication_factor", "min_insync_replicas",
                                         "group_id", "client_id", "linger_ms", "batch_size", "compression",
                                         "delivery_timeout_ms", "batch_wait_ms", "create_topic", "session_timeout_ms",
                                         "on_undecodable", "dead_letter_topic"}));
}

TEST(KafkaConfigTest, AcceptsValidValues) {
  EXPECT_EQ(problem("brokers", std::string("kafka-1:9092,kafka-2:9093")), "");
  EXPECT_EQ(problem("brokers", std::string("[::1]:9092")), "");
  EXPECT_EQ(problem("topic", std::string("chat.messages-v2_x")), "");
  for (const char* codec : {"none", "lz4", "zstd", "snappy", "gzip"})
    EXPECT_EQ(problem("compression", std::string(codec)), "");
  EXPECT_EQ(problem("batch_wait_ms", std::int64_t{0}), "");
  EXPECT_EQ(problem("linger_ms", std::int64_t{0}), "");
  EXPECT_EQ(problem("create_topic", false), "");
  EXPECT_EQ(problem("session_timeout_ms", std::int64_t{6000}), "");
  EXPECT_EQ(problem("on_undecodable", std::string("dead-letter")), "");
  EXPECT_EQ(problem("on_undecodable", std::string("stop")), "");
  EXPECT_EQ(problem("dead_letter_topic", std::string("")), "");
  EXPECT_EQ(problem("dead_letter_topic", std::string("chat.dlq")), "");
}

TEST(KafkaConfigTest, RejectsInvalidValues) {
  EXPECT_NE(problem("brokers", std::string("")), "");
  EXPECT_NE(problem("brokers", std::string("localhost")), "");
  EXPECT_NE(problem("brokers", std::string("a:9092,,b:9092")), "");
  EXPECT_NE(problem("brokers", std::string("a:99999")), "");
  EXPECT_NE(problem("brokers", std::string("a:0")), "");
  EXPECT_NE(problem("topic", std::string("")), "");
  EXPECT_NE(problem("topic", std::string("has space")), "");
  EXPECT_NE(problem("topic", std::string("..")), "");
  EXPECT_NE(problem("topic", std::string(250, 'a')), "");
  EXPECT_NE(problem("partitions", std::int64_t{0}), "");
  EXPECT_NE(problem("replication_factor", std::int64_t{0}), "");
  EXPECT_NE(problem("group_id", std::string("")), "");
  EXPECT_NE(problem("client_id", std::string("")), "");
  EXPECT_NE(problem("linger_ms", std::int64_t{-1}), "");
  EXPECT_NE(problem("batch_size", std::int64_t{10}), "");
  EXPECT_NE(problem("compression", std::string("brotli")), "");
  EXPECT_NE(problem("delivery_timeout_ms", std::int64_t{10}), "");
  EXPECT_NE(problem("batch_wait_ms", std::int64_t{5000}), "");
  EXPECT_NE(problem("session_timeout_ms", std::int64_t{999}), "");
  // Skipping is not offered: an acknowledged message must never vanish quietly.
  EXPECT_NE(problem("on_undecodable", std::string("skip")), "");
  EXPECT_NE(problem("dead_letter_topic", std::string("has space")), "");
  EXPECT_NE(problem("dead_letter_topic", std::string(250, 'a')), "");
}

TEST(KafkaConfigTest, LingerIsAlwaysShorterThanTheDeliveryTimeout) {
  // librdkafka refuses linger.ms >= message.timeout.ms; the ranges rule it out
  // without a check across keys, so `nudge validate` reports it.
  const ConfigSchema schema = KafkaConfig::schema();
  EXPECT_LT(*schema.find("linger_ms")->max, *schema.find("delivery_timeout_ms")->min);
  EXPECT_NE(problem("linger_ms", std::int64_t{1000}), "");
}

TEST(KafkaConfigTest, LibrdkafkaAcceptsEveryAllowedValue) {
  const ConfigSchema schema = KafkaConfig::schema();
  for (const auto& codec : schema.find("compression")->allowed) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char errstr[256];
    EXPECT_EQ(rd_kafka_conf_set(conf, "compression.codec", codec.c_str(), errstr, sizeof errstr), RD_KAFKA_CONF_OK)
        << codec << ": " << errstr;
    rd_kafka_conf_destroy(conf);
  }
  for (const char* key : {"linger_ms", "batch_size", "delivery_timeout_ms", "session_timeout_ms"}) {
    const ConfigField* field = schema.find(key);
    const char* property = std::string_view(key) == "linger_ms"            ? "linger.ms"
                           : std::string_view(key) == "batch_size"         ? "batch.size"
                           : std::string_view(key) == "session_timeout_ms" ? "session.timeout.ms"
                                                                           : "message.timeout.ms";
    for (std::int64_t value : {*field->min, *field->max}) {
      rd_kafka_conf_t* conf = rd_kafka_conf_new();
      char errstr[256];
      EXPECT_EQ(rd_kafka_conf_set(conf, property, std::to_string(value).c_str(), errstr, sizeof errstr),
                RD_KAFKA_CONF_OK)
          << key << " = " << value << ": " << errstr;
      rd_kafka_conf_destroy(conf);
    }
  }
}

TEST(KafkaConfigTest, ConstructingDoesNoIo) {
  // No broker listens on port 1; a constructor that connected would fail or hang.
  boost::asio::io_context io;
  TestContext context(io, "log.kafka");
  KafkaLog log(make_config({{"brokers", std::string("127.0.0.1:1")}}), context);
  EXPECT_EQ(io.poll(), 0u);
}

TEST(KafkaConfigTest, TheReadmeExampleIsValid) {
  std::ifstream file(NUDGE_KAFKA_README);
  ASSERT_TRUE(file) << NUDGE_KAFKA_README;
  std::stringstream text;
  text << file.rdbuf();
  const std::string readme = text.str();
  const auto open = readme.find("```toml\n");
  ASSERT_NE(open, std::string::npos);
  const auto close = readme.find("```", open + 8);
  const std::string example = readme.substr(open + 8, close - open - 8);
  toml::table table;
  try {
    table = toml::parse(example);
  } catch (const toml::parse_error& e) {
    FAIL() << "the README's example does not parse: " << e.what();
  }
  const toml::table* kafka = table["log"]["kafka"].as_table();
  ASSERT_NE(kafka, nullptr) << "the example has no [log.kafka] table";
  const ConfigSchema schema = KafkaConfig::schema();
  std::map<std::string, ConfigValue> values;
  for (auto&& [key, node] : *kafka) {
    const std::string name(key.str());
    const ConfigField* field = schema.find(name);
    ASSERT_NE(field, nullptr) << "unknown key in the example: " << name;
    if (auto s = node.value<std::string>()) {
      // The runtime expands ${NAME:-default}; take the default here.
      static const std::regex variable(R"(\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\})");
      values[name] = std::regex_replace(*s, variable, "$1");
    } else if (node.is_boolean()) values[name] = *node.value<bool>();
    else if (auto i = node.value<std::int64_t>()) values[name] = *i;
  }
  EXPECT_EQ(values.size(), schema.fields().size()) << "the example should show every key";
  EXPECT_NO_THROW(KafkaConfig::from(make_config(values)));
}

TEST(KafkaConfigTest, MinInsyncReplicasIsTheBrokersDefaultUnlessSetAndAtMostTheReplicas) {
  EXPECT_EQ(KafkaConfig::from(make_config()).min_insync_replicas, 0);
  const auto ha = KafkaConfig::from(
      make_config({{"replication_factor", std::int64_t{3}}, {"min_insync_replicas", std::int64_t{2}}}));
  EXPECT_EQ(ha.replication_factor, 3);
  EXPECT_EQ(ha.min_insync_replicas, 2);
  // A topic whose every append is refused is a configuration error, not a runtime one.
  try {
    KafkaConfig::from(make_config({{"min_insync_replicas", std::int64_t{2}}}));
    FAIL() << "accepted min_insync_replicas 2 with replication_factor 1";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("more than replication_factor (1)"), std::string::npos) << e.what();
  }
  EXPECT_NE(problem("min_insync_replicas", std::int64_t{-1}), "");
}

KafkaConfig durability_config(std::int64_t rf, std::int64_t isr) {
  return KafkaConfig::from(make_config(
      {{"brokers", std::string("b1:9092,b2:9092")}, {"replication_factor", rf}, {"min_insync_replicas", isr}}));
}

TEST(KafkaDurabilityTest, ThreeReplicasTwoInSyncHold) {
  const auto a = assess_durability(durability_config(3, 2), "chat", {3, 2});
  EXPECT_EQ(a.verdict, DurabilityVerdict::holds);
  EXPECT_EQ(a.text, "");
}

TEST(KafkaDurabilityTest, OneReplicaAsConfiguredIsASingleCopyNotAWarning) {
  // Today's single-broker default: said once at info, with what a cluster wants.
  const auto a = assess_durability(KafkaConfig::from(make_config()), "chat", {1, 1});
  EXPECT_EQ(a.verdict, DurabilityVerdict::single_copy);
  EXPECT_NE(a.text.find("topic 'chat' keeps one copy"), std::string::npos) << a.text;
  EXPECT_NE(a.text.find("replication_factor = 3 and min_insync_replicas = 2"), std::string::npos) << a.text;
}

TEST(KafkaDurabilityTest, FewerReplicasThanConfiguredIsBroken) {
  // An existing topic made by hand (or by an older config) is left as it is.
  const auto a = assess_durability(durability_config(3, 2), "chat", {1, 1});
  EXPECT_EQ(a.verdict, DurabilityVerdict::broken);
  EXPECT_NE(a.text.find("topic 'chat' cannot hold what an ack promises"), std::string::npos) << a.text;
  EXPECT_NE(a.text.find("replication factor 1 where replication_factor = 3 is configured"), std::string::npos)
      << a.text;
  EXPECT_NE(a.text.find("kafka-reassign-partitions"), std::string::npos) << a.text;
}

TEST(KafkaDurabilityTest, ReplicasWithOneInSyncLetTheLeaderAckAlone) {
  // The brief's example: replication factor 3, min.insync.replicas 1 (the brokers' default).
  const auto a =
      assess_durability(KafkaConfig::from(make_config({{"replication_factor", std::int64_t{3}}})), "chat", {3, 1});
  EXPECT_EQ(a.verdict, DurabilityVerdict::broken);
  EXPECT_NE(a.text.find("replication factor 3 and min.insync.replicas 1"), std::string::npos) << a.text;
  EXPECT_NE(a.text.find("--entity-name chat --add-config min.insync.replicas=2"), std::string::npos) << a.text;
  // Configured 2, found 1: named as the configured figure it misses.
  const auto b = assess_durability(durability_config(3, 2), "chat", {3, 1});
  EXPECT_EQ(b.verdict, DurabilityVerdict::broken);
  EXPECT_NE(b.text.find("min.insync.replicas is 1 where min_insync_replicas = 2 is configured"), std::string::npos)
      << b.text;
}

TEST(KafkaDurabilityTest, MoreInSyncThanReplicasRefusesEveryAppend) {
  const auto a = assess_durability(durability_config(2, 2), "chat", {2, 3});
  EXPECT_EQ(a.verdict, DurabilityVerdict::broken);
  EXPECT_NE(a.text.find("min.insync.replicas 3 is more than its replication factor 2"), std::string::npos) << a.text;
  EXPECT_NE(a.text.find("NOT_ENOUGH_REPLICAS"), std::string::npos) << a.text;
}

}  // namespace
}  // namespace nudge::plugins::kafka::test
