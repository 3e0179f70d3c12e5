// Slot math and topology parsing of the cluster mode, against the vectors of
// the Redis Cluster specification (https://redis.io/docs/reference/cluster-spec/).
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include <hiredis/hiredis.h>

#include "cluster_slots.hpp"
#include "config.hpp"
#include "nudge/sdk/testing.hpp"

namespace {

using namespace nudge::plugins::redis;
using nudge::testing::make_config;

/// A reply parsed by hiredis's own reader from RESP text, as it arrives.
std::unique_ptr<redisReply, void (*)(void*)> parse(const std::string& resp) {
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(), &redisReaderFree);
  redisReaderFeed(reader.get(), resp.data(), resp.size());
  void* reply = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader.get(), &reply), REDIS_OK);
  return {static_cast<redisReply*>(reply), &freeReplyObject};
}

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

TEST(ClusterSlotsTest, Crc16MatchesTheSpecVector) {
  EXPECT_EQ(cluster::crc16("123456789"), 0x31C3);
  EXPECT_EQ(cluster::crc16(""), 0);
}

TEST(ClusterSlotsTest, KeySlotsMatchRedis) {
  // Values from CLUSTER KEYSLOT on Redis 7.0.
  EXPECT_EQ(cluster::key_slot("123456789"), 0x31C3 % 16384);
  EXPECT_EQ(cluster::key_slot("foo"), 12182);
  EXPECT_EQ(cluster::key_slot("bar"), 5061);
  EXPECT_EQ(cluster::key_slot("hello"), 866);
}

TEST(ClusterSlotsTest, HashTagsFollowTheSpec) {
  // The spec's examples: the tag is between the first '{' and the first '}' after it.
  EXPECT_EQ(cluster::key_slot("{user1000}.following"), cluster::key_slot("user1000"));
  EXPECT_EQ(cluster::key_slot("{user1000}.followers"), cluster::key_slot("user1000"));
  EXPECT_EQ(cluster::key_slot("foo{}{bar}"), cluster::key_slot("foo{}{bar}"));  // empty tag: the whole key
  EXPECT_NE(cluster::key_slot("foo{}{bar}"), cluster::key_slot("bar"));
  EXPECT_EQ(cluster::key_slot("foo{{bar}}zap"), cluster::key_slot("{bar"));
  EXPECT_EQ(cluster::key_slot("foo{bar}{zap}"), cluster::key_slot("bar"));
  EXPECT_EQ(cluster::key_slot("{"), cluster::crc16("{") % 16384);
}

TEST(ClusterSlotsTest, ARoomsChannelAndWindowKeysShareItsSlot) {
  RedisConfig config =
      RedisConfig::from(make_config(RedisConfig::schema(), {{"cluster", true}, {"channel_per_room", true}}));
  for (const std::string room : {"lobby", "a}b", "x{y", "~tilde", "room-42"}) {
    const auto slot = cluster::key_slot(config.channel_for(room));
    EXPECT_EQ(cluster::key_slot(cluster::tagged(config.recent_key_prefix, room)), slot) << room;
    EXPECT_EQ(cluster::key_slot(cluster::tagged(config.recent_key_prefix, room, "~rooms")), slot) << room;
    EXPECT_EQ(cluster::key_slot(cluster::tagged(config.recent_key_prefix, room, "~meta")), slot) << room;
  }
  EXPECT_EQ(config.channel_for("lobby"), "nudge:room:{lobby}");
}

TEST(ClusterSlotsTest, PrefixesWithABraceAreRefusedInClusterMode) {
  RedisConfig config = RedisConfig::from(
      make_config(RedisConfig::schema(),
                  {{"cluster", true}, {"channel_per_room", true}, {"channel_prefix", std::string("a{b}:")}}));
  EXPECT_NE(config.check().find("channel_prefix"), std::string::npos);
  config.cluster = false;
  EXPECT_EQ(config.check(), "");
}

TEST(ClusterSlotsTest, ParsesClusterShardsTakingTheLiveMaster) {
  auto node = [](const std::string& ip, int port, const std::string& role, const std::string& health) {
    return "*12\r\n" + bulk("id") + bulk("abc") + bulk("port") + ":" + std::to_string(port) + "\r\n" + bulk("ip") +
           bulk(ip) + bulk("endpoint") + bulk(ip) + bulk("role") + bulk(role) + bulk("health") + bulk(health);
  };
  const std::string resp =
      "*3\r\n"
      // a shard with two ranges, its old master failed and its replica promoted
      "*4\r\n" +
      bulk("slots") + "*4\r\n:0\r\n:100\r\n:200\r\n:5460\r\n" + bulk("nodes") + "*2\r\n" +
      node("127.0.0.1", 7001, "master", "failed") + node("127.0.0.1", 7004, "master", "online") +
      // a plain shard
      "*4\r\n" + bulk("slots") + "*2\r\n:5461\r\n:16383\r\n" + bulk("nodes") + "*1\r\n" +
      node("127.0.0.1", 7002, "master", "online") +
      // a shard without slots (a new node) is left out
      "*4\r\n" + bulk("slots") + "*0\r\n" + bulk("nodes") + "*1\r\n" + node("127.0.0.1", 7003, "master", "online");
  auto reply = parse(resp);
  ASSERT_TRUE(reply);
  std::vector<cluster::Shard> shards;
  std::string error;
  ASSERT_TRUE(cluster::parse_shards(reply.get(), shards, error)) << error;
  ASSERT_EQ(shards.size(), 2u);
  EXPECT_EQ(shards[0].address, "127.0.0.1:7004");
  ASSERT_EQ(shards[0].ranges.size(), 2u);
  EXPECT_EQ(shards[0].ranges[1], std::make_pair(std::uint16_t{200}, std::uint16_t{5460}));
  EXPECT_EQ(shards[1].address, "127.0.0.1:7002");

  auto junk = parse("*1\r\n:5\r\n");
  EXPECT_FALSE(cluster::parse_shards(junk.get(), shards, error));
}

TEST(ClusterSlotsTest, ParsesMovedAndAsk) {
  cluster::Redirect r;
  ASSERT_TRUE(cluster::parse_redirect("MOVED 3999 127.0.0.1:6381", r));
  EXPECT_FALSE(r.ask);
  EXPECT_EQ(r.slot, 3999);
  EXPECT_EQ(r.address, "127.0.0.1:6381");
  ASSERT_TRUE(cluster::parse_redirect("ASK 12 10.0.0.1:7000", r));
  EXPECT_TRUE(r.ask);
  EXPECT_FALSE(cluster::parse_redirect("ERR unknown command", r));
  EXPECT_FALSE(cluster::parse_redirect("MOVED 99999 h:1", r));
}

}  // namespace

namespace {
TEST(ClusterSlotsTest, SeedsMustBeHostPort) {
  const auto schema = nudge::plugins::redis::RedisConfig::schema();
  const auto* field = schema.find("cluster_seeds");
  ASSERT_NE(field, nullptr);
  EXPECT_EQ(field->validate(std::vector<std::string>{"127.0.0.1:7002", "redis.internal:6379"}), "");
  EXPECT_NE(field->validate(std::vector<std::string>{"127.0.0.1"}), "");
  EXPECT_NE(field->validate(std::vector<std::string>{"h:0"}), "");
}
}  // namespace
