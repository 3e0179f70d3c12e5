#include "filter_transform.hpp"

#include <gtest/gtest.h>

#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::filter {
namespace {

MessagePtr message(std::string sender, std::string room, std::string text) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->sender = std::move(sender);
  m->room = std::move(room);
  m->payload = std::move(text);
  return m;
}

struct Harness {
  explicit Harness(std::map<std::string, ConfigValue> values)
      : context(io), filter(testing::make_config(FilterTransform::schema(), values), context) {}
  Verdict decide(MessagePtr m) {
    std::optional<Verdict> verdict;
    filter.process(std::move(m), [&](Verdict v) { verdict = std::move(v); });
    EXPECT_TRUE(verdict) << "a synchronous filter answers at once";
    return verdict.value_or(Verdict::drop());
  }
  boost::asio::io_context io;
  testing::TestContext context;
  FilterTransform filter;
};

using Strings = std::vector<std::string>;

TEST(FilterTransform, PassesWhatNoRuleCatchesUnchanged) {
  Harness h({{"blocked_words", Strings{"spam"}}, {"max_length", std::int64_t{50}}});
  auto m = message("alice", "general", "hello, spammers are not spam-free");  // "spammers" is another word
  const auto v = h.decide(m);
  EXPECT_EQ(v.action, Verdict::Action::reject) << "'spam' in 'spam-free' is a whole word";
  auto clean = message("alice", "general", "hello, spammers");
  const auto passed = h.decide(clean);
  ASSERT_EQ(passed.action, Verdict::Action::pass);
  EXPECT_EQ(passed.message, clean) << "unchanged: the same message, not a copy";
}

TEST(FilterTransform, RejectsWithAReasonTheSenderCanRead) {
  Harness h({{"blocked_words", Strings{"Scam"}}, {"max_length", std::int64_t{10}}, {"rooms", Strings{"general"}}});
  auto v = h.decide(message("alice", "general", "a SCAM!"));
  ASSERT_EQ(v.action, Verdict::Action::reject);
  EXPECT_EQ(v.reason, "the word 'scam' is not allowed");
  v = h.decide(message("alice", "general", "twelve chars"));
  EXPECT_EQ(v.reason, "messages are limited to 10 characters");
  EXPECT_EQ(h.decide(message("alice", "general", "ééééééééé")).action, Verdict::Action::pass)
      << "9 characters, 18 bytes: the limit counts characters";
  v = h.decide(message("alice", "random", "hi"));
  EXPECT_EQ(v.reason, "room 'random' does not take messages here");
}

TEST(FilterTransform, DropsBlockedSendersQuietlyOrRejectsThemWhenAsked) {
  Harness quiet({{"blocked_senders", Strings{"mallory"}}});
  EXPECT_EQ(quiet.decide(message("mallory", "general", "hi")).action, Verdict::Action::drop);
  EXPECT_EQ(quiet.decide(message("alice", "general", "hi")).action, Verdict::Action::pass);
  Harness loud({{"blocked_senders", Strings{"mallory"}}, {"blocked_senders_action", std::string("reject")}});
  EXPECT_EQ(loud.decide(message("mallory", "general", "hi")).reason, "messages from 'mallory' are not accepted here");
}

TEST(FilterTransform, MaskingChangesACopyAndKeepsTheId) {
  Harness h({{"blocked_words", Strings{"darn", "crème"}}, {"blocked_words_action", std::string("mask")}});
  auto m = message("alice", "general", "Darn, the crème is darn good");
  const auto v = h.decide(m);
  ASSERT_EQ(v.action, Verdict::Action::pass);
  EXPECT_EQ(v.message->payload, "****, the ***** is **** good");
  EXPECT_EQ(v.message->id, m->id);
  EXPECT_EQ(m->payload, "Darn, the crème is darn good") << "the original is shared and stays as it was";
}

TEST(FilterTransform, ChecksActionsInTheSchema) {
  const auto errors =
      testing::config_errors(FilterTransform::schema(), {{"blocked_words_action", std::string("shout")},
                                                         {"blocked_senders_action", std::string("mask")},
                                                         {"max_length", std::int64_t{-1}}});
  EXPECT_EQ(errors.size(), 3u);
}

TEST(FilterTransform, ReconfigureAppliesTheNewRulesToTheNextMessage) {
  Harness h({{"blocked_words", Strings{"spam"}}});
  EXPECT_EQ(h.decide(message("alice", "general", "buy spam")).action, Verdict::Action::reject);
  EXPECT_EQ(h.decide(message("alice", "general", "a scam")).action, Verdict::Action::pass);

  for (const auto& key :
       {"blocked_senders", "blocked_senders_action", "rooms", "max_length", "blocked_words", "blocked_words_action"})
    EXPECT_TRUE(FilterTransform::schema().find(key)->live) << key << " is declared live";

  const auto next = testing::make_config(FilterTransform::schema(), {{"blocked_words", Strings{"Scam"}},
                                                                     {"blocked_words_action", std::string("mask")},
                                                                     {"blocked_senders", Strings{"mallory"}},
                                                                     {"max_length", std::int64_t{20}}});
  ASSERT_TRUE(h.filter.reconfigure(next).ok());
  EXPECT_EQ(h.decide(message("alice", "general", "buy spam")).action, Verdict::Action::pass)
      << "the old word list no longer applies";
  const auto masked = h.decide(message("alice", "general", "a scam"));
  ASSERT_EQ(masked.action, Verdict::Action::pass);
  EXPECT_EQ(masked.message->payload, "a ****") << "the new word list and action apply";
  EXPECT_EQ(h.decide(message("mallory", "general", "hi")).action, Verdict::Action::drop);
  EXPECT_EQ(h.decide(message("alice", "general", "twenty-one characters")).reason,
            "messages are limited to 20 characters");
  EXPECT_EQ(h.context.metrics().value("masked"), 1u) << "counters carry on across a reload";
}

}  // namespace
}  // namespace nudge::plugins::filter
