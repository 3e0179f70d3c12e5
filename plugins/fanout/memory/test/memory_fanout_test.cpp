#include "memory_fanout.hpp"

#include <gtest/gtest.h>

#include "nudge/sdk/testing.hpp"

namespace nudge::plugins {
namespace {

struct Received final : FanoutReceiver {
  std::vector<MessagePtr> messages;
  void on_fanout_message(MessagePtr m) override { messages.push_back(std::move(m)); }
};

MessagePtr message(const std::string& room, const std::string& text) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = room;
  m->payload = text;
  return m;
}

std::vector<std::string> texts(const std::vector<MessagePtr>& v) {
  std::vector<std::string> out;
  for (const auto& m : v) out.push_back(m->payload);
  return out;
}

std::vector<MessagePtr> read_recent(boost::asio::io_context& io, MemoryFanout& fanout, const std::string& room,
                                    std::size_t limit) {
  std::optional<std::vector<MessagePtr>> answer;
  HistoryQuery query;
  query.room = room;
  query.limit = limit;
  fanout.read_recent(query, [&](Status s, std::vector<MessagePtr> m) {
    EXPECT_TRUE(s.ok());
    answer = std::move(m);
  });
  EXPECT_FALSE(answer) << "answered inline";
  EXPECT_TRUE(testing::run_until(io, [&] { return answer.has_value(); }, std::chrono::seconds(5)));
  return answer.value_or(std::vector<MessagePtr>{});
}

TEST(MemoryFanout, HandsBackWhatItPublishesInOrder) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema()), context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  for (int i = 0; i < 5; ++i) fanout.publish(message("r", std::to_string(i)));
  ASSERT_TRUE(testing::run_until(io, [&] { return received.messages.size() == 5; }, std::chrono::seconds(5)));
  EXPECT_EQ(texts(received.messages), (std::vector<std::string>{"0", "1", "2", "3", "4"}));
}

TEST(MemoryFanout, KeepsEachRoomsLastMessagesForCatchingUp) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"recent_messages", std::int64_t{3}}}), context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  ASSERT_TRUE(fanout.supports_recent());
  for (int i = 0; i < 5; ++i) fanout.publish(message("a", "a" + std::to_string(i)));
  fanout.publish(message("b", "b0"));
  EXPECT_EQ(texts(read_recent(io, fanout, "a", 10)), (std::vector<std::string>{"a2", "a3", "a4"}));
  EXPECT_EQ(texts(read_recent(io, fanout, "a", 2)), (std::vector<std::string>{"a3", "a4"}));
  EXPECT_EQ(texts(read_recent(io, fanout, "b", 10)), (std::vector<std::string>{"b0"}));
  EXPECT_TRUE(read_recent(io, fanout, "nobody", 10).empty());
}

TEST(MemoryFanout, ZeroRecentMessagesKeepsNoWindow) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"recent_messages", std::int64_t{0}}}), context);
  EXPECT_FALSE(fanout.supports_recent());
}

}  // namespace
}  // namespace nudge::plugins
