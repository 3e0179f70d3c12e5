#include "wire.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nudge::plugins::websocket {
namespace {

using Event = FrameReader::Event;

/// A client frame: masked with a fixed key, as a browser would send it.
std::vector<std::uint8_t> client_frame(std::uint8_t first_byte, std::string_view payload, bool masked = true,
                                       int length_form = 0) {
  std::vector<std::uint8_t> out{first_byte};
  const std::uint8_t mask_bit = masked ? 0x80 : 0;
  const std::size_t size = payload.size();
  if (length_form == 0) length_form = size < 126 ? 7 : size <= 0xFFFF ? 16 : 64;
  if (length_form == 7) {
    out.push_back(static_cast<std::uint8_t>(mask_bit | size));
  } else if (length_form == 16) {
    out.push_back(mask_bit | 126);
    out.push_back(static_cast<std::uint8_t>(size >> 8));
    out.push_back(static_cast<std::uint8_t>(size));
  } else {
    out.push_back(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(size >> shift));
  }
  const std::uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) out.insert(out.end(), key, key + 4);
  for (std::size_t i = 0; i < size; ++i)
    out.push_back(static_cast<std::uint8_t>(payload[i]) ^ (masked ? key[i % 4] : 0));
  return out;
}

std::vector<std::uint8_t> text(std::string_view payload) { return client_frame(0x81, payload); }

std::vector<std::uint8_t> concat(std::initializer_list<std::vector<std::uint8_t>> parts) {
  std::vector<std::uint8_t> out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

struct Seen {
  std::vector<std::string> messages;
  std::vector<std::string> pings;
  std::vector<std::uint16_t> closes;
  int pongs = 0;
  Event last = Event::need_more;
  CloseCode failure = CloseCode::normal;
};

/// Feeds `bytes` in pieces of `piece` bytes and records every event.
Seen read_all(std::vector<std::uint8_t> bytes, std::size_t piece, std::size_t max_message = 1 << 20) {
  FrameReader reader(max_message);
  Seen seen;
  std::size_t at = 0;
  while (at < bytes.size()) {
    const std::size_t size = std::min(piece, bytes.size() - at);
    std::span<std::uint8_t> input(bytes.data() + at, size);
    while (true) {
      const Event event = reader.next(input);
      seen.last = event;
      if (event == Event::need_more) break;
      if (event == Event::message) seen.messages.emplace_back(reader.message());
      if (event == Event::ping) seen.pings.emplace_back(reader.payload());
      if (event == Event::pong) ++seen.pongs;
      if (event == Event::close) seen.closes.push_back(reader.close_code());
      if (event == Event::failure) {
        seen.failure = reader.failure_code();
        return seen;
      }
    }
    at += size;
  }
  return seen;
}

TEST(WebSocketHandshake, AcceptKeyMatchesRfc6455Example) {
  EXPECT_EQ(websocket_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocketHandshake, KeyMustBeBase64OfSixteenBytes) {
  EXPECT_TRUE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_FALSE(valid_websocket_key(""));
  EXPECT_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));
  EXPECT_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25j!Q=="));
  EXPECT_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQAA"));
}

TEST(WebSocketEncode, UsesTheShortestLengthForm) {
  EXPECT_EQ(encode_frame(Opcode::text, ""), std::string("\x81\x00", 2));
  EXPECT_EQ(encode_frame(Opcode::text, "hi"), "\x81\x02hi");
  EXPECT_EQ(encode_frame(Opcode::text, std::string(125, 'x')).size(), 127u);
  const auto f126 = encode_frame(Opcode::text, std::string(126, 'x'));
  EXPECT_EQ(f126.size(), 130u);
  EXPECT_EQ(static_cast<std::uint8_t>(f126[1]), 126);
  EXPECT_EQ(f126.substr(2, 2), std::string("\x00\x7e", 2));
  const auto f64k = encode_frame(Opcode::binary, std::string(65536, 'x'));
  EXPECT_EQ(static_cast<std::uint8_t>(f64k[0]), 0x82);
  EXPECT_EQ(static_cast<std::uint8_t>(f64k[1]), 127);
  EXPECT_EQ(f64k.substr(2, 8), std::string("\x00\x00\x00\x00\x00\x01\x00\x00", 8));
  EXPECT_EQ(f64k.size(), 65536u + 10);
}

TEST(WebSocketEncode, CloseFrameCarriesCodeAndAWholeCharacterReason) {
  EXPECT_EQ(encode_close_frame(CloseCode::policy_error, "slow"), std::string("\x88\x06\x03\xf0slow", 8));
  // 122 ASCII bytes then a 2-byte character: the character does not fit in 123 and is left out whole.
  const std::string reason = std::string(122, 'a') + "\xc3\xa9";
  const auto frame = encode_close_frame(CloseCode::normal, reason);
  EXPECT_EQ(frame.size(), 2u + 2 + 122);
}

TEST(FrameReader, ReadsMessagesWhateverTheChunking) {
  const std::string big(70000, 'b');
  const auto bytes = concat({text("hello"), text(""), client_frame(0x82, "\x01\x02"), text(std::string(300, 'm')),
                             text(big), text("\xf0\x9f\x98\x80 emoji")});
  for (std::size_t piece : {1u, 2u, 3u, 7u, 64u, 1000u, 1u << 20}) {
    SCOPED_TRACE(piece);
    const Seen seen = read_all(bytes, piece);
    ASSERT_EQ(seen.messages.size(), 6u);
    EXPECT_EQ(seen.messages[0], "hello");
    EXPECT_EQ(seen.messages[1], "");
    EXPECT_EQ(seen.messages[2], "\x01\x02");
    EXPECT_EQ(seen.messages[3], std::string(300, 'm'));
    EXPECT_EQ(seen.messages[4], big);
    EXPECT_EQ(seen.messages[5], "\xf0\x9f\x98\x80 emoji");
  }
}

TEST(FrameReader, AssemblesFragmentsAndAnswersControlFramesBetweenThem) {
  const auto bytes = concat({client_frame(0x01, "frag"), client_frame(0x89, "are you there"), client_frame(0x00, "men"),
                             client_frame(0x80, "ted"), client_frame(0x8A, "")});
  for (std::size_t piece : {1u, 5u, 4096u}) {
    const Seen seen = read_all(bytes, piece);
    ASSERT_EQ(seen.messages.size(), 1u);
    EXPECT_EQ(seen.messages[0], "fragmented");
    ASSERT_EQ(seen.pings.size(), 1u);
    EXPECT_EQ(seen.pings[0], "are you there");
    EXPECT_EQ(seen.pongs, 1);
  }
}

TEST(FrameReader, ReadsCloseCodes) {
  EXPECT_EQ(read_all(client_frame(0x88, ""), 64).closes, std::vector<std::uint16_t>{1005});
  EXPECT_EQ(read_all(client_frame(0x88, "\x03\xe8"), 64).closes, std::vector<std::uint16_t>{1000});
  EXPECT_EQ(read_all(client_frame(0x88, "\x0f\xa0going"), 64).closes, std::vector<std::uint16_t>{4000});
  EXPECT_EQ(read_all(client_frame(0x88, "\x03"), 64).failure, CloseCode::protocol_error);
  EXPECT_EQ(read_all(client_frame(0x88, "\x03\xed"), 64).failure, CloseCode::protocol_error) << "1005 is never sent";
  EXPECT_EQ(read_all(client_frame(0x88, "\x03\xe8\xff"), 64).failure, CloseCode::bad_payload);
}

TEST(FrameReader, RefusesWhatRfc6455Forbids) {
  struct Case {
    const char* what;
    std::vector<std::uint8_t> bytes;
    CloseCode code;
  };
  const std::vector<Case> cases = {
      {"unmasked", client_frame(0x81, "hi", false), CloseCode::protocol_error},
      {"reserved bit", client_frame(0xC1, "hi"), CloseCode::protocol_error},
      {"unknown opcode", client_frame(0x83, "hi"), CloseCode::protocol_error},
      {"fragmented ping", client_frame(0x09, "hi"), CloseCode::protocol_error},
      {"long ping", client_frame(0x89, std::string(126, 'p')), CloseCode::protocol_error},
      {"stray continuation", client_frame(0x80, "hi"), CloseCode::protocol_error},
      {"message inside a message", concat({client_frame(0x01, "a"), text("b")}), CloseCode::protocol_error},
      {"non-minimal 16-bit length", client_frame(0x81, "hi", true, 16), CloseCode::protocol_error},
      {"non-minimal 64-bit length", client_frame(0x81, "hi", true, 64), CloseCode::protocol_error},
      {"invalid UTF-8", text("\xc3\x28"), CloseCode::bad_payload},
      {"truncated UTF-8", text("abc\xe2\x82"), CloseCode::bad_payload},
      {"UTF-8 split over fragments, then bad", concat({client_frame(0x01, "ok \xe2"), client_frame(0x80, "\x28\xa1")}),
       CloseCode::bad_payload},
  };
  for (const auto& c : cases) {
    for (std::size_t piece : {1u, 4096u}) {
      SCOPED_TRACE(std::string(c.what) + " piece " + std::to_string(piece));
      const Seen seen = read_all(c.bytes, piece);
      EXPECT_EQ(seen.last, Event::failure);
      EXPECT_EQ(seen.failure, c.code);
      EXPECT_TRUE(seen.messages.empty());
    }
  }
}

TEST(FrameReader, RefusesAnOversizedMessageFromItsHeaders) {
  EXPECT_EQ(read_all(text(std::string(100, 'x')), 4096, 100).messages.size(), 1u);
  // The header alone announces too much: refused before the payload arrives.
  auto header_only = text(std::string(101, 'x'));
  header_only.resize(8);
  EXPECT_EQ(read_all(header_only, 4096, 100).failure, CloseCode::too_big);
  // Fragments adding up past the limit.
  const auto parts = concat({client_frame(0x01, std::string(60, 'x')), client_frame(0x80, std::string(41, 'x'))});
  EXPECT_EQ(read_all(parts, 4096, 100).failure, CloseCode::too_big);
}

TEST(Utf8Validator, AcceptsUtf8AndRefusesTheRest) {
  auto valid = [](std::string_view s) {
    Utf8Validator v;
    return v.feed(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()) && v.complete();
  };
  EXPECT_TRUE(valid(""));
  EXPECT_TRUE(valid("plain ASCII, long enough for the word-at-a-time path"));
  EXPECT_TRUE(valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb"));
  EXPECT_TRUE(valid("\xf4\x8f\xbf\xbf"));   // U+10FFFF
  EXPECT_FALSE(valid("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(valid("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(valid("\xff"));
  EXPECT_FALSE(valid("\xe2\x82"));  // truncated
  // Split anywhere, the same answers.
  const std::string text = "a\xe2\x82\xac b \xf0\x9f\x98\x80";
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed(reinterpret_cast<const std::uint8_t*>(text.data()), cut));
    EXPECT_TRUE(v.feed(reinterpret_cast<const std::uint8_t*>(text.data()) + cut, text.size() - cut));
    EXPECT_TRUE(v.complete());
  }
}

}  // namespace
}  // namespace nudge::plugins::websocket
