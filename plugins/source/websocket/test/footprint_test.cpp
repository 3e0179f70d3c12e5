// What an idle connection costs the server's heap: issue 17's target is at
// most 1 KiB of RSS per idle WebSocket at 10,000 connections (bench/run
// idle). These tests hold the part that is ours — the session and what it
// allocates — to a budget, so a field or an allocation added for every
// connection shows here rather than in the next benchmark run.
#include <gtest/gtest.h>

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "session_harness.hpp"

namespace nudge::plugins::websocket::testing {
namespace {

using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kOwnAllocator = true;  // the sanitizer's malloc: mallinfo2 says nothing
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kOwnAllocator = true;
#else
constexpr bool kOwnAllocator = false;
#endif
#else
constexpr bool kOwnAllocator = false;
#endif

/// Bytes of the heap in use (chunks handed out, with malloc's own header).
std::size_t heap_in_use() { return mallinfo2().uordblks; }

/// Opens `count` native clients as bench/run idle does (nudge-bench: a
/// hello with a 17-character name, a join, rooms of 10) and leaves them idle.
void open_idle_clients(SessionHarness& h, std::size_t first, std::size_t count) {
  for (std::size_t i = first; i < first + count; ++i) {
    const auto c = h.connect("192.0.2.1");
    ASSERT_TRUE(c);
    const std::string name = "b" + std::to_string(3'000'000'000u + i) + "-" + std::to_string(10'000 + i);
    const std::string room = "p0-" + std::to_string(i / 10);
    h.send(*c, SessionHarness::upgrade_request("/ws") +
                   SessionHarness::client_frame(Opcode::text, R"({"type":"hello","name":")" + name + R"("})") +
                   SessionHarness::client_frame(Opcode::text, R"({"type":"join","room":")" + room + R"("})"));
  }
  h.run();
  for (std::size_t i = first; i < first + count; ++i) {
    h.read(i);
    ASSERT_TRUE(h.client(i).received.starts_with("HTTP/1.1 101")) << h.client(i).received;
    ASSERT_NE(h.client(i).received.find("joined"), std::string::npos) << h.client(i).received;
    // The test's own copy of what was received is not the server's.
    std::string().swap(h.client(i).received);
  }
  h.run();
}

// Per idle native connection (plain TCP, in one room, named by hello), what
// the heap holds for it (x86-64, glibc 2.36, libstdc++ 12, Boost 1.81; malloc
// chunks, header included):
//   the session and its shared_ptr control block (make_shared)   496 B
//   its read wait (the handler in an operation of its own size)   224 B
//   Asio's epoll registration of its socket (descriptor_state)    176 B
//   its room name in its own set of rooms (a std::set node)        80 B
//   its places in the hub's set of sessions and in its room's      64 B
//   its name, when longer than 15 characters                       32 B
//   hash buckets of those sets (amortised)                        ~16 B
// measured 1,060 B in all (1,536 B before the busy part, with a session of
// 832 B). The budget leaves 4% for a different allocator or library: one
// more allocation per connection, or a field of 48 bytes, fails it.
// bench/run idle counts RSS at 10,000 connections instead (malloc's
// fragmentation, the fanout's share of a room); issue 17's target there is
// 1,024 B.
constexpr std::size_t kIdleHeapBudget = 1100;

// The session object itself: 472 bytes (libstdc++, x86-64). What an idle
// connection needs only; what a busy one needs goes in its busy part.
static_assert(sizeof(void*) != 8 || sizeof(WsStreamSession<PlainStream>) <= 480,
              "an idle connection's session grew: does the new field belong in WsStreamSession::Busy?");

TEST(Footprint, AnIdleNativeConnectionHoldsNoMoreThanItsBudgetOfHeap) {
  if (kOwnAllocator) GTEST_SKIP() << "a sanitizer's allocator: the heap is not glibc's";
  constexpr std::size_t kWarmUp = 50;
  constexpr std::size_t kClients = 300;
  // One address, as nudge-bench's few: its limits off.
  SessionHarness h({{"max_connections_per_address", std::int64_t{0}},
                    {"max_sockets_per_address", std::int64_t{0}},
                    {"connection_rate_per_address", 0.0},
                    {"http_request_rate_per_address", 0.0},
                    {"sender_rate_limit_per_second", 0.0},
                    {"max_rooms_per_address", std::int64_t{0}}});
  h.reserve_clients(kWarmUp + kClients);
  // The first clients grow what every connection shares (the hub's tables,
  // the loop's free lists): not counted.
  open_idle_clients(h, 0, kWarmUp);
  malloc_trim(0);
  const std::size_t before = heap_in_use();
  open_idle_clients(h, kWarmUp, kClients);
  // The sweep lets the busy parts of connections at rest go (a second on,
  // their rate-limit buckets are full again), as it does every 250 ms.
  h.sweep(std::chrono::steady_clock::now() + 1s);
  const std::size_t after = heap_in_use();
  for (WsSession* session : h.hub().sessions)
    EXPECT_FALSE(dynamic_cast<WsStreamSession<PlainStream>&>(*session).holds_busy_state());
  ASSERT_EQ(h.hub().sessions.size(), kWarmUp + kClients);
  const double per_connection = static_cast<double>(after - before) / kClients;
  std::printf("heap per idle native connection: %.0f B (sizeof session %zu)\n", per_connection,
              sizeof(WsStreamSession<PlainStream>));
  EXPECT_LE(per_connection, static_cast<double>(kIdleHeapBudget));
}

WsStreamSession<PlainStream>& session_of(SessionHarness& h) {
  EXPECT_EQ(h.hub().sessions.size(), 1u);
  return dynamic_cast<WsStreamSession<PlainStream>&>(**h.hub().sessions.begin());
}

std::string text_frame(std::string_view json) { return SessionHarness::client_frame(Opcode::text, json); }

TEST(Footprint, AConnectionLetGoOfItsBusyPartGoesOnAsIfItHadKeptIt) {
  SessionHarness h;
  const auto c = h.connect();
  ASSERT_TRUE(c);
  h.send(*c, SessionHarness::upgrade_request("/ws") + text_frame(R"({"type":"join","room":"a"})"));
  h.read(*c);
  ASSERT_NE(h.client(*c).received.find(R"("type":"joined","room":"a")"), std::string::npos);
  auto& session = session_of(h);
  const auto written = session.frames_written_ever();
  EXPECT_GT(written, 0u);
  h.sweep(std::chrono::steady_clock::now() + 1s);
  EXPECT_FALSE(session.holds_busy_state());
  // Counted on from where the released queue stopped: history's accounting
  // compares these counts, and a restart at zero would hold its bytes forever.
  EXPECT_EQ(session.frames_written_ever(), written);
  EXPECT_EQ(session.frames_queued_ever(), written);

  // Half a frame is kept through a sweep; the rest completes it.
  const std::string join = text_frame(R"({"type":"join","room":"b"})");
  h.send(*c, join.substr(0, 5));
  h.sweep(std::chrono::steady_clock::now() + 1s);
  EXPECT_TRUE(session.holds_busy_state()) << "a frame part read is kept";
  h.send(*c, join.substr(5));
  h.read(*c);
  EXPECT_NE(h.client(*c).received.find(R"("type":"joined","room":"b")"), std::string::npos);
  EXPECT_EQ(session.frames_written_ever(), written + 1);
  EXPECT_EQ(session.history_held(), 0u);
}

TEST(Footprint, AConnectionOffItsRateLimitBurstKeepsItsBucketThroughTheSweep) {
  // A bucket is let go only when full (what a new one is): letting go of a
  // spent one would hand the client a fresh burst every 250 ms.
  SessionHarness h({{"rate_limit_per_second", 0.01},
                    {"rate_limit_burst", std::int64_t{3}},
                    {"rate_limit_strikes", std::int64_t{100}},
                    {"sender_rate_limit_per_second", 0.0}});
  const auto c = h.connect();
  ASSERT_TRUE(c);
  std::string joins;
  for (int i = 0; i < 3; ++i) joins += text_frame(R"({"type":"join","room":"r)" + std::to_string(i) + R"("})");
  h.send(*c, SessionHarness::upgrade_request("/ws") + joins);
  h.read(*c);
  h.sweep(std::chrono::steady_clock::now() + 1s);
  EXPECT_TRUE(session_of(h).holds_busy_state());
  const auto before = h.hub().frames_rate_limited.value();
  h.send(*c, text_frame(R"({"type":"join","room":"r9"})"));
  h.read(*c);
  EXPECT_EQ(h.hub().frames_rate_limited.value(), before + 1) << "the burst spent before the sweep stays spent";
}

}  // namespace
}  // namespace nudge::plugins::websocket::testing
