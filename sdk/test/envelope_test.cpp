#include <gtest/gtest.h>

#include "nudge/sdk/message.hpp"

namespace nudge {
namespace {

std::shared_ptr<Message> sample() {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = "general";
  m->sender = "alice";
  m->payload = std::string("hi \0 there \xF0\x9F\x98\x80 'quoted' \\\0", 27);  // 27 bytes: a final NUL too
  m->origin = "instance-1";
  m->timestamp_ms = 1764300000123;
  m->headers = {{"k", "v"}, {"empty", ""}};
  return m;
}

TEST(Envelope, RoundTripsEveryFieldByteForByte) {
  const auto m = sample();
  std::shared_ptr<Message> out;
  ASSERT_TRUE(decode_envelope(m->envelope(), out).ok());
  EXPECT_EQ(out->id, m->id);
  EXPECT_EQ(out->room, m->room);
  EXPECT_EQ(out->sender, m->sender);
  EXPECT_EQ(out->payload, m->payload);
  EXPECT_EQ(out->origin, m->origin);
  EXPECT_EQ(out->timestamp_ms, m->timestamp_ms);
  EXPECT_EQ(out->headers, m->headers);
}

TEST(Envelope, IsEncodedOnceAndCached) {
  const auto m = sample();
  EXPECT_EQ(&m->envelope(), &m->envelope());
}

TEST(Envelope, RejectsEveryTruncationWithoutCrashing) {
  const std::string bytes = sample()->envelope();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    std::shared_ptr<Message> out;
    const auto status = decode_envelope(std::string_view(bytes).substr(0, n), out);
    EXPECT_FALSE(status.ok()) << "prefix of " << n << " bytes";
    EXPECT_EQ(status.code(), StatusCode::invalid_argument);
    EXPECT_EQ(out, nullptr);
  }
}

TEST(Envelope, RejectsBadMagicTrailingBytesAndHugeLengths) {
  std::shared_ptr<Message> out;
  EXPECT_FALSE(decode_envelope("XX\x01", out).ok());
  EXPECT_FALSE(decode_envelope(sample()->envelope() + "x", out).ok());
  std::string huge("NG\x01", 3);
  huge += std::string(24, '\0');
  huge += "\xff\xff\xff\xff\x0f";  // a room of 4 GiB
  const auto status = decode_envelope(huge, out);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("room"), std::string::npos);
}

}  // namespace
}  // namespace nudge
