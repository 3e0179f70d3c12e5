#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "nudge/sdk/text.hpp"

namespace nudge {
namespace {

std::string repaired(std::string_view in) {
  std::string out;
  repair_utf8(in, out);
  return out;
}

TEST(Utf8RepairTest, ValidTextIsUntouched) {
  std::string out;
  for (std::string_view ok : {"", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf",
                              "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"}) {
    EXPECT_FALSE(repair_utf8(ok, out)) << ok;
    EXPECT_EQ(out, ok);
    EXPECT_TRUE(is_valid_utf8(ok)) << ok;
  }
}

TEST(Utf8RepairTest, BadBytesBecomeReplacementCharacters) {
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(repaired("a\xff"
                     "b"),
            "a" + fffd + "b");                                         // never valid
  EXPECT_EQ(repaired("\xc0\xaf"), fffd + fffd);                        // overlong '/'
  EXPECT_EQ(repaired("\xe0\x80\xaf"), fffd + fffd + fffd);             // overlong, 3 bytes
  EXPECT_EQ(repaired("\xed\xa0\x80"), fffd + fffd + fffd);             // UTF-16 surrogate
  EXPECT_EQ(repaired("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // above U+10FFFF
  EXPECT_EQ(repaired("\xe2\x82"), fffd);                               // truncated: one replacement
  EXPECT_EQ(repaired("\xf0\x9f\x98"
                     "x"),
            fffd + "x");
  EXPECT_EQ(repaired("\x80"), fffd);  // lone continuation byte
  std::string out;
  EXPECT_TRUE(repair_utf8("\x80", out));
  for (std::string_view bad : {"a\xff"
                               "b",
                               "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
                               "\xf0\x9f\x98"
                               "x",
                               "\x80"})
    EXPECT_FALSE(is_valid_utf8(bad)) << bad;
}

TEST(Utf8RepairTest, NulIsValidUtf8) {
  const std::string_view text("nul\0inside", 10);
  std::string out;
  EXPECT_TRUE(is_valid_utf8(text));
  EXPECT_FALSE(repair_utf8(text, out));
  EXPECT_EQ(out, text);
}

TEST(Utf8RepairTest, OutIsReplaced) {
  std::string out = "left over";
  EXPECT_FALSE(repair_utf8("new", out));
  EXPECT_EQ(out, "new");
  EXPECT_FALSE(repair_utf8("", out));
  EXPECT_EQ(out, "");
}

TEST(OneLineTest, RunsOfWhiteSpaceBecomeOneSpaceAndNoneAtTheEnds) {
  EXPECT_EQ(one_line("could not connect to server\n\tIs the server running on host \"db\"?\r\n"),
            "could not connect to server Is the server running on host \"db\"?");
  EXPECT_EQ(one_line("  a  \t b\n"), "a b");
  EXPECT_EQ(one_line("one"), "one");
  EXPECT_EQ(one_line(" \n\t "), "");
  EXPECT_EQ(one_line(""), "");
  EXPECT_EQ(one_line(std::string_view("a\vb\0c", 5)), std::string("a\vb\0c", 5)) << "other bytes are kept";
}

}  // namespace
}  // namespace nudge
