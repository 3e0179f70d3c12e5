#include "memory_fanout.hpp"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <optional>

#include <gtest/gtest.h>

#include "nudge/sdk/testing.hpp"

namespace nudge::plugins {
namespace {

struct Received final : FanoutReceiver {
  std::vector<MessagePtr> messages;
  std::vector<std::pair<std::string, PresenceEvent>> presence;
  void on_fanout_message(MessagePtr m) override { messages.push_back(std::move(m)); }
  void on_presence(std::string_view room, const PresenceEvent& e) override { presence.emplace_back(room, e); }
};

/// Keeps nothing, so only the window holds messages.
struct Counted final : FanoutReceiver {
  std::size_t count = 0;
  void on_fanout_message(MessagePtr) override { ++count; }
};

/// This process's resident set in bytes (Linux), for a measurement only.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

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
  EXPECT_TRUE(testing::run_until(
      io, [&] { return answer.has_value(); }, std::chrono::seconds(5)));
  return answer.value_or(std::vector<MessagePtr>{});
}

TEST(MemoryFanout, HandsBackWhatItPublishesInOrder) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema()), context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  for (int i = 0; i < 5; ++i) fanout.publish(message("r", std::to_string(i)));
  ASSERT_TRUE(testing::run_until(
      io, [&] { return received.messages.size() == 5; }, std::chrono::seconds(5)));
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

TEST(MemoryFanout, AnEphemeralMessageIsDeliveredButNeverKeptForHistory) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"recent_messages", std::int64_t{3}}}), context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  fanout.publish(message("a", "kept"));
  auto typing = std::make_shared<Message>();
  typing->id = MessageId::generate();
  typing->room = "a";
  typing->payload = "typing";
  typing->headers.emplace_back(kEphemeralHeader, "1");
  ASSERT_TRUE(is_ephemeral(*typing));
  fanout.publish(typing);
  ASSERT_TRUE(testing::run_until(
      io, [&] { return received.messages.size() == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(texts(received.messages), (std::vector<std::string>{"kept", "typing"}));
  EXPECT_EQ(texts(read_recent(io, fanout, "a", 10)), (std::vector<std::string>{"kept"}));
}

MessagePtr sized(const std::string& room, std::size_t payload_bytes, char fill = 'x') {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = room;
  m->sender = "someone";
  m->payload.assign(payload_bytes, fill);
  return m;
}

TEST(MemoryFanout, ManyRoomsOfLargeMessagesStayUnderTheByteCap) {
  // As found from outside: 400 fresh rooms x 15 messages of 60 KB (360 MB)
  // took the process from 35 to 414 MB. Here with a 2 MiB cap.
  boost::asio::io_context io;
  testing::TestContext context(io);
  constexpr std::int64_t kCap = 2 * 1024 * 1024;
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"recent_max_bytes", kCap}}), context);
  Counted received;
  ASSERT_TRUE(fanout.start(received).ok());
  constexpr int kRooms = 400, kPerRoom = 15;
  constexpr std::size_t kPayload = 60 * 1000;
  std::size_t most = 0;
  const std::size_t rss_before = resident_bytes();
  for (int r = 0; r < kRooms; ++r) {
    for (int i = 0; i < kPerRoom; ++i) {
      fanout.publish(sized("room-" + std::to_string(r), kPayload));
      most = std::max(most, fanout.recent_bytes());
    }
    io.restart();
    io.poll();  // delivers, so the posted deliveries let go of their messages
  }
  ASSERT_EQ(received.count, static_cast<std::size_t>(kRooms * kPerRoom));
  std::cout << "[ MEASURED ] " << kRooms * kPerRoom * kPayload / 1000000 << " MB published in " << kRooms
            << " rooms: resident set grew by " << (resident_bytes() - std::min(resident_bytes(), rss_before)) / 1024
            << " KiB; the window counts " << fanout.recent_bytes() / 1024 << " KiB (cap " << kCap / 1024 << ")"
            << std::endl;
  EXPECT_LE(most, static_cast<std::size_t>(kCap)) << "the cap holds after every publish, not only at the end";
  EXPECT_GT(fanout.recent_bytes(), static_cast<std::size_t>(kCap) * 9 / 10) << "the cap is used, not emptied";
  EXPECT_EQ(context.metrics().gauge_value("recent_bytes"), static_cast<std::int64_t>(fanout.recent_bytes()));
  // 2 MiB holds 34 messages of 60 KB: the newest room whole, a part of the one before, nothing else.
  EXPECT_EQ(fanout.recent_rooms(), 3u);
  EXPECT_EQ(context.metrics().gauge_value("recent_rooms"), 3);
  EXPECT_EQ(read_recent(io, fanout, "room-399", 100).size(), static_cast<std::size_t>(kPerRoom))
      << "the newest room's window still answers";
  EXPECT_EQ(read_recent(io, fanout, "room-397", 100).size(), 4u) << "the oldest kept room lost its oldest first";
  for (const char* evicted : {"room-0", "room-200", "room-396"})
    EXPECT_TRUE(read_recent(io, fanout, evicted, 100).empty()) << evicted << " was evicted";
  EXPECT_EQ(context.metrics().value("recent_evicted"),
            static_cast<std::uint64_t>(kRooms * kPerRoom - kPerRoom * 2 - 4));
}

TEST(MemoryFanout, EvictsTheLeastRecentlyPublishedRoomFirst) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  // Room for exactly three messages of 10 KB in three rooms.
  const std::size_t three = 3 * (MemoryFanout::entry_bytes(*sized("a", 10000)) + MemoryFanout::room_bytes("a"));
  MemoryFanout fanout(
      testing::make_config(MemoryFanout::schema(), {{"recent_max_bytes", static_cast<std::int64_t>(three)}}), context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  fanout.publish(sized("a", 10000, 'a'));
  fanout.publish(sized("b", 10000, 'b'));
  fanout.publish(sized("c", 10000, 'c'));
  EXPECT_EQ(fanout.recent_bytes(), three);
  EXPECT_EQ(fanout.recent_rooms(), 3u);
  // a was published first but is now the most recent: b goes, whole.
  fanout.publish(sized("a", 1, 'a'));
  EXPECT_TRUE(read_recent(io, fanout, "b", 10).empty()) << "b was the least recently published";
  EXPECT_EQ(read_recent(io, fanout, "a", 10).size(), 2u);
  EXPECT_EQ(read_recent(io, fanout, "c", 10).size(), 1u);
  EXPECT_EQ(fanout.recent_rooms(), 2u) << "an emptied room leaves no residue";
  fanout.publish(sized("d", 10000, 'd'));
  EXPECT_TRUE(read_recent(io, fanout, "c", 10).empty()) << "then c";
  EXPECT_EQ(read_recent(io, fanout, "a", 10).size(), 2u);
  EXPECT_EQ(read_recent(io, fanout, "d", 10).size(), 1u);
  EXPECT_EQ(fanout.recent_rooms(), 2u);
  EXPECT_LE(fanout.recent_bytes(), three);
  EXPECT_EQ(context.metrics().value("recent_evicted"), 2u);
}

TEST(MemoryFanout, AMessageLargerThanTheCapIsNotKept) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"recent_max_bytes", std::int64_t{4096}}}),
                      context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  fanout.publish(sized("small", 10));
  fanout.publish(sized("huge", 10000));
  EXPECT_EQ(fanout.recent_bytes(), 0u);
  EXPECT_EQ(fanout.recent_rooms(), 0u);
  EXPECT_TRUE(read_recent(io, fanout, "huge", 10).empty());
  ASSERT_TRUE(testing::run_until(
      io, [&] { return received.messages.size() == 2; }, std::chrono::seconds(5)))
      << "the bus still delivers it";
}

TEST(MemoryFanout, CountsEveryVariablePartOfAMessage) {
  Message m;
  const std::size_t empty = MemoryFanout::entry_bytes(m);
  EXPECT_GE(empty, sizeof(Message)) << "the Message itself is counted";
  m.payload = std::string(100, 'p');
  m.room = "room";
  m.sender = "sender";
  m.origin = "origin";
  EXPECT_EQ(MemoryFanout::entry_bytes(m), empty + 100 + 4 + 6 + 6);
  const std::size_t without_headers = MemoryFanout::entry_bytes(m);
  m.headers = {{"k", "value"}};
  EXPECT_GT(MemoryFanout::entry_bytes(m), without_headers + 6) << "a header costs more than its text";
  EXPECT_GT(MemoryFanout::room_bytes("lobby"), MemoryFanout::room_bytes("")) << "a room's name is counted";
}

TEST(MemoryFanout, ZeroRecentMessagesKeepsNoWindow) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"recent_messages", std::int64_t{0}}}), context);
  EXPECT_FALSE(fanout.supports_recent());
}

TEST(MemoryFanout, PresenceReportsEachJoinAndLeaveOnceAndListsBoundedWithTheCount) {
  boost::asio::io_context io;
  testing::TestContext context(io);
  MemoryFanout fanout(testing::make_config(MemoryFanout::schema(), {{"max_presence_per_room", std::int64_t{2}}}),
                      context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  ASSERT_TRUE(fanout.supports_presence());
  for (int i = 0; i < 5; ++i) fanout.presence_join("r", {"u" + std::to_string(i), "c" + std::to_string(i), "me"});
  fanout.presence_join("r", {"u0", "c0", "me"});   // known already: no event
  fanout.presence_leave("r", {"u9", "c9", "me"});  // never joined: no event
  fanout.presence_leave("r", {"u1", "c1", "me"});
  EXPECT_TRUE(received.presence.empty()) << "events are posted, never reported inline";
  ASSERT_TRUE(testing::run_until(
      io, [&] { return received.presence.size() == 6; }, std::chrono::seconds(5)));
  testing::run_for(io, std::chrono::milliseconds(20));
  ASSERT_EQ(received.presence.size(), 6u);
  EXPECT_EQ(received.presence.back().second.change, PresenceChange::leave);
  EXPECT_EQ(received.presence.back().second.member, (PresenceMember{"u1", "c1", "me"}));

  std::optional<PresenceList> list;
  fanout.read_presence("r", [&](Status s, PresenceList l) {
    EXPECT_TRUE(s.ok());
    list = std::move(l);
  });
  ASSERT_FALSE(list) << "answered inline";
  ASSERT_TRUE(testing::run_until(
      io, [&] { return list.has_value(); }, std::chrono::seconds(5)));
  EXPECT_EQ(list->total, 4u);
  EXPECT_EQ(list->members.size(), 2u) << "at most max_presence_per_room named";

  for (int i = 0; i < 5; ++i) fanout.presence_leave("r", {"u" + std::to_string(i), "c" + std::to_string(i), "me"});
  EXPECT_EQ(fanout.presence_rooms(), 0u) << "a room left empty is forgotten";
}

}  // namespace
}  // namespace nudge::plugins
