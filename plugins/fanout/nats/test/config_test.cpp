// Unit tests: the config schema, URL parsing, the room-to-subject mapping,
// and that start() fails only for configuration problems (a NATS server that
// is down is retried in the background). No NATS server is needed.

#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config.hpp"
#include "nats_fanout.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::nats {
namespace {

using nudge::testing::make_config;
using nudge::testing::TestContext;

std::vector<NatsServer> parse_ok(const std::string& text) {
  std::vector<NatsServer> servers;
  std::string error;
  EXPECT_TRUE(parse_nats_urls(text, servers, error)) << text << ": " << error;
  return servers;
}

std::string parse_error(const std::string& text) {
  std::vector<NatsServer> servers;
  std::string error;
  EXPECT_FALSE(parse_nats_urls(text, servers, error)) << text << " parsed";
  return error;
}

TEST(NatsUrlTest, ParsesHostPortCredentialsAndLists) {
  const auto plain = parse_ok("nats://127.0.0.1:4222");
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].host, "127.0.0.1");
  EXPECT_EQ(plain[0].port, 4222);
  EXPECT_FALSE(plain[0].has_credentials);
  EXPECT_EQ(plain[0].url, "nats://127.0.0.1:4222");

  const auto name_only = parse_ok("nats://nats.internal");
  EXPECT_EQ(name_only[0].host, "nats.internal");
  EXPECT_EQ(name_only[0].port, 4222) << "the port defaults to 4222";

  const auto auth = parse_ok("nats://app:s3cret@nats-1:4223");
  EXPECT_EQ(auth[0].host, "nats-1");
  EXPECT_EQ(auth[0].port, 4223);
  EXPECT_TRUE(auth[0].has_credentials);
  EXPECT_EQ(auth[0].endpoint(), "nats-1:4223") << "no credentials in log lines";
  EXPECT_TRUE(parse_ok("nats://t0ken@nats-1")[0].has_credentials);

  const auto v6 = parse_ok("nats://[::1]:7422");
  EXPECT_EQ(v6[0].host, "::1");
  EXPECT_EQ(v6[0].endpoint(), "[::1]:7422");

  const auto cluster = parse_ok("nats://a:4222, nats://b:4223 ,nats://[::1]");
  ASSERT_EQ(cluster.size(), 3u);
  EXPECT_EQ(cluster[0].url, "nats://a:4222");
  EXPECT_EQ(cluster[1].url, "nats://b:4223") << "entries are trimmed";
  EXPECT_EQ(cluster[2].port, 4222);

  EXPECT_EQ(parse_ok("NATS://Host:1")[0].host, "Host");
}

TEST(NatsUrlTest, RejectsMalformedUrlsWithAReason) {
  EXPECT_NE(parse_error("").find("empty"), std::string::npos);
  EXPECT_NE(parse_error("127.0.0.1:4222").find("does not start with nats://"), std::string::npos);
  EXPECT_NE(parse_error("redis://localhost").find("does not start with nats://"), std::string::npos);
  EXPECT_NE(parse_error("tls://localhost").find("TLS"), std::string::npos);
  EXPECT_NE(parse_error("nats://").find("host is empty"), std::string::npos);
  EXPECT_NE(parse_error("nats://:4222").find("host is empty"), std::string::npos);
  EXPECT_NE(parse_error("nats://ho st").find("spaces"), std::string::npos);
  EXPECT_NE(parse_error("nats://h*st").find("host"), std::string::npos);
  EXPECT_NE(parse_error("nats://host:").find("port"), std::string::npos);
  EXPECT_NE(parse_error("nats://host:0").find("port"), std::string::npos);
  EXPECT_NE(parse_error("nats://host:65536").find("port"), std::string::npos);
  EXPECT_NE(parse_error("nats://host:42x").find("port"), std::string::npos);
  EXPECT_NE(parse_error("nats://host:4222/x").find("paths"), std::string::npos);
  EXPECT_NE(parse_error("nats://host?x=1").find("query"), std::string::npos);
  EXPECT_NE(parse_error("nats://@host").find("before '@'"), std::string::npos);
  EXPECT_NE(parse_error("nats://[::1").find("IPv6"), std::string::npos);
  EXPECT_NE(parse_error("nats://[zz]:1").find("IPv6"), std::string::npos);
  EXPECT_NE(parse_error("nats://a:4222,").find("entry of the list is empty"), std::string::npos);
  EXPECT_NE(parse_error("nats://a:4222,,nats://b").find("entry of the list is empty"), std::string::npos);
  const std::string second = parse_error("nats://a:4222,http://b");
  EXPECT_NE(second.find("in \"http://b\""), std::string::npos) << second;
}

TEST(NatsUrlTest, RedactsCredentials) {
  EXPECT_EQ(redact_url("nats://app:s3cret@nats-1:4222"), "nats://nats-1:4222");
  EXPECT_EQ(redact_url("nats://token@10.0.0.1:4222"), "nats://10.0.0.1:4222");
  EXPECT_EQ(redact_url("nats://10.0.0.1:4222"), "nats://10.0.0.1:4222");
}

TEST(NatsSubjectTest, ChecksLiteralSubjectsAndPrefixes) {
  EXPECT_EQ(check_subject("nudge.messages", false), "");
  EXPECT_EQ(check_subject("a", false), "");
  EXPECT_EQ(check_subject("a-b_c:d$e", false), "");
  EXPECT_NE(check_subject("", false), "");
  EXPECT_NE(check_subject(".a", false), "");
  EXPECT_NE(check_subject("a..b", false), "");
  EXPECT_NE(check_subject("a.", false), "");
  EXPECT_NE(check_subject("a.*", false).find("wildcards"), std::string::npos);
  EXPECT_NE(check_subject("a.>", false).find("wildcards"), std::string::npos);
  EXPECT_NE(check_subject("a*b", false), "");
  EXPECT_NE(check_subject("a b", false).find("spaces"), std::string::npos);
  EXPECT_NE(check_subject("a\tb", false), "");
  EXPECT_NE(check_subject("caf\xc3\xa9", false), "");

  EXPECT_EQ(check_subject("", true), "") << "an empty prefix is allowed";
  EXPECT_EQ(check_subject("nudge.room.", true), "");
  EXPECT_EQ(check_subject("chat-", true), "");
  EXPECT_NE(check_subject(".", true), "");
  EXPECT_NE(check_subject("a..", true), "");
  EXPECT_NE(check_subject("a.*.", true), "");
  EXPECT_NE(check_subject("a.>.", true), "");
}

/// A subject token NATS reads as one literal token.
void expect_single_literal_token(const std::string& token, const std::string& room) {
  EXPECT_FALSE(token.empty()) << "room '" << room << "'";
  for (char c : token) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u > ' ' && u < 0x7f && c != '.' && c != '*' && c != '>')
        << "room '" << room << "' maps to '" << token << "', which has '" << c << "'";
  }
}

TEST(NatsSubjectTest, MapsRoomsToSingleTokens) {
  EXPECT_EQ(room_token("lobby"), "lobby");
  EXPECT_EQ(room_token("Room_42-b"), "Room_42-b");
  EXPECT_EQ(room_token("a.b"), "a%2Eb");
  EXPECT_EQ(room_token("a:b"), "a%3Ab");
  EXPECT_EQ(room_token("team.eng:ops"), "team%2Eeng%3Aops");
  EXPECT_EQ(room_token("*"), "%2A");
  EXPECT_EQ(room_token(">"), "%3E");
  EXPECT_EQ(room_token("a b"), "a%20b");
  EXPECT_EQ(room_token("100%"), "100%25");
  EXPECT_EQ(room_token("caf\xc3\xa9"), "caf%C3%A9");
  EXPECT_EQ(room_token(std::string("a\0b", 3)), "a%00b");
  EXPECT_EQ(room_token(""), "%");

  // Rooms that differ only in '.', ':' and the escape itself stay apart.
  const std::vector<std::string> rooms{"a.b", "a:b", "a_b", "a-b", "ab", "a%2Eb", "a%3Ab", "a.b.c",
                                       "a",   "a.",  ".a",  ":",   ".",  "",      "%",     "%25"};
  std::set<std::string> tokens;
  for (const auto& room : rooms) {
    const std::string token = room_token(room);
    expect_single_literal_token(token, room);
    EXPECT_TRUE(tokens.insert(token).second) << "room '" << room << "' collides on '" << token << "'";
  }
}

TEST(NatsSubjectTest, MappingIsOneToOneOverEveryShortRoom) {
  // Every string of up to 3 characters over the room alphabet's special
  // characters, the escape, the wildcards and a letter.
  const std::string alphabet = "a.:_-%*> ";
  std::vector<std::string> rooms{""};
  for (std::size_t length = 1, begin = 0; length <= 3; ++length) {
    const std::size_t end = rooms.size();
    for (std::size_t i = begin; i < end; ++i)
      for (char c : alphabet) rooms.push_back(rooms[i] + c);
    begin = end;
  }
  std::map<std::string, std::string> seen;
  for (const auto& room : rooms) {
    const std::string token = room_token(room);
    expect_single_literal_token(token, room);
    const auto [it, fresh] = seen.emplace(token, room);
    EXPECT_TRUE(fresh) << "'" << room << "' and '" << it->second << "' both map to '" << token << "'";
  }
  EXPECT_EQ(seen.size(), rooms.size());
}

TEST(NatsSubjectTest, PerRoomSubjectsAreValidAndOneTokenDeeperThanThePrefix) {
  std::string error;
  const NatsConfig c = NatsConfig::from(make_config(NatsConfig::schema(), {{"subject_per_room", true}}, &error));
  ASSERT_EQ(error, "");
  for (const std::string room : {"lobby", "a.b", "a:b", "a.b.c", "*", ">", "x y", ""}) {
    const std::string subject = c.subject_for(room);
    EXPECT_EQ(check_subject(subject, false), "") << subject;
    EXPECT_EQ(subject.rfind("nudge.room.", 0), 0u) << subject;
    EXPECT_EQ(std::count(subject.begin(), subject.end(), '.'), 2) << subject << ": exactly one token after the prefix";
  }
  EXPECT_EQ(c.subject_for("a.b"), "nudge.room.a%2Eb");
  EXPECT_NE(c.subject_for("a.b"), c.subject_for("a:b"));
}

TEST(NatsConfigTest, DefaultsAreValidAndDocumented) {
  const ConfigSchema schema = NatsConfig::schema();
  const std::map<std::string, ConfigValue> expected{
      {"url", std::string("nats://127.0.0.1:4222")},
      {"subject", std::string("nudge.messages")},
      {"subject_per_room", false},
      {"subject_prefix", std::string("nudge.room.")},
      {"reconnect_wait_ms", std::int64_t{500}},
      {"reconnect_buffer_bytes", std::int64_t{8 * 1024 * 1024}},
      {"connect_timeout_ms", std::int64_t{2000}},
      {"max_pending_messages", std::int64_t{65536}},
      {"presence_ttl_ms", std::int64_t{15000}},
      {"max_presence_per_room", std::int64_t{1000}},
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
  EXPECT_EQ(schema.find("subjet"), nullptr) << "unknown keys are rejected by the runtime against this schema";

  std::string error;
  const NatsConfig c = NatsConfig::from(make_config(schema, {}, &error));
  ASSERT_EQ(error, "");
  EXPECT_EQ(c.error, "");
  ASSERT_EQ(c.servers.size(), 1u);
  EXPECT_EQ(c.servers[0].endpoint(), "127.0.0.1:4222");
  EXPECT_EQ(c.subject, "nudge.messages");
  EXPECT_FALSE(c.subject_per_room);
  EXPECT_EQ(c.subject_for("lobby"), "nudge.messages") << "one subject for every room by default";
  EXPECT_EQ(c.reconnect_wait_ms, 500);
  EXPECT_EQ(c.reconnect_buffer_bytes, 8 * 1024 * 1024);
  EXPECT_EQ(c.connect_timeout_ms, 2000);
  EXPECT_EQ(c.max_pending_messages, 65536);
}

TEST(NatsConfigTest, ReadsAValidConfig) {
  std::string error;
  const NatsConfig c = NatsConfig::from(make_config(NatsConfig::schema(),
                                                    {{"url", std::string("nats://u:p@10.0.0.5:4300,nats://10.0.0.6")},
                                                     {"subject_per_room", true},
                                                     {"subject_prefix", std::string("chat.")},
                                                     {"reconnect_wait_ms", std::int64_t{50}},
                                                     {"reconnect_buffer_bytes", std::int64_t{4096}},
                                                     {"max_pending_messages", std::int64_t{3}}},
                                                    &error));
  ASSERT_EQ(error, "");
  EXPECT_EQ(c.error, "");
  ASSERT_EQ(c.servers.size(), 2u);
  EXPECT_EQ(c.endpoints(), "10.0.0.5:4300, 10.0.0.6:4222");
  EXPECT_EQ(c.subject_for("lobby"), "chat.lobby");
  EXPECT_EQ(c.reconnect_wait_ms, 50);
  EXPECT_EQ(c.reconnect_buffer_bytes, 4096);
  EXPECT_EQ(c.max_pending_messages, 3);
}

TEST(NatsConfigTest, SchemaRejectsBadValues) {
  const ConfigSchema schema = NatsConfig::schema();
  auto check = [&](const std::string& key, const ConfigValue& value) {
    const ConfigField* field = schema.find(key);
    EXPECT_NE(field, nullptr) << key;
    return field ? field->validate(value) : std::string("no such key");
  };
  EXPECT_NE(check("url", std::string("localhost:4222")).find("must be nats://"), std::string::npos);
  EXPECT_NE(check("url", std::string("nats://host:99999")).find("port"), std::string::npos);
  EXPECT_EQ(check("url", std::string("nats://a:1,nats://b:2")), "");
  EXPECT_NE(check("subject", std::string("")), "");
  EXPECT_NE(check("subject", std::string("nudge.*")), "");
  EXPECT_NE(check("subject", std::string("nudge.>")), "");
  EXPECT_NE(check("subject", std::string("nudge..x")), "");
  EXPECT_NE(check("subject_prefix", std::string("nudge.*.")), "");
  EXPECT_EQ(check("subject_prefix", std::string("")), "");
  EXPECT_NE(check("reconnect_wait_ms", std::int64_t{0}), "");
  EXPECT_NE(check("reconnect_buffer_bytes", std::int64_t{100}), "");
  EXPECT_NE(check("reconnect_buffer_bytes", std::int64_t{2} * 1024 * 1024 * 1024), "");
  EXPECT_NE(check("connect_timeout_ms", std::int64_t{5}), "");
  EXPECT_NE(check("max_pending_messages", std::int64_t{0}), "");
}

// The example in README.md is a valid [fanout.nats] table.
TEST(NatsConfigTest, ReadmeExampleParses) {
  std::ifstream file(NUDGE_NATS_README);
  ASSERT_TRUE(file) << NUDGE_NATS_README;
  std::stringstream text;
  text << file.rdbuf();
  const std::string readme = text.str();
  const auto start = readme.find("```toml\n");
  ASSERT_NE(start, std::string::npos);
  const auto end = readme.find("```", start + 8);
  const auto table = toml::parse(readme.substr(start + 8, end - start - 8));
  const auto* fanout = table["fanout"]["nats"].as_table();
  ASSERT_NE(fanout, nullptr);
  std::map<std::string, ConfigValue> values;
  for (const auto& [key, node] : *fanout) {
    // The runtime interpolates before validation; `${VAR:-default}` takes its default here.
    if (auto s = node.value<std::string>())
      values.emplace(std::string(key.str()), std::regex_replace(*s, std::regex(R"(\$\{[A-Za-z_]+:-([^}]*)\})"), "$1"));
    else if (auto b = node.value_exact<bool>()) values.emplace(std::string(key.str()), *b);
    else if (auto i = node.value<std::int64_t>()) values.emplace(std::string(key.str()), *i);
  }
  EXPECT_EQ(values.size(), fanout->size());
  std::string error;
  make_config(NatsConfig::schema(), values, &error);
  EXPECT_EQ(error, "");
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

void stop_promptly(boost::asio::io_context& io, NatsFanout& fanout) {
  bool stopped = false;
  const auto t0 = std::chrono::steady_clock::now();
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000)) << "stop must be prompt";
}

TEST(NatsFanoutStartTest, FailsOnlyForABadConfig) {
  const ConfigSchema schema = NatsConfig::schema();
  for (const auto& [key, bad, expect] :
       std::vector<std::tuple<std::string, std::string, std::string>>{{"url", "tcp://nowhere", "url"},
                                                                      {"subject", "a.*", "subject"},
                                                                      {"subject_prefix", "a..", "subject_prefix"}}) {
    boost::asio::io_context io;
    TestContext context(io, "fanout.nats@a", "a");
    // Bypasses the schema, as a caller that skipped validation would.
    std::map<std::string, ConfigValue, std::less<>> values;
    for (const auto& f : schema.fields()) values[f.key] = *f.default_value;
    values[key] = bad;
    NatsFanout fanout(Config(values, {key}), context);
    CountingReceiver receiver;
    const Status status = fanout.start(receiver);
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << key;
    EXPECT_EQ(status.message().rfind(expect + ":", 0), 0u) << status.message();
    bool stopped = false;
    fanout.stop([&] { stopped = true; });
    EXPECT_TRUE(nudge::testing::run_until(
        io, [&] { return stopped; }, std::chrono::milliseconds(100)));
  }
}

MessagePtr message_of(std::size_t payload_bytes) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = "lobby";
  m->payload = std::string(payload_bytes, 'x');
  return m;
}

TEST(NatsFanoutStartTest, StartsWhenNatsIsDownThenBuffersAndDrops) {
  boost::asio::io_context io;
  TestContext context(io, "fanout.nats@a", "a");
  const std::string url = "nats://127.0.0.1:" + std::to_string(closed_port());
  NatsFanout fanout(make_config(NatsConfig::schema(), {{"url", url},
                                                       {"reconnect_wait_ms", std::int64_t{20}},
                                                       {"reconnect_buffer_bytes", std::int64_t{1024}}}),
                    context);
  CountingReceiver receiver;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(fanout.start(receiver).ok()) << "a NATS server that is down must not fail start()";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100)) << "start() must not connect";
  // Each message is about 650 bytes as an envelope: libnats holds two in a
  // 1024-byte reconnect buffer (it refuses once 1024 bytes are held).
  nudge::testing::run_for(io, std::chrono::milliseconds(100));
  for (int i = 0; i < 8; ++i) {
    fanout.publish(message_of(600));
    nudge::testing::run_for(io, std::chrono::milliseconds(20));  // the link's thread takes it
  }
  nudge::testing::run_for(io, std::chrono::milliseconds(200));
  EXPECT_FALSE(fanout.connected());
  EXPECT_EQ(context.metrics().gauge_value("connected"), 0);
  EXPECT_EQ(context.metrics().value("published"), 2u);
  EXPECT_EQ(context.metrics().value("dropped_while_disconnected"), 6u);
  EXPECT_EQ(context.metrics().value("publish_errors"), 0u);
  // One warning, however many attempts failed (every 20 ms here).
  EXPECT_EQ(context.logger().count(LogLevel::warn, "cannot connect to nats at '127.0.0.1:"), 1u);
  EXPECT_EQ(context.logger().count(LogLevel::warn, "dropping messages: nats at"), 1u) << "rate-limited";

  stop_promptly(io, fanout);
  EXPECT_EQ(context.metrics().value("dropped_while_disconnected"), 8u) << "the 2 held are dropped at stop";
  EXPECT_EQ(receiver.count, 0);
}

/// A TCP server on 127.0.0.1 that accepts connections and never says a
/// word: libnats waits for its INFO line until connect_timeout_ms.
class SilentServer {
 public:
  explicit SilentServer(boost::asio::io_context& io) : acceptor_(io, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int accepted = 0;

 private:
  void accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket) {
      if (ec) return;
      ++accepted;
      sockets_.push_back(std::move(socket));
      accept();
    });
  }
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<boost::asio::ip::tcp::socket> sockets_;
};

TEST(NatsFanoutStartTest, NotReadyWhileNatsIsDown) {
  boost::asio::io_context io;
  TestContext context(io, "fanout.nats@a", "a");
  const std::string url = "nats://127.0.0.1:" + std::to_string(closed_port());
  NatsFanout fanout(make_config(NatsConfig::schema(), {{"url", url}, {"reconnect_wait_ms", std::int64_t{20}}}),
                    context);
  EXPECT_FALSE(fanout.readiness().ready) << "not ready before start()";
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok());
  ASSERT_TRUE(nudge::testing::run_until(
      io, [&] { return fanout.readiness().reason.find("yet") == std::string::npos; }, std::chrono::seconds(3)))
      << fanout.readiness().reason;
  const auto readiness = fanout.readiness();
  EXPECT_FALSE(readiness.ready);
  EXPECT_EQ(readiness.reason.rfind("no connection to NATS at '", 0), 0u) << readiness.reason;
  bool stopped = false;
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(nudge::testing::run_until(
      io, [&] { return stopped; }, std::chrono::seconds(5)));
}

TEST(NatsFanoutStartTest, NeverBlocksTheLoopWhileTheClientWaitsForASilentServer) {
  boost::asio::io_context io;
  SilentServer server(io);
  TestContext context(io, "fanout.nats@a", "a");
  NatsFanout fanout(make_config(NatsConfig::schema(), {{"url", "nats://localhost:" + std::to_string(server.port())},
                                                       {"connect_timeout_ms", std::int64_t{300}},
                                                       {"reconnect_wait_ms", std::int64_t{10}},
                                                       {"reconnect_buffer_bytes", std::int64_t{1024}}}),
                    context);
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok());
  nudge::testing::run_for(io, std::chrono::milliseconds(50));
  // libnats holds its connection's lock while it waits for the server (in
  // the first connect, then in every reconnect attempt): a publish made on
  // the event loop would wait with it. The link's thread waits instead, and
  // what cannot wait in reconnect_buffer_bytes is dropped.
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (int i = 0; i < 8; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fanout.publish(message_of(600));
    slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
  }
  EXPECT_LT(slowest, std::chrono::milliseconds(5)) << "publish() must not wait for the connection";
  EXPECT_EQ(context.metrics().value("dropped_while_disconnected"), 7u) << "one message waits, however large";
  EXPECT_EQ(context.logger().count(LogLevel::warn, "dropping messages: the nats client's thread is behind"), 1u);
  nudge::testing::run_for(io, std::chrono::milliseconds(900));
  EXPECT_FALSE(fanout.connected());
  // libnats 3.4 gives up on a connection whose first handshake fails; the
  // link makes a new one, and the outage is logged once.
  EXPECT_GE(server.accepted, 2) << "the first connect timed out and was retried";
  EXPECT_EQ(context.logger().count(LogLevel::warn, "cannot connect to nats"), 1u);
  EXPECT_EQ(context.logger().count(LogLevel::warn, "lost the connection"), 0u) << "it never was connected";
  EXPECT_EQ(context.logger().count(LogLevel::error, ""), 0u);
  stop_promptly(io, fanout);
}

TEST(NatsFanoutStartTest, StopsWhileTryingToConnectAndWhenNeverStarted) {
  boost::asio::io_context io;
  TestContext context(io, "fanout.nats@a", "a");
  {
    NatsFanout never_started(make_config(NatsConfig::schema()), context);
    stop_promptly(io, never_started);
  }
  {
    // Destroyed without stop(): the destructor closes the connection itself.
    NatsFanout abandoned(
        make_config(NatsConfig::schema(), {{"url", "nats://127.0.0.1:" + std::to_string(closed_port())}}), context);
    CountingReceiver receiver;
    ASSERT_TRUE(abandoned.start(receiver).ok());
    abandoned.set_room_interest("ignored", true);
    abandoned.publish(message_of(10));
    nudge::testing::run_for(io, std::chrono::milliseconds(50));
  }
  NatsFanout fanout(make_config(NatsConfig::schema(), {{"url", "nats://127.0.0.1:" + std::to_string(closed_port())},
                                                       {"subject_per_room", true}}),
                    context);
  CountingReceiver receiver;
  ASSERT_TRUE(fanout.start(receiver).ok());
  fanout.set_room_interest("a.b", true);
  fanout.set_room_interest("a:b", true);
  fanout.set_room_interest("a.b", false);
  nudge::testing::run_for(io, std::chrono::milliseconds(50));
  stop_promptly(io, fanout);
  EXPECT_EQ(context.logger().count(LogLevel::error, ""), 0u);
}

}  // namespace
}  // namespace nudge::plugins::nats
