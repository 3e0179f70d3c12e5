#include "nudge/sdk/presence.hpp"

#include <gtest/gtest.h>

#include "nudge/sdk/message.hpp"

namespace nudge {
namespace {

TEST(PresenceFrame, AJoinAndASnapshotRoundTripByteForByte) {
  PresenceFrame join{PresenceFrame::Kind::join, "room \xc3\xa9", "inst-1", {{"al\0ce", "c1", "inst-1"}}, 1};
  join.members[0].user = std::string("al\0ce", 5);
  PresenceFrame got;
  ASSERT_TRUE(decode_presence_frame(encode_presence_frame(join), got).ok());
  EXPECT_EQ(got.kind, PresenceFrame::Kind::join);
  EXPECT_EQ(got.room, join.room);
  EXPECT_EQ(got.instance, "inst-1");
  ASSERT_EQ(got.members.size(), 1u);
  EXPECT_EQ(got.members[0], join.members[0]);

  PresenceFrame snap{PresenceFrame::Kind::snapshot, "r", "i2", {}, 7};
  for (int i = 0; i < 3; ++i) snap.members.push_back({"u" + std::to_string(i), "c" + std::to_string(i), "i2"});
  ASSERT_TRUE(decode_presence_frame(encode_presence_frame(snap), got).ok());
  EXPECT_EQ(got.total, 7u);
  EXPECT_EQ(got.members, snap.members);
}

TEST(PresenceFrame, EnvelopesAndGarbageAreNotFrames) {
  Message m;
  m.room = "r";
  EXPECT_FALSE(is_presence_frame(encode_envelope(m)));
  PresenceFrame out;
  out.room = "untouched";
  EXPECT_FALSE(decode_presence_frame("NP\x01\x09", out).ok());
  const std::string good = encode_presence_frame({PresenceFrame::Kind::leave, "r", "i", {{"u", "c", "i"}}, 0});
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(decode_presence_frame(good.substr(0, n), out).ok()) << n;
  EXPECT_FALSE(decode_presence_frame(good + "x", out).ok());
  EXPECT_EQ(out.room, "untouched");
}

}  // namespace
}  // namespace nudge
