#include "peer_limits.hpp"

#include <gtest/gtest.h>

#include "trusted_proxies.hpp"

namespace nudge::plugins::websocket {
namespace {

using namespace std::chrono_literals;
using Refusal = PeerTable::Refusal;
const PeerTable::Clock::time_point t0 = PeerTable::Clock::time_point{} + 1h;

boost::asio::ip::address ip(const char* text) { return boost::asio::ip::make_address(text); }

TEST(PeerKey, IPv4AsIsIPv6ByItsSlash64) {
  EXPECT_EQ(peer_key(ip("203.0.113.7")), "203.0.113.7");
  EXPECT_EQ(peer_key(ip("::ffff:203.0.113.7")), "203.0.113.7") << "a mapped address is its IPv4 address";
  EXPECT_EQ(peer_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), "2001:db8:1:2::/64");
  EXPECT_EQ(peer_key(ip("2001:db8:1:2::1")), peer_key(ip("2001:db8:1:2:ffff::9")))
      << "one host's /64 is one peer, however many addresses it takes";
  EXPECT_NE(peer_key(ip("2001:db8:1:2::1")), peer_key(ip("2001:db8:1:3::1")));
}

PeerTable::Limits limits() {
  PeerTable::Limits l;
  l.sockets_per_peer = 3;
  l.clients_per_peer = 2;
  l.connects_per_second = 10;
  l.connect_burst = 5;
  l.messages_per_second = 100;
  l.message_burst = 4;
  l.max_peers = 4;
  return l;
}

TEST(PeerTable, SocketsPerPeerAreCountedFromOpenToClose) {
  PeerTable table(limits());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(table.open_socket("a", t0), Refusal::none);
  EXPECT_EQ(table.open_socket("a", t0), Refusal::too_many_sockets);
  EXPECT_EQ(table.open_socket("b", t0), Refusal::none) << "another peer has its own count";
  table.close_socket("a");
  EXPECT_EQ(table.open_socket("a", t0), Refusal::none);
  EXPECT_EQ(table.sockets("a"), 3u);
}

TEST(PeerTable, ConnectionsFasterThanTheRateAreRefusedAndReconnectingEarnsNothing) {
  PeerTable table(limits());
  int opened = 0;
  for (int i = 0; i < 20; ++i) {
    if (table.open_socket("a", t0) == Refusal::none) {
      ++opened;
      table.close_socket("a");  // close and reconnect at once
    }
  }
  EXPECT_EQ(opened, 5) << "the burst, then nothing until the bucket refills";
  EXPECT_EQ(table.open_socket("a", t0 + 100ms), Refusal::none) << "one more after 1/10 s";
}

TEST(PeerTable, ClientsPerPeerAndMessagesAcrossItsConnections) {
  PeerTable table(limits());
  EXPECT_TRUE(table.open_client("a", t0));
  EXPECT_TRUE(table.open_client("a", t0));
  EXPECT_FALSE(table.open_client("a", t0));
  table.close_client("a");
  EXPECT_TRUE(table.open_client("a", t0));
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += table.allow_message("a", t0) ? 1 : 0;
  EXPECT_EQ(allowed, 4) << "the sender's burst, whichever connection sends";
}

TEST(PeerTable, AClientThroughAProxySpendsAConnection) {
  auto l = limits();
  l.connect_burst = 1;
  PeerTable table(l);
  EXPECT_TRUE(table.open_client("c", t0, /*as_connect=*/true));
  table.close_client("c");
  EXPECT_FALSE(table.open_client("c", t0, /*as_connect=*/true));
}

TEST(PeerTable, TheTableIsBoundedAndForgetsOnlyWhatHoldsNothing) {
  PeerTable table(limits());
  for (const char* peer : {"a", "b", "c", "d"}) EXPECT_EQ(table.open_socket(peer, t0), Refusal::none);
  EXPECT_EQ(table.open_socket("e", t0), Refusal::table_full) << "max_peers tracked, each holding a socket";
  EXPECT_EQ(table.size(), 4u);
  for (const char* peer : {"a", "b", "c", "d"}) table.close_socket(peer);
  EXPECT_EQ(table.open_socket("e", t0), Refusal::table_full) << "their connection buckets have not refilled yet";
  EXPECT_EQ(table.open_socket("e", t0 + 1s), Refusal::none) << "refilled peers are forgotten to make room";
  table.forget_idle(t0 + 1h);
  EXPECT_EQ(table.size(), 1u) << "e holds a socket";
}

TEST(PeerTable, NewLimitsApplyToPeersAlreadyTracked) {
  PeerTable table(limits());
  EXPECT_EQ(table.open_socket("a", t0), Refusal::none);
  auto l = limits();
  l.sockets_per_peer = 1;
  table.set_limits(l, t0);
  EXPECT_EQ(table.open_socket("a", t0), Refusal::too_many_sockets);
}

TEST(TrustedProxies, ParsesAddressesAndNetworks) {
  std::string error;
  const auto proxies = TrustedProxies::parse({"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"}, error);
  ASSERT_TRUE(proxies) << error;
  EXPECT_TRUE(proxies->contains(ip("127.0.0.1")));
  EXPECT_TRUE(proxies->contains(ip("::ffff:127.0.0.1")));
  EXPECT_FALSE(proxies->contains(ip("127.0.0.2")));
  EXPECT_TRUE(proxies->contains(ip("10.200.3.4")));
  EXPECT_FALSE(proxies->contains(ip("11.0.0.1")));
  EXPECT_TRUE(proxies->contains(ip("::1")));
  EXPECT_TRUE(proxies->contains(ip("fd12:3456::1")));
  EXPECT_FALSE(proxies->contains(ip("fe80::1")));
  for (const char* bad : {"localhost", "10.0.0.0/33", "1.2.3", "::1/200", ""}) {
    EXPECT_FALSE(TrustedProxies::parse({bad}, error)) << bad;
    EXPECT_NE(error.find("is not an IP address or network"), std::string::npos);
  }
}

TEST(TrustedProxies, TheClientIsTheRightMostAddressNotAProxy) {
  std::string error;
  const auto proxies = TrustedProxies::parse({"127.0.0.1", "10.0.0.0/8"}, error);
  ASSERT_TRUE(proxies);
  EXPECT_EQ(proxies->client_of("203.0.113.9"), ip("203.0.113.9"));
  // A client may send its own X-Forwarded-For: only what our proxies appended counts.
  EXPECT_EQ(proxies->client_of("1.1.1.1, 203.0.113.9"), ip("203.0.113.9"));
  EXPECT_EQ(proxies->client_of("1.1.1.1, 203.0.113.9, 10.1.1.1"), ip("203.0.113.9")) << "past a chain of our proxies";
  EXPECT_EQ(proxies->client_of(" 2001:db8::5 "), ip("2001:db8::5"));
  EXPECT_EQ(proxies->client_of("203.0.113.9:5123"), ip("203.0.113.9")) << "with the port some proxies append";
  EXPECT_EQ(proxies->client_of("[2001:db8::5]:5123"), ip("2001:db8::5"));
  EXPECT_FALSE(proxies->client_of(""));
  EXPECT_FALSE(proxies->client_of("10.0.0.1, 127.0.0.1")) << "only proxies: nobody";
  EXPECT_FALSE(proxies->client_of("1.1.1.1, not-an-address")) << "garbage past our proxy: nothing is trusted";
}

TEST(TrustedProxies, SeveralForwardedForLinesAreOneListReadFromTheLastLine) {
  // Found from outside: with two lines, the first (the client's own) was
  // read; behind HAProxy, which appends a line of its own, one client
  // rotated it past max_connections_per_address and locked others out.
  std::string error;
  const auto proxies = TrustedProxies::parse({"127.0.0.1"}, error);
  ASSERT_TRUE(proxies);
  EXPECT_EQ(proxies->client_of(std::vector<std::string_view>{"198.51.100.7", "203.0.113.9"}), ip("203.0.113.9"));
  EXPECT_EQ(proxies->client_of(std::vector<std::string_view>{"198.51.100.7, 1.1.1.1", "203.0.113.9, 127.0.0.1"}),
            ip("203.0.113.9"));
  EXPECT_EQ(proxies->client_of(std::vector<std::string_view>{"203.0.113.9"}), ip("203.0.113.9"));
  EXPECT_FALSE(proxies->client_of(std::vector<std::string_view>{}));
}

}  // namespace
}  // namespace nudge::plugins::websocket
