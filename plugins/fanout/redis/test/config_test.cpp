// Unit tests: the config schema, URL parsing, and that start() fails only
// for configuration problems (a Redis that is down is retried in the
// background). No Redis server is needed.

#include <array>
#include <chrono>
#include <string>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "config.hpp"
#include "nudge/sdk/testing.hpp"
#include "recent_window.hpp"
#include "redis_fanout.hpp"

namespace nudge::plugins::redis {
namespace {

using nudge::testing::make_config;
using nudge::testing::TestContext;

RedisUrl parse_ok(const std::string& text) {
  RedisUrl url;
  std::string error;
  EXPECT_TRUE(parse_redis_url(text, url, error)) << text << ": " << error;
  return url;
}

std::string parse_error(const std::string& text) {
  RedisUrl url;
  std::string error;
  EXPECT_FALSE(parse_redis_url(text, url, error)) << text << " parsed as host '" << url.host << "'";
  return error;
}

TEST(RedisUrlTest, ParsesHostPortPasswordAndDb) {
  const RedisUrl plain = parse_ok("redis://127.0.0.1:6379");
  EXPECT_EQ(plain.host, "127.0.0.1");
  EXPECT_EQ(plain.port, 6379);
  EXPECT_FALSE(plain.has_password);
  EXPECT_EQ(plain.db, 0);

  const RedisUrl name_only = parse_ok("redis://redis.internal");
  EXPECT_EQ(name_only.host, "redis.internal");
  EXPECT_EQ(name_only.port, 6379);

  const RedisUrl full = parse_ok("redis://:s3cret@cache-1:6380/7");
  EXPECT_EQ(full.host, "cache-1");
  EXPECT_EQ(full.port, 6380);
  EXPECT_TRUE(full.has_password);
  EXPECT_EQ(full.username, "");
  EXPECT_EQ(full.password, "s3cret");
  EXPECT_EQ(full.db, 7);

  const RedisUrl acl = parse_ok("redis://app:p%40ss%3Aw0rd@localhost/");
  EXPECT_EQ(acl.username, "app");
  EXPECT_EQ(acl.password, "p@ss:w0rd");
  EXPECT_EQ(acl.db, 0);

  const RedisUrl v6 = parse_ok("redis://[::1]:7000/2");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 7000);
  EXPECT_EQ(v6.db, 2);
  EXPECT_EQ(v6.endpoint(), "[::1]:7000");

  EXPECT_EQ(parse_ok("REDIS://Host:1").host, "Host");
}

TEST(RedisUrlTest, RejectsMalformedUrlsWithAReason) {
  EXPECT_NE(parse_error("").find("redis://"), std::string::npos);
  EXPECT_NE(parse_error("127.0.0.1:6379").find("does not start with redis://"), std::string::npos);
  EXPECT_NE(parse_error("http://localhost").find("does not start with redis://"), std::string::npos);
  EXPECT_NE(parse_error("rediss://localhost").find("TLS"), std::string::npos);
  EXPECT_NE(parse_error("redis://").find("host is empty"), std::string::npos);
  EXPECT_NE(parse_error("redis://:6379").find("host is empty"), std::string::npos);
  EXPECT_NE(parse_error("redis://ho st").find("host"), std::string::npos);
  EXPECT_NE(parse_error("redis://host:").find("port"), std::string::npos);
  EXPECT_NE(parse_error("redis://host:0").find("port"), std::string::npos);
  EXPECT_NE(parse_error("redis://host:65536").find("port"), std::string::npos);
  EXPECT_NE(parse_error("redis://host:12ab").find("port"), std::string::npos);
  EXPECT_NE(parse_error("redis://host:-1").find("port"), std::string::npos);
  EXPECT_NE(parse_error("redis://host/x").find("database"), std::string::npos);
  EXPECT_NE(parse_error("redis://host/-1").find("database"), std::string::npos);
  EXPECT_NE(parse_error("redis://host/99999999999").find("database"), std::string::npos);
  EXPECT_NE(parse_error("redis://host/1/2").find("database"), std::string::npos);
  EXPECT_NE(parse_error("redis://host?db=1").find("query"), std::string::npos);
  EXPECT_NE(parse_error("redis://secret@host").find("':password'"), std::string::npos);
  EXPECT_NE(parse_error("redis://:@host").find("password"), std::string::npos);
  EXPECT_NE(parse_error("redis://:bad%zzpw@host").find("percent"), std::string::npos);
  EXPECT_NE(parse_error("redis://:bad%4@host").find("percent"), std::string::npos);
  EXPECT_NE(parse_error("redis://[::1").find("IPv6"), std::string::npos);
  EXPECT_NE(parse_error("redis://[zz]:1").find("IPv6"), std::string::npos);
  EXPECT_NE(parse_error("redis://[::1]x").find("IPv6"), std::string::npos);
}

TEST(RedisConfigTest, APresencePrefixWithABraceIsRefusedInClusterModeAndTheTtlHasAFloor) {
  std::string error;
  RedisConfig c = RedisConfig::from(
      make_config(RedisConfig::schema(), {{"cluster", true}, {"presence_key_prefix", std::string("p{x}:")}}, &error));
  ASSERT_EQ(error, "");
  EXPECT_NE(c.check().find("presence_key_prefix"), std::string::npos) << c.check();
  c.cluster = false;
  EXPECT_EQ(c.check(), "") << "one server has no slots to keep together";
  make_config(RedisConfig::schema(), {{"presence_ttl_ms", std::int64_t{10}}}, &error);
  EXPECT_NE(error.find("presence_ttl_ms"), std::string::npos) << error;
}

TEST(RedisConfigTest, DefaultsAreValidAndDocumented) {
  const ConfigSchema schema = RedisConfig::schema();
  const std::map<std::string, ConfigValue> expected{
      {"url", std::string("redis://127.0.0.1:6379")},
      {"channel", std::string("nudge:messages")},
      {"channel_per_room", false},
      {"channel_prefix", std::string("nudge:room:")},
      {"reconnect_initial_ms", std::int64_t{100}},
      {"reconnect_max_ms", std::int64_t{5000}},
      {"max_pending_publishes", std::int64_t{10000}},
      {"max_pending_bytes", std::int64_t{64 * 1024 * 1024}},
      {"reply_timeout_ms", std::int64_t{10000}},
      {"connect_timeout_ms", std::int64_t{2000}},
      {"recent_messages", std::int64_t{1000}},
      {"recent_max_room_bytes", std::int64_t{1024 * 1024}},
      {"recent_max_bytes", std::int64_t{128 * 1024 * 1024}},
      {"recent_max_rooms", std::int64_t{10000}},
      {"recent_key_prefix", std::string("nudge:recent:")},
      {"recent_ttl_s", std::int64_t{86400}},
      {"cluster", false},
      {"cluster_seeds", std::vector<std::string>{}},
      {"presence_ttl_ms", std::int64_t{15000}},
      {"max_presence_per_room", std::int64_t{1000}},
      {"presence_key_prefix", std::string("nudge:presence:")},
  };
  EXPECT_EQ(schema.fields().size(), expected.size());
  for (const auto& [key, value] : expected) {
    const ConfigField* field = schema.find(key);
    ASSERT_NE(field, nullptr) << key;
    ASSERT_TRUE(field->default_value.has_value()) << key << " should not be required";
    EXPECT_EQ(*field->default_value, value) << key;
    EXPECT_EQ(field->validate(*field->default_value), "") << key;
    EXPECT_FALSE(field->description.empty()) << key;
  }
  // Unknown keys are rejected by the runtime against this schema.
  EXPECT_EQ(schema.find("chanel"), nullptr);

  std::string error;
  const RedisConfig c = RedisConfig::from(make_config(schema, {}, &error));
  ASSERT_EQ(error, "");
  EXPECT_EQ(c.url_error, "");
  EXPECT_EQ(c.url.host, "127.0.0.1");
  EXPECT_EQ(c.url.port, 6379);
  EXPECT_EQ(c.channel, "nudge:messages");
  EXPECT_FALSE(c.channel_per_room);
  EXPECT_EQ(c.channel_for("lobby"), "nudge:messages");
  EXPECT_EQ(c.reconnect_initial_ms, 100);
  EXPECT_EQ(c.reconnect_max_ms, 5000);
  EXPECT_EQ(c.max_pending_publishes, 10000);
  EXPECT_EQ(c.connect_timeout_ms, 2000);
}

TEST(RedisConfigTest, ReadsAValidConfig) {
  std::string error;
  const RedisConfig c = RedisConfig::from(make_config(RedisConfig::schema(),
                                                      {{"url", std::string("redis://:pw@10.0.0.5:6390/3")},
                                                       {"channel_per_room", true},
                                                       {"channel_prefix", std::string("chat:")},
                                                       {"reconnect_initial_ms", std::int64_t{50}},
                                                       {"reconnect_max_ms", std::int64_t{20}},
                                                       {"max_pending_publishes", std::int64_t{3}}},
                                                      &error));
  ASSERT_EQ(error, "");
  EXPECT_EQ(c.url.host, "10.0.0.5");
  EXPECT_EQ(c.url.port, 6390);
  EXPECT_EQ(c.url.password, "pw");
  EXPECT_EQ(c.url.db, 3);
  EXPECT_EQ(c.channel_for("lobby"), "chat:lobby");
  EXPECT_EQ(c.reconnect_initial_ms, 50);
  EXPECT_EQ(c.reconnect_max_ms, 50) << "a ceiling below the first delay is raised to it";
  EXPECT_EQ(c.max_pending_publishes, 3);
}

TEST(RedisConfigTest, ARoomMayNotHoldMoreThanTheWholeWindow) {
  std::string error;
  const RedisConfig c = RedisConfig::from(make_config(
      RedisConfig::schema(),
      {{"recent_max_bytes", std::int64_t{1 << 20}}, {"recent_max_room_bytes", std::int64_t{8 << 20}}}, &error));
  ASSERT_EQ(error, "");
  EXPECT_EQ(c.recent_max_room_bytes, 1 << 20);
}

TEST(RecentWindowTest, NoRoomsStreamIsEverTheIndexOrTheCounts) {
  const std::string p = "nudge:recent:";
  EXPECT_EQ(recent::stream_key(p, "lobby"), "nudge:recent:lobby");
  EXPECT_EQ(recent::stream_key(p, "~rooms"), "nudge:recent:~~rooms");
  EXPECT_EQ(recent::stream_key(p, "~meta"), "nudge:recent:~~meta");
  EXPECT_EQ(recent::stream_key(p, "~~x"), "nudge:recent:~~~x");
  EXPECT_EQ(recent::index_key(p), "nudge:recent:~rooms");
  EXPECT_EQ(recent::meta_key(p), "nudge:recent:~meta");
  for (const char* room : {"rooms", "meta", "~rooms", "~meta", "~", ""}) {
    EXPECT_NE(recent::stream_key(p, room), recent::index_key(p)) << room;
    EXPECT_NE(recent::stream_key(p, room), recent::meta_key(p)) << room;
  }
}

TEST(RecentWindowTest, AnXrevrangeReplyGivesItsMessagesOldestFirstAndSkipsWhatIsNotOne) {
  // Built by hand as hiredis would: [[stream id, ["m", envelope]], ...], newest first.
  Message older, newer;
  older.id = MessageId::generate();
  older.room = newer.room = "lobby";
  older.payload = "first";
  newer.id = MessageId::generate();
  newer.payload = std::string("second\0", 7);
  constexpr std::size_t kEntries = 3;
  std::string texts[kEntries][3];  // stream id, field name, envelope
  const std::string envelopes[kEntries] = {encode_envelope(newer), "not an envelope", encode_envelope(older)};
  redisReply strings[kEntries][3] = {}, fields[kEntries] = {}, entries[kEntries] = {};
  redisReply* field_elements[kEntries][2];
  redisReply* entry_elements[kEntries][2];
  redisReply* reply_elements[kEntries];
  for (std::size_t i = 0; i < kEntries; ++i) {
    texts[i][0] = "1-" + std::to_string(kEntries - i);
    texts[i][1] = "m";
    texts[i][2] = envelopes[i];
    for (std::size_t k = 0; k < 3; ++k) {
      strings[i][k].type = REDIS_REPLY_STRING;
      strings[i][k].str = texts[i][k].data();
      strings[i][k].len = texts[i][k].size();
    }
    field_elements[i][0] = &strings[i][1];
    field_elements[i][1] = &strings[i][2];
    fields[i] = {};
    fields[i].type = REDIS_REPLY_ARRAY;
    fields[i].elements = 2;
    fields[i].element = field_elements[i];
    entry_elements[i][0] = &strings[i][0];
    entry_elements[i][1] = &fields[i];
    entries[i].type = REDIS_REPLY_ARRAY;
    entries[i].elements = 2;
    entries[i].element = entry_elements[i];
    reply_elements[i] = &entries[i];
  }
  redisReply reply{};
  reply.type = REDIS_REPLY_ARRAY;
  reply.elements = kEntries;
  reply.element = reply_elements;
  const auto messages = recent::messages_of(reply);
  ASSERT_EQ(messages.size(), 2u) << "the entry that is not an envelope is skipped";
  EXPECT_EQ(messages[0]->id, older.id);
  EXPECT_EQ(messages[0]->payload, "first");
  EXPECT_EQ(messages[1]->id, newer.id);
  EXPECT_EQ(messages[1]->payload, newer.payload);

  redisReply error{};
  error.type = REDIS_REPLY_ERROR;
  EXPECT_TRUE(recent::messages_of(error).empty()) << "an error reply holds no messages";
}

TEST(RecentWindowTest, TheScriptCountsWhatTheHeaderSays) {
  const std::string_view script = recent::script();
  EXPECT_NE(script.find("local base = " + std::to_string(recent::kBaseCost) + "\n"), std::string_view::npos);
  EXPECT_NE(script.find("return 256 + 4 * #room"), std::string_view::npos);
  EXPECT_EQ(recent::meta_cost("lobby"), 256 + 4 * 5);
}

TEST(RecentWindowTest, IdsAreHexInTimeOrder) {
  std::array<std::uint8_t, 16> bytes{};
  bytes[0] = 0x01;
  bytes[15] = 0xaf;
  EXPECT_EQ(recent::hex(MessageId(bytes)), "010000000000000000000000000000af");
  const MessageId a = MessageId::generate(), b = MessageId::generate();
  EXPECT_LT(recent::hex(a), recent::hex(b));
}

/// A receiver that only counts.
struct CountingReceiver final : FanoutReceiver {
  int count = 0;
  void on_fanout_message(MessagePtr) override { ++count; }
};

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t closed_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

TEST(RedisFanoutStartTest, FailsOnlyForABadUrl) {
  boost::asio::io_context io;
  TestContext context(io, "fanout.redis@a", "a");
  // Bypasses the schema, as a caller that skipped validation would.
  std::map<std::string, ConfigValue, std::less<>> values;
  const ConfigSchema schema = RedisConfig::schema();
  for (const auto& f : schema.fields()) values[f.key] = *f.default_value;
  values["url"] = std::string("tcp://nowhere");
  RedisFanout fanout(Config(values, {"url"}), context);
  CountingReceiver receiver;
  const Status status = fanout.start(receiver);
  EXPECT_EQ(status.code(), StatusCode::invalid_argument);
  EXPECT_NE(status.message().find("url"), std::string::npos) << status.message();
  bool stopped = false;
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::milliseconds(100)));
}

TEST(RedisFanoutStartTest, StartsWhenRedisIsDownThenBuffersAndDropsOldest) {
  boost::asio::io_context io;
  TestContext context(io, "fanout.redis@a", "a");
  const std::string url = "redis://127.0.0.1:" + std::to_string(closed_port());
  RedisFanout fanout(make_config(RedisConfig::schema(), {{"url", url},
                                                         {"reconnect_initial_ms", std::int64_t{10}},
                                                         {"reconnect_max_ms", std::int64_t{40}},
                                                         {"max_pending_publishes", std::int64_t{5}}}),
                     context);
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok()) << "a Redis that is down must not fail start()";
  for (int i = 0; i < 8; ++i) {
    auto m = std::make_shared<Message>();
    m->id = MessageId::generate();
    m->room = "lobby";
    fanout.publish(m);
  }
  nudge::testing::run_for(io, std::chrono::milliseconds(400));
  EXPECT_FALSE(fanout.connected());
  EXPECT_EQ(context.metrics().gauge_value("connected"), 0);
  EXPECT_EQ(fanout.pending(), 5u);
  EXPECT_EQ(context.metrics().value("dropped_while_disconnected"), 3u);
  // One warning per connection, however many attempts failed (the backoff
  // of 10..40 ms allows several in 400 ms).
  EXPECT_EQ(context.logger().count(LogLevel::warn, "cannot connect the publishing connection"), 1u);
  EXPECT_EQ(context.logger().count(LogLevel::warn, "cannot connect the subscribing connection"), 1u);
  EXPECT_EQ(context.logger().count(LogLevel::warn, "dropping the oldest"), 1u);

  bool stopped = false;
  const auto t0 = std::chrono::steady_clock::now();
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(3)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(200)) << "stop must be prompt";
  EXPECT_EQ(context.metrics().value("dropped_while_disconnected"), 8u) << "the 5 still waiting are dropped at stop";
}

/// A TCP server on 127.0.0.1 that plays a broken Redis: it accepts and then
/// either never answers, or answers every request with an error.
class FakeServer {
 public:
  enum class Mode { silent, refuse };
  FakeServer(boost::asio::io_context& io, Mode mode)
      : acceptor_(io, {boost::asio::ip::make_address("127.0.0.1"), 0}), mode_(mode) {
    accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int accepted = 0;

 private:
  void accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket) {
      if (ec) return;
      ++accepted;
      auto s = std::make_shared<boost::asio::ip::tcp::socket>(std::move(socket));
      sockets_.push_back(s);
      if (mode_ == Mode::refuse) serve(s);
      accept();
    });
  }
  void serve(const std::shared_ptr<boost::asio::ip::tcp::socket>& s) {
    auto buffer = std::make_shared<std::array<char, 512>>();
    s->async_read_some(boost::asio::buffer(*buffer),
                       [this, s, buffer](const boost::system::error_code& ec, std::size_t) {
                         if (ec) return;
                         static const std::string reply = "-WRONGPASS invalid username-password pair\r\n";
                         boost::system::error_code wec;
                         boost::asio::write(*s, boost::asio::buffer(reply), wec);
                         serve(s);
                       });
  }

  boost::asio::ip::tcp::acceptor acceptor_;
  Mode mode_;
  std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> sockets_;
};

void stop_promptly(boost::asio::io_context& io, RedisFanout& fanout) {
  bool stopped = false;
  const auto t0 = std::chrono::steady_clock::now();
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(3)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500)) << "stop must be prompt";
}

TEST(RedisFanoutStartTest, NotReadyWhileRedisIsDown) {
  boost::asio::io_context io;
  TestContext context(io, "fanout.redis@a", "a");
  const std::string url = "redis://127.0.0.1:" + std::to_string(closed_port());
  RedisFanout fanout(
      make_config(RedisConfig::schema(),
                  {{"url", url}, {"reconnect_initial_ms", std::int64_t{10}}, {"reconnect_max_ms", std::int64_t{40}}}),
      context);
  EXPECT_FALSE(fanout.readiness().ready) << "not ready before start()";
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok());
  nudge::testing::run_for(io, std::chrono::milliseconds(200));
  const auto readiness = fanout.readiness();
  EXPECT_FALSE(readiness.ready);
  EXPECT_EQ(readiness.reason.rfind("no connection to Redis at '127.0.0.1:", 0), 0u) << readiness.reason;
  EXPECT_NE(readiness.reason.find("refused"), std::string::npos) << readiness.reason;
  bool stopped = false;
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(3)));
}

TEST(RedisFanoutStartTest, GivesUpOnAServerThatDoesNotAnswerAndRetries) {
  boost::asio::io_context io;
  FakeServer server(io, FakeServer::Mode::silent);
  TestContext context(io, "fanout.redis@a", "a");
  // A name, so the connection goes through the asynchronous resolver; a
  // password, so the connection waits for AUTH's answer that never comes.
  RedisFanout fanout(
      make_config(RedisConfig::schema(), {{"url", "redis://:pw@localhost:" + std::to_string(server.port())},
                                          {"connect_timeout_ms", std::int64_t{100}},
                                          {"reconnect_initial_ms", std::int64_t{10}},
                                          {"reconnect_max_ms", std::int64_t{20}}}),
      context);
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok());
  nudge::testing::run_for(io, std::chrono::milliseconds(600));
  EXPECT_FALSE(fanout.connected());
  EXPECT_GE(server.accepted, 6) << "each connection tries again after each timeout";
  EXPECT_EQ(context.logger().count(LogLevel::warn, "no answer within 100 ms"), 2u) << "once per connection";
  stop_promptly(io, fanout);
}

TEST(RedisFanoutStartTest, RetriesWhenTheLoginIsRefused) {
  boost::asio::io_context io;
  FakeServer server(io, FakeServer::Mode::refuse);
  TestContext context(io, "fanout.redis@a", "a");
  RedisFanout fanout(
      make_config(RedisConfig::schema(), {{"url", "redis://:wrong@127.0.0.1:" + std::to_string(server.port())},
                                          {"reconnect_initial_ms", std::int64_t{10}},
                                          {"reconnect_max_ms", std::int64_t{20}}}),
      context);
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok());
  nudge::testing::run_for(io, std::chrono::milliseconds(300));
  EXPECT_FALSE(fanout.connected());
  EXPECT_GE(server.accepted, 6);
  EXPECT_EQ(context.logger().count(LogLevel::warn, "AUTH was refused: WRONGPASS"), 2u) << "once per connection";
  stop_promptly(io, fanout);
}

}  // namespace
}  // namespace nudge::plugins::redis
