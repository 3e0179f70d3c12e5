#include <gtest/gtest.h>

#include "protocol.hpp"

namespace nudge::plugins::websocket {
namespace {

ClientFrame parse_ok(std::string_view text) {
  ProtocolError error;
  auto frame = parse_client_frame(text, error);
  EXPECT_TRUE(frame) << error.code << ": " << error.message;
  return frame.value_or(ClientFrame{});
}

ProtocolError parse_error(std::string_view text) {
  ProtocolError error;
  EXPECT_FALSE(parse_client_frame(text, error)) << text;
  return error;
}

TEST(Protocol, ParsesEveryClientFrame) {
  EXPECT_EQ(parse_ok(R"({"type":"hello","name":"alice"})").name, "alice");
  auto join = parse_ok(R"({"type":"join","room":"general"})");
  EXPECT_EQ(join.type, ClientFrame::Type::join);
  EXPECT_EQ(join.room, "general");
  EXPECT_EQ(parse_ok(R"({"type":"leave","room":"general"})").type, ClientFrame::Type::leave);
  auto send = parse_ok(R"({"type":"send","room":"general","text":"hi \u00e9","ref":"c-1","extra":1})");
  EXPECT_EQ(send.type, ClientFrame::Type::send);
  EXPECT_EQ(send.text, "hi \xC3\xA9");
  EXPECT_EQ(send.ref, "c-1");
}

TEST(Protocol, JoinTakesTheLastSeenIdToCatchUpFrom) {
  EXPECT_FALSE(parse_ok(R"({"type":"join","room":"general"})").after);
  const auto id = MessageId::generate();
  auto join = parse_ok(R"({"type":"join","room":"general","after":")" + id.to_string() + R"("})");
  ASSERT_TRUE(join.after);
  EXPECT_EQ(*join.after, id);
  for (const char* bad :
       {R"({"type":"join","room":"r","after":"yesterday"})", R"({"type":"join","room":"r","after":42})"}) {
    const auto error = parse_error(bad);
    EXPECT_EQ(error.code, "bad_request");
    EXPECT_NE(error.message.find("'after'"), std::string::npos) << error.message;
  }
}

TEST(Protocol, HistoryMessagesAreMarkedAndJoinedCountsThem) {
  Message m;
  m.id = MessageId::generate();
  m.room = "r";
  m.sender = "bob";
  m.payload = "earlier";
  m.timestamp_ms = 1;
  EXPECT_EQ(message_frame(m).find("history"), std::string::npos);
  EXPECT_NE(message_frame(m, true).find(R"("history":true)"), std::string::npos);
  EXPECT_EQ(joined_frame("r", 20), R"({"type":"joined","room":"r","history":20})");
}

TEST(Protocol, RefusesBadFramesWithACodeAndTheRef) {
  EXPECT_EQ(parse_error("{nope").code, "bad_json");
  EXPECT_EQ(parse_error("[1,2]").code, "bad_json");
  EXPECT_EQ(parse_error(R"({"room":"x"})").code, "bad_request");
  auto unknown = parse_error(R"({"type":"dance","ref":"r9"})");
  EXPECT_EQ(unknown.code, "unknown_type");
  EXPECT_EQ(unknown.ref, "r9");
  auto no_text = parse_error(R"({"type":"send","room":"general","ref":"r1"})");
  EXPECT_EQ(no_text.code, "bad_request");
  EXPECT_EQ(no_text.ref, "r1");
  EXPECT_EQ(parse_error(R"({"type":"join","room":"has space"})").code, "bad_request");
  EXPECT_EQ(parse_error(R"({"type":"join","room":""})").code, "bad_request");
  EXPECT_EQ(parse_error(R"({"type":"hello","name":""})").code, "bad_request");
  EXPECT_EQ(parse_error(R"({"type":"hello","name":"a\u0001b"})").code, "bad_request");
  EXPECT_EQ(parse_error("{\"type\":\"send\",\"room\":\"r\",\"text\":\"\xff\"}").code, "bad_json");
}

TEST(Protocol, ServerFramesAreValidJsonWithTextAsText) {
  Message m;
  m.id = *MessageId::parse("01a222df-e94e-7000-831c-b8e6d4f85e62");
  m.room = "general";
  m.sender = "al\"ice";
  m.payload = "<img src=x onerror=alert(1)> \n \xF0\x9F\x98\x80";
  m.timestamp_ms = 1764300000000;
  EXPECT_EQ(message_frame(m),
            R"({"type":"message","id":"01a222df-e94e-7000-831c-b8e6d4f85e62","room":"general","sender":"al\"ice",)"
            "\"text\":\"<img src=x onerror=alert(1)> \\n \xF0\x9F\x98\x80\",\"ts\":1764300000000}");
  EXPECT_EQ(ack_frame("c-1", m.id), R"({"type":"ack","ref":"c-1","id":"01a222df-e94e-7000-831c-b8e6d4f85e62"})");
  EXPECT_EQ(error_frame("", "bad_json", "x"), R"({"type":"error","code":"bad_json","message":"x"})");
  m.payload = "\xff\xfe";
  EXPECT_EQ(message_frame(m), "") << "invalid UTF-8 cannot go out in a text frame";
}

TEST(Protocol, NamesCarryNoControlBidiOrInvisibleCharacters) {
  for (const char* good : {"alice", "Zoë", "李小龍", "o'brien", "a b", "\xF0\x9F\x98\x80 grin"})
    EXPECT_TRUE(is_valid_name(good)) << good;
  const char* bad[] = {
      "",
      "\xE2\x80\xAE"
      "admin",              // U+202E right-to-left override: displays "nimda"
      "ad\xE2\x80\x8Bmin",  // U+200B zero-width space
      "ad\xE2\x80\x8Dmin",  // U+200D zero-width joiner
      "admin\xEF\xBB\xBF",  // U+FEFF
      "ad\xC2\xADmin",      // U+00AD soft hyphen
      "\xE2\x81\xA6x",      // U+2066 left-to-right isolate
      "\xD8\x9Cx",          // U+061C Arabic letter mark
      "admin\xEF\xB8\x8F",  // U+FE0F variation selector
      "x\xF3\xA0\x80\x81",  // U+E0001 language tag
      "\xE3\x85\xA4",       // U+3164 Hangul filler: a name that shows as nothing
      "a\xC2\x85"
      "b",  // U+0085 next line (C1 control)
      "a\xE2\x80\xA8"
      "b",  // U+2028 line separator
      "a\nb",
      "tab\there",
      "\x7f",
      " admin",
      "admin ",         // looks like "admin"
      "admin\xC2\xA0",  // U+00A0 no-break space at the end
      "\xE3\x80\x80"
      "admin",              // U+3000 ideographic space first
      "admin\xE2\x80\xAF",  // U+202F narrow no-break space
      "\xC2\xA0",           // nothing but a no-break space
      "\xE2\xA0\x80",       // U+2800 braille blank
      "\xCC\x81"
      "admin",  // a combining acute accent first
      "\xC0\xAF",
      "\xFF",  // not UTF-8
  };
  for (const char* name : bad) EXPECT_FALSE(is_valid_name(name)) << name;
  EXPECT_FALSE(is_valid_name(std::string(65, 'a')));
  EXPECT_TRUE(is_valid_name(std::string(64, 'a')));
  ProtocolError error;
  EXPECT_FALSE(parse_client_frame(R"({"type":"hello","name":"\u202eadmin"})", error));
  EXPECT_EQ(error.code, "bad_request");
  EXPECT_NE(error.message.find("bidirectional"), std::string::npos) << error.message;
}

}  // namespace
}  // namespace nudge::plugins::websocket
