#include "header.hpp"

#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include "protocol.hpp"

namespace nudge::bench {
namespace {

const MessageHeader kHeader{0xdeadbeef, 4711, 123456789012ull, 9'876'543'210'123'456};

TEST(Header, RoundTrips) {
  const std::string text = encode_header(kHeader, 0);
  EXPECT_EQ(text, "nb1.deadbeef.4711.123456789012.9876543210123456.");
  EXPECT_EQ(find_header(text), kHeader);
  const MessageHeader zero{};
  EXPECT_EQ(find_header(encode_header(zero, 0)), zero);
  const MessageHeader big{0xffffffff, 0xffffffff, ~0ull, INT64_MAX};
  EXPECT_EQ(find_header(encode_header(big, 10)), big);
}

TEST(Header, PadsToThePayloadSizeAndNeverTruncates) {
  EXPECT_EQ(encode_header(kHeader, 200).size(), 200u);
  EXPECT_EQ(find_header(encode_header(kHeader, 200)), kHeader);
  const std::string short_one = encode_header(kHeader, 10);
  EXPECT_EQ(short_one.size(), encode_header(kHeader, 0).size());
}

TEST(Header, HoldsNothingJsonEscapes) {
  for (char c : encode_header(kHeader, 300)) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '.' || c == 'n' || c == 'x') << c;
  }
}

TEST(Header, IsFoundInsideANudgeMessageFrame) {
  const std::string frame = R"({"type":"message","id":"0193a9f2-6b1c-7d3e-9a41-2f0c8e5d7b10","room":"r","sender":"b1",)"
                            R"("text":")" +
                            encode_header(kHeader, 100) + R"(","ts":1764300003612})";
  EXPECT_EQ(find_header(frame), kHeader);
}

TEST(Header, IsFoundInsideASocketIoEventWhosePayloadIsAJsonString) {
  // The original server emits the Redis message, itself JSON, as a string.
  const std::string frame = R"(42["message","{\"message\":\")" + encode_header(kHeader, 80) + R"(\"}"])";
  EXPECT_EQ(find_header(frame), kHeader);
  // What a send frame carries is the same text, and is valid JSON.
  const std::string sent = socketio_send(kHeader, 80, std::nullopt);
  rapidjson::Document doc;
  doc.Parse(sent.c_str() + 2);
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_EQ(find_header(doc[1]["message"].GetString()), kHeader);
}

TEST(Header, RejectsWhatIsNotAHeader) {
  EXPECT_FALSE(find_header(""));
  EXPECT_FALSE(find_header("hello world"));
  EXPECT_FALSE(find_header("nb1."));
  EXPECT_FALSE(find_header("nb1.deadbeef.1.2."));              // no time
  EXPECT_FALSE(find_header("nb1.deadbeef.1.2.3"));             // unterminated
  EXPECT_FALSE(find_header("nb1.deadbee.1.2.3."));             // run not 8 digits
  EXPECT_FALSE(find_header("nb1.zzzzzzzz.1.2.3."));            // run not hex
  EXPECT_FALSE(find_header("nb1.deadbeef.-1.2.3."));           // negative sender
  EXPECT_FALSE(find_header("nb1.deadbeef.1..3."));             // empty field
  EXPECT_FALSE(find_header("nb1.deadbeef.99999999999.2.3."));  // sender over 32 bits
}

}  // namespace
}  // namespace nudge::bench
