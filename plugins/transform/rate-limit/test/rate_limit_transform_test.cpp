#include "rate_limit_transform.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::rate_limit {
namespace {

using namespace std::chrono_literals;

MessagePtr from(const std::string& sender) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->sender = sender;
  return m;
}

struct Harness {
  explicit Harness(std::map<std::string, ConfigValue> values)
      : context(io), limit(testing::make_config(RateLimitTransform::schema(), values), context) {}
  boost::asio::io_context io;
  testing::TestContext context;
  RateLimitTransform limit;
};

TEST(RateLimitTransform, LetsABurstThroughThenRefillsAtTheRate) {
  Harness h({{"messages_per_second", 2.0}, {"burst", std::int64_t{3}}});
  const auto t0 = RateLimitTransform::Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::pass) << i;
  const auto over = h.limit.decide(from("alice"), t0);
  ASSERT_EQ(over.action, Verdict::Action::reject);
  EXPECT_EQ(over.reason, "too many messages: at most 3 at once and 2 per second; slow down");
  EXPECT_EQ(h.limit.decide(from("bob"), t0).action, Verdict::Action::pass) << "each sender has a bucket";
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 400ms).action, Verdict::Action::reject) << "0.8 of a token";
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 500ms).action, Verdict::Action::pass) << "one token after 0.5 s";
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 10s).action, Verdict::Action::pass);
}

TEST(RateLimitTransform, DropsInsteadWhenAsked) {
  Harness h({{"burst", std::int64_t{1}}, {"action", std::string("drop")}});
  const auto t0 = RateLimitTransform::Clock::now();
  EXPECT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::pass);
  EXPECT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::drop);
}

TEST(RateLimitTransform, ForgetsSendersWhoseBucketRefilledPastMaxSenders) {
  Harness h({{"burst", std::int64_t{1}}, {"messages_per_second", 1.0}, {"max_senders", std::int64_t{2}}});
  const auto t0 = RateLimitTransform::Clock::now();
  h.limit.decide(from("a"), t0);
  h.limit.decide(from("b"), t0);
  h.limit.decide(from("c"), t0 + 5s);  // a and b refilled long ago
  EXPECT_EQ(h.limit.senders_tracked(), 1u);
}

TEST(RateLimitTransform, TheSenderMapNeverOutgrowsMaxSendersAndAnActiveSenderStaysLimited) {
  // 5000 senders in 5 s, one message each: every bucket is still refilling
  // (full again 1 s after its message) when the next newcomer arrives, so
  // none can be forgotten for free. Meanwhile one sender sends 10 a tick.
  Harness h({{"messages_per_second", 1.0}, {"burst", std::int64_t{3}}, {"max_senders", std::int64_t{50}}});
  const auto t0 = RateLimitTransform::Clock::now();
  std::size_t largest = 0;
  int spammer_passed = 0;
  for (int i = 0; i < 5000; ++i) {
    const auto now = t0 + std::chrono::milliseconds(i);
    EXPECT_EQ(h.limit.decide(from("newcomer-" + std::to_string(i)), now).action, Verdict::Action::pass) << i;
    for (int k = 0; k < 10; ++k)
      if (h.limit.decide(from("spammer"), now).action == Verdict::Action::pass) ++spammer_passed;
    largest = std::max(largest, h.limit.senders_tracked());
  }
  EXPECT_LE(largest, 50u);
  EXPECT_EQ(h.context.metrics().gauge_value("senders"), static_cast<std::int64_t>(h.limit.senders_tracked()));
  // Burst 3 plus 1 a second over 4.999 s: 7, never 50000 (were its bucket forgotten, far more).
  EXPECT_EQ(spammer_passed, 7);
  EXPECT_GT(h.context.metrics().value("evicted"), 4000u) << "newcomers made room by forgetting each other";
}

TEST(RateLimitTransform, PastMaxSendersTheBucketNearestToFullIsForgottenFirst) {
  Harness h({{"messages_per_second", 1.0}, {"burst", std::int64_t{5}}, {"max_senders", std::int64_t{2}}});
  const auto t0 = RateLimitTransform::Clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::pass);
  ASSERT_EQ(h.limit.decide(from("bob"), t0).action, Verdict::Action::pass);  // full again at t0 + 1 s
  ASSERT_EQ(h.limit.decide(from("carol"), t0 + 500ms).action, Verdict::Action::pass);
  EXPECT_EQ(h.limit.senders_tracked(), 2u);
  EXPECT_EQ(h.context.metrics().value("evicted"), 1u) << "bob, whose bucket was not yet full";
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 500ms).action, Verdict::Action::reject) << "alice kept her empty bucket";
  // Once bob's bucket would have refilled, forgetting it costs nothing: not counted.
  ASSERT_EQ(h.limit.decide(from("dave"), t0 + 2s).action, Verdict::Action::pass);
  EXPECT_EQ(h.context.metrics().value("evicted"), 1u) << "carol's bucket was full again at t0 + 1.5 s";
  EXPECT_EQ(h.limit.senders_tracked(), 2u);
}

TEST(RateLimitTransform, ALowerMaxSendersOnReloadShrinksTheMapAtOnce) {
  Harness h({{"messages_per_second", 1.0}, {"burst", std::int64_t{2}}, {"max_senders", std::int64_t{100}}});
  const auto t0 = RateLimitTransform::Clock::now();
  for (int i = 0; i < 100; ++i) h.limit.decide(from("s" + std::to_string(i)), t0);
  ASSERT_EQ(h.limit.decide(from("s7"), t0).action, Verdict::Action::pass);  // its second: empty
  ASSERT_EQ(h.limit.senders_tracked(), 100u);
  const auto fewer = testing::make_config(
      RateLimitTransform::schema(),
      {{"messages_per_second", 1.0}, {"burst", std::int64_t{2}}, {"max_senders", std::int64_t{10}}});
  ASSERT_TRUE(h.limit.reconfigure(fewer, t0).ok());
  EXPECT_EQ(h.limit.senders_tracked(), 10u);
  EXPECT_EQ(h.limit.decide(from("s7"), t0).action, Verdict::Action::reject) << "the emptiest bucket is kept";
}

TEST(RateLimitTransform, PassesTheSameMessageOn) {
  Harness h({});
  auto m = from("alice");
  std::optional<Verdict> verdict;
  h.limit.process(m, [&](Verdict v) { verdict = std::move(v); });
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->message, m);
  EXPECT_FALSE(testing::config_errors(RateLimitTransform::schema(), {{"messages_per_second", 0.0}}).empty());
}

TEST(RateLimitTransform, ReconfigureAppliesTheNewRateAndCapsTokensToTheNewBurst) {
  Harness h({{"messages_per_second", 1.0}, {"burst", std::int64_t{10}}});
  for (const auto& key : {"messages_per_second", "burst", "max_senders", "action"})
    EXPECT_TRUE(RateLimitTransform::schema().find(key)->live) << key << " is declared live";
  const auto t0 = RateLimitTransform::Clock::now();
  // alice spends 2 of 10 tokens (8 left); bob spends all 10.
  for (int i = 0; i < 2; ++i) ASSERT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::pass);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(h.limit.decide(from("bob"), t0).action, Verdict::Action::pass);
  ASSERT_EQ(h.limit.decide(from("bob"), t0).action, Verdict::Action::reject);

  const auto next =
      testing::make_config(RateLimitTransform::schema(), {{"messages_per_second", 4.0}, {"burst", std::int64_t{3}}});
  ASSERT_TRUE(h.limit.reconfigure(next, t0).ok());
  EXPECT_EQ(h.limit.senders_tracked(), 2u) << "buckets are kept";

  // alice's 8 tokens are capped to the new burst of 3.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::pass) << i;
  const auto over = h.limit.decide(from("alice"), t0);
  ASSERT_EQ(over.action, Verdict::Action::reject) << "8 tokens capped to 3";
  EXPECT_EQ(over.reason, "too many messages: at most 3 at once and 4 per second; slow down");
  // bob keeps his empty bucket (a reload is no reset), then refills at 4/s, not 1/s.
  EXPECT_EQ(h.limit.decide(from("bob"), t0 + 100ms).action, Verdict::Action::reject) << "0.4 of a token";
  EXPECT_EQ(h.limit.decide(from("bob"), t0 + 300ms).action, Verdict::Action::pass) << "1.2 tokens at 4/s (0.3 at 1/s)";
  // Refill never passes the new burst.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.limit.decide(from("bob"), t0 + 60s).action, Verdict::Action::pass) << i;
  EXPECT_EQ(h.limit.decide(from("bob"), t0 + 60s).action, Verdict::Action::reject);
}

TEST(RateLimitTransform, ReconfigureKeepsTokensEarnedAtTheOldRate) {
  Harness h({{"messages_per_second", 1.0}, {"burst", std::int64_t{5}}});
  const auto t0 = RateLimitTransform::Clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(h.limit.decide(from("alice"), t0).action, Verdict::Action::pass);
  // 2 s at 1/s earned 2 tokens before the rate drops to 0.1/s.
  const auto slow = testing::make_config(RateLimitTransform::schema(), {{"messages_per_second", 0.1}});
  ASSERT_TRUE(h.limit.reconfigure(slow, t0 + 2s).ok());
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 2s).action, Verdict::Action::pass);
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 2s).action, Verdict::Action::pass);
  EXPECT_EQ(h.limit.decide(from("alice"), t0 + 5s).action, Verdict::Action::reject) << "0.3 of a token at 0.1/s";
}

}  // namespace
}  // namespace nudge::plugins::rate_limit
