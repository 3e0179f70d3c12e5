#include "socketio.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <set>

namespace nudge::plugins::websocket::socketio {
namespace {

std::optional<Packet> parse(std::string_view text, std::string* message = nullptr) {
  ParseError error;
  auto p = parse_packet(text, error);
  if (message) *message = error.message;
  return p;
}

TEST(EngineIoPacket, ReadsTheTypeDigitAndKeepsTheRest) {
  auto p = parse_engine_packet("42[\"event:message\",{\"message\":\"hi\"}]");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type, EngineType::message);
  EXPECT_EQ(p->data, "2[\"event:message\",{\"message\":\"hi\"}]");
  EXPECT_EQ(parse_engine_packet("2")->type, EngineType::ping);
  EXPECT_EQ(parse_engine_packet("3probe")->data, "probe");
  EXPECT_FALSE(parse_engine_packet(""));
  EXPECT_FALSE(parse_engine_packet("7"));
  EXPECT_FALSE(parse_engine_packet("x"));
}

// The cases of socket.io-protocol's test suite (decoding), rewritten.
TEST(SocketIoPacket, ReadsConnectToTheMainNamespaceWithAndWithoutAuth) {
  auto p = parse("0");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type, PacketType::connect);
  EXPECT_EQ(p->nsp, "/");
  EXPECT_EQ(p->data, "");
  p = parse("0{\"token\":\"123\"}");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data, "{\"token\":\"123\"}");
  p = parse("0/admin,{\"token\":\"123\"}");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->nsp, "/admin");
  p = parse("0/admin");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->nsp, "/admin");
}

TEST(SocketIoPacket, ReadsEventsWithTheirNameArgumentsAndAckId) {
  auto p = parse("2[\"event:message\",{\"message\":\"hi\"}]");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type, PacketType::event);
  EXPECT_EQ(p->event, "event:message");
  EXPECT_EQ(p->args, "[{\"message\":\"hi\"}]");
  EXPECT_FALSE(p->ack_id);
  p = parse("212[\"join\",\"room-1\"]");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ack_id, 12u);
  EXPECT_EQ(p->event, "join");
  EXPECT_EQ(p->args, "[\"room-1\"]");
  p = parse("2/admin,3[\"hello\"]");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->nsp, "/admin");
  EXPECT_EQ(p->ack_id, 3u);
  EXPECT_EQ(p->args, "[]");
  p = parse("31[{\"ok\":true}]");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type, PacketType::ack);
  EXPECT_EQ(p->ack_id, 1u);
  EXPECT_TRUE(parse("1"));
}

TEST(SocketIoPacket, RefusesWhatTheProtocolDoesNotAllowWithAReason) {
  struct Case {
    const char* packet;
    const char* reason;
  };
  for (const Case& c : {Case{"", "empty"},
                        Case{"7", "unknown packet type"},
                        Case{"x[]", "unknown packet type"},
                        Case{"51-[\"a\",{\"_placeholder\":true,\"num\":0}]", "binary"},
                        Case{"2", "first element is the event's name"},
                        Case{"2[]", "first element"},
                        Case{"2[1,2]", "first element"},
                        Case{"2{\"a\":1}", "first element"},
                        Case{"2[\"a\"", "malformed JSON"},
                        Case{"2[\"a\"]trailing", "malformed JSON"},
                        Case{"2[\"connect\"]", "reserved"},
                        Case{"2[\"disconnect\",1]", "reserved"},
                        Case{"0[]", "connect data must be a JSON object"},
                        Case{"01{}", "no acknowledgement id"},
                        Case{"1{}", "carries no data"},
                        Case{"3[]", "needs its acknowledgement id"},
                        Case{"31{}", "ack data must be a JSON array"},
                        Case{"4{\"message\":\"x\"}", "servers only"},
                        Case{"29007199254740992[\"a\"]", "out of range"},
                        Case{"2[\"a\",\"\\ud800\"]", "surrogate"},
                        Case{"2[\"a\",\"\xc3\x28\"]", "malformed JSON"}}) {
    std::string message;
    EXPECT_FALSE(parse(c.packet, &message)) << c.packet;
    EXPECT_NE(message.find(c.reason), std::string::npos) << c.packet << " → " << message;
  }
  EXPECT_TRUE(parse("29007199254740991[\"a\"]")) << "the largest exact JavaScript integer is a valid id";
}

TEST(SocketIoPacket, DeepNestingIsParsedWithoutRecursion) {
  std::string deep = "2[\"a\"," + std::string(100000, '[') + std::string(100000, ']') + "]";
  EXPECT_TRUE(parse(deep));
}

TEST(SocketIoEncode, WritesWhatTheClientsRead) {
  EXPECT_EQ(open_packet("abc", true, 25000, 20000, 1000000),
            "0{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":20000,"
            "\"maxPayload\":1000000}");
  EXPECT_EQ(open_packet("abc", false, 1, 2, 3),
            "0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":1,\"pingTimeout\":2,"
            "\"maxPayload\":3}");
  EXPECT_EQ(connect_packet("s1"), "40{\"sid\":\"s1\"}");
  EXPECT_EQ(connect_error_packet("/", "not authorized"), "44{\"message\":\"not authorized\"}");
  EXPECT_EQ(connect_error_packet("/admin", "no such namespace"), "44/admin,{\"message\":\"no such namespace\"}");
  EXPECT_EQ(event_packet("message", "[\"{\\\"message\\\":\\\"hi\\\"}\"]"),
            "42[\"message\",\"{\\\"message\\\":\\\"hi\\\"}\"]");
  EXPECT_EQ(event_packet("tick", "[]"), "42[\"tick\"]");
  EXPECT_EQ(event_packet("quote\"d", "[1]"), "42[\"quote\\\"d\",1]");
  EXPECT_EQ(ack_packet(7, "[{\"id\":\"x\"}]"), "437[{\"id\":\"x\"}]");
  EXPECT_EQ(ack_packet(0, ""), "430[]");
}

TEST(SocketIoEncode, WhatIsWrittenParsesBack) {
  ParseError error;
  const std::string frame = event_packet("event:message", "[{\"message\":\"héllo\"}]");
  const auto event = parse_engine_packet(frame);  // a view into frame
  ASSERT_TRUE(event);
  const auto packet = parse_packet(event->data, error);
  ASSERT_TRUE(packet) << error.message;
  EXPECT_EQ(packet->event, "event:message");
  EXPECT_EQ(packet->args, "[{\"message\":\"héllo\"}]");
}

TEST(SocketIoPacket, ABinaryPacketsHeaderGivesItsAttachmentsAndAckId) {
  EXPECT_FALSE(parse_binary_header("2[\"x\"]")) << "not binary";
  EXPECT_FALSE(parse_binary_header(""));
  auto plain = parse_binary_header("51-[\"upload\",{\"_placeholder\":true,\"num\":0}]");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->attachments, 1u);
  EXPECT_FALSE(plain->ack_id);
  auto acked = parse_binary_header("52-/chat,17[\"upload\"]");
  ASSERT_TRUE(acked);
  EXPECT_EQ(acked->attachments, 2u);
  EXPECT_EQ(acked->ack_id, 17u);
  auto root_acked = parse_binary_header("61-42[{\"_placeholder\":true,\"num\":0}]");
  ASSERT_TRUE(root_acked);
  EXPECT_EQ(root_acked->attachments, 1u);
  EXPECT_EQ(root_acked->ack_id, 42u);
  auto huge = parse_binary_header("599999-99999999999999999999[]");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->attachments, 0u) << "a count over 1000 is not believed";
  EXPECT_FALSE(huge->ack_id) << "an id past 2^53 is not one";
}

TEST(SocketIo, SessionIdsAre20Base64UrlCharactersAndNeverRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const auto sid = new_session_id();
    ASSERT_EQ(sid.size(), 20u);
    for (char c : sid) ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << sid;
    ASSERT_TRUE(seen.insert(sid).second) << "a sid was given twice";
  }
}

}  // namespace
}  // namespace nudge::plugins::websocket::socketio
