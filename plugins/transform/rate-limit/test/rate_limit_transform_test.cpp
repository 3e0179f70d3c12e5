#include "rate_limit_transform.hpp"

#include <gtest/gtest.h>

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

TEST(RateLimitTransform, PassesTheSameMessageOn) {
  Harness h({});
  auto m = from("alice");
  std::optional<Verdict> verdict;
  h.limit.process(m, [&](Verdict v) { verdict = std::move(v); });
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->message, m);
  EXPECT_FALSE(testing::config_errors(RateLimitTransform::schema(), {{"messages_per_second", 0.0}}).empty());
}

}  // namespace
}  // namespace nudge::plugins::rate_limit
