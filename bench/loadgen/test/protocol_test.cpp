#include "protocol.hpp"

#include <gtest/gtest.h>

#include <rapidjson/document.h>

namespace nudge::bench {
namespace {

const MessageHeader kHeader{0x01020304, 7, 42, 1'000'000'000};

TEST(NudgeProtocol, ClientFramesAreTheDocumentedJson) {
  rapidjson::Document doc;
  doc.Parse(nudge_send("bench-3", kHeader, 100).c_str());
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_STREQ(doc["type"].GetString(), "send");
  EXPECT_STREQ(doc["room"].GetString(), "bench-3");
  EXPECT_STREQ(doc["ref"].GetString(), "42");
  EXPECT_EQ(std::string(doc["text"].GetString()).size(), 100u);
  EXPECT_EQ(find_header(doc["text"].GetString()), kHeader);
  EXPECT_EQ(nudge_join("bench-0"), R"({"type":"join","room":"bench-0"})");
  EXPECT_EQ(nudge_hello("b1-2"), R"({"type":"hello","name":"b1-2"})");
}

TEST(NudgeProtocol, ClassifiesServerFrames) {
  const std::string text = encode_header(kHeader, 64);
  Incoming m = parse_nudge(R"({"type":"message","id":"x","room":"r","sender":"s","text":")" + text + R"(","ts":1})");
  EXPECT_EQ(m.kind, Incoming::Kind::delivery);
  EXPECT_EQ(m.header, kHeader);
  // Another field order takes the parsing path, with the same answer.
  m = parse_nudge(R"({"id":"x","type":"message","text":")" + text + R"("})");
  EXPECT_EQ(m.kind, Incoming::Kind::delivery);
  EXPECT_EQ(m.header, kHeader);
  // Someone else's message: a delivery without a header.
  m = parse_nudge(R"({"type":"message","text":"hi bob"})");
  EXPECT_EQ(m.kind, Incoming::Kind::delivery);
  EXPECT_FALSE(m.header);
  // A room's history on joining (an earlier run's messages) is no delivery.
  m = parse_nudge(R"({"type":"message","id":"x","room":"r","sender":"s","text":")" + text +
                  R"(","ts":1,"history":true})");
  EXPECT_EQ(m.kind, Incoming::Kind::other);
  EXPECT_EQ(parse_socketio(R"(42["message","{\"message\":\"old\",\"ts\":1,\"history\":true}"])").kind,
            Incoming::Kind::other);
  EXPECT_EQ(parse_socketio(R"(42["message","{\"message\":\"new\",\"ts\":1}"])").kind, Incoming::Kind::delivery);

  Incoming a = parse_nudge(R"({"type":"ack","ref":"42","id":"0193a9f2-6b1c-7d3e-9a41-2f0c8e5d7b10"})");
  EXPECT_EQ(a.kind, Incoming::Kind::ack);
  EXPECT_EQ(a.ref, 42u);
  EXPECT_EQ(parse_nudge(R"({"type":"ack","ref":"c-1"})").kind, Incoming::Kind::malformed);

  Incoming e = parse_nudge(R"({"type":"error","ref":"9","code":"unavailable","message":"log append failed"})");
  EXPECT_EQ(e.kind, Incoming::Kind::error);
  EXPECT_EQ(e.ref, 9u);
  EXPECT_EQ(e.code, "unavailable");
  e = parse_nudge(R"({"type":"error","code":"rate_limited","message":"slow down"})");
  EXPECT_EQ(e.kind, Incoming::Kind::error);
  EXPECT_FALSE(e.ref);

  EXPECT_EQ(parse_nudge(R"({"type":"presence"})").kind, Incoming::Kind::other);
  EXPECT_EQ(parse_nudge("not json").kind, Incoming::Kind::malformed);
  EXPECT_EQ(parse_nudge("[1,2]").kind, Incoming::Kind::malformed);
}

TEST(SocketIoProtocol, ClientFrames) {
  EXPECT_EQ(socketio_path("/socket.io/"), "/socket.io/?EIO=4&transport=websocket");
  EXPECT_EQ(socketio_path("/socket.io"), "/socket.io/?EIO=4&transport=websocket");
  EXPECT_EQ(socketio_join("bench-1"), R"(42["join","bench-1"])");
  const std::string plain = socketio_send(kHeader, 64, std::nullopt);
  EXPECT_TRUE(plain.starts_with(R"(42["event:message",{"message":"nb1.)")) << plain;
  const std::string acked = socketio_send(kHeader, 64, 42);
  EXPECT_TRUE(acked.starts_with(R"(4242["event:message",)")) << acked;
  rapidjson::Document doc;
  doc.Parse(acked.c_str() + 4);
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_STREQ(doc[0].GetString(), "event:message");
}

TEST(SocketIoProtocol, ClassifiesServerPackets) {
  EXPECT_EQ(parse_socketio(R"(0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000})").kind,
            Incoming::Kind::open);
  EXPECT_EQ(parse_socketio(R"(40{"sid":"def"})").kind, Incoming::Kind::connected);
  EXPECT_EQ(parse_socketio("2").kind, Incoming::Kind::ping);
  EXPECT_EQ(parse_socketio("1").kind, Incoming::Kind::close);
  EXPECT_EQ(parse_socketio("41").kind, Incoming::Kind::close);
  EXPECT_EQ(parse_socketio(R"(44{"message":"nope"})").kind, Incoming::Kind::connect_error);
  EXPECT_EQ(parse_socketio("3").kind, Incoming::Kind::other);
  EXPECT_EQ(parse_socketio("").kind, Incoming::Kind::malformed);

  // The original server's delivery: the Redis message, JSON, as a string.
  const std::string text = encode_header(kHeader, 64);
  Incoming d = parse_socketio(R"(42["message","{\"message\":\")" + text + R"(\"}"])");
  EXPECT_EQ(d.kind, Incoming::Kind::delivery);
  EXPECT_EQ(d.header, kHeader);
  // Nudge's Socket.IO mode adds fields; the header is found all the same.
  d = parse_socketio(R"(42["message","{\"id\":\"x\",\"message\":\")" + text + R"(\",\"room\":\"general\"}"])");
  EXPECT_EQ(d.header, kHeader);
  EXPECT_EQ(parse_socketio(R"(42["typing",{}])").kind, Incoming::Kind::other);
  EXPECT_EQ(parse_socketio(R"(42/admin,["message","x"])").kind, Incoming::Kind::other);

  Incoming a = parse_socketio("4317[]");
  EXPECT_EQ(a.kind, Incoming::Kind::ack);
  EXPECT_EQ(a.ref, 17u);
  EXPECT_EQ(parse_socketio("43[]").kind, Incoming::Kind::malformed);
}

}  // namespace
}  // namespace nudge::bench
