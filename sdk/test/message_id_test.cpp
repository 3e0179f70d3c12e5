#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_set>
#include <vector>

#include "nudge/sdk/message.hpp"

namespace nudge {
namespace {

TEST(MessageId, MillionIdsOnSeveralThreadsAreUniqueAndOrderedPerThread) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250'000;
  std::vector<std::vector<MessageId>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      made[t].reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(MessageId::generate());
    });
  }
  for (auto& th : threads) th.join();

  std::vector<MessageId> all;
  for (const auto& ids : made) {
    // Within one thread, each id is greater than the one before: time-ordered.
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
    all.insert(all.end(), ids.begin(), ids.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "duplicate id";
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(MessageId, CarriesWallClockMillisecondsAndSortsByTime) {
  using namespace std::chrono;
  const auto before = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  const auto first = MessageId::generate();
  std::this_thread::sleep_for(milliseconds(3));
  const auto second = MessageId::generate();
  const auto after = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  EXPECT_GE(first.unix_ms(), before);
  EXPECT_LE(second.unix_ms(), after + 1);
  EXPECT_LT(first.unix_ms(), second.unix_ms());
  EXPECT_LT(first, second);
}

TEST(MessageId, IsAVersion7RfcVariantUuid) {
  const auto id = MessageId::generate();
  EXPECT_EQ(id.bytes()[6] >> 4, 7);
  EXPECT_EQ(id.bytes()[8] >> 6, 0b10);
  const std::string text = id.to_string();
  ASSERT_EQ(text.size(), 36u);
  EXPECT_EQ(text[14], '7');
}

TEST(MessageId, TextRoundTrips) {
  const auto id = MessageId::generate();
  const auto parsed = MessageId::parse(id.to_string());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, id);
}

TEST(MessageId, ParseRejectsMalformedText) {
  EXPECT_FALSE(MessageId::parse(""));
  EXPECT_FALSE(MessageId::parse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5"));   // short
  EXPECT_FALSE(MessageId::parse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g"));  // not hex
  EXPECT_FALSE(MessageId::parse("0190a1b2xc3d4-7e5f-8a9b-0c1d2e3f4a5b"));  // no dash
  EXPECT_TRUE(MessageId::parse("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"));   // upper case ok
}

}  // namespace
}  // namespace nudge
