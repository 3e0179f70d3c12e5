#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

#include "token_bucket.hpp"

namespace nudge::plugins::websocket {

/// The key a client's address is counted under: an IPv4 address as is, an
/// IPv6 address by the /64 network it is in (a subscriber line is given a
/// whole /64, so counting single IPv6 addresses would hand one host 2^64
/// identities). IPv4-mapped IPv6 addresses count as their IPv4 address.
std::string peer_key(const boost::asio::ip::address& address);

/// Limits that follow a client across its connections, keyed by peer: an
/// address (peer_key) for sockets, clients and the rate of new connections,
/// and an address or an authenticated sender for the rate of messages.
/// Without this a client could shed every per-connection limit by
/// reconnecting, and one address could take every file descriptor.
///
/// An entry lives while its peer holds a socket or a client, or one of its
/// buckets has not refilled; a refilled bucket behaves exactly as a new one,
/// so forgetting the entry changes nothing. The table holds at most
/// `max_peers` entries: past that, new peers are refused until some are
/// forgotten. Not thread-safe: the source's event loop owns it.
class PeerTable {
 public:
  using Clock = TokenBucket::Clock;

  struct Limits {
    std::size_t sockets_per_peer = 0;  ///< TCP connections open at once; 0: no limit
    std::size_t clients_per_peer = 0;  ///< WebSocket and Socket.IO clients at once; 0: no limit
    double connects_per_second = 0;    ///< new connections; 0: no limit
    double connect_burst = 1;
    double messages_per_second = 0;  ///< messages of all the peer's connections; 0: no limit
    double message_burst = 1;
    double requests_per_second = 0;  ///< HTTP requests of all the peer's connections; 0: no limit
    double request_burst = 1;
    std::size_t max_peers = 65536;
  };

  enum class Refusal {
    none,
    too_many_sockets,     ///< sockets_per_peer open already
    connecting_too_fast,  ///< connects_per_second spent
    table_full,           ///< max_peers tracked, none forgettable
  };

  explicit PeerTable(Limits limits) : limits_(limits) {}

  /// Counts a new TCP connection of `peer`, or says why it is refused.
  Refusal open_socket(const std::string& peer, Clock::time_point now);
  void close_socket(const std::string& peer) noexcept;
  /// Counts a client (native WebSocket or Socket.IO session) of `peer`;
  /// false when clients_per_peer are open already, or (`as_connect`: the
  /// client came through a trusted proxy, whose socket was not counted as
  /// the peer's) its connection rate is spent.
  bool open_client(const std::string& peer, Clock::time_point now, bool as_connect = false);
  void close_client(const std::string& peer) noexcept;
  /// Takes a token from `peer`'s message bucket (an address, or "sender:"
  /// and a token's subject); false when it is spent or the table is full.
  bool allow_message(const std::string& peer, Clock::time_point now);
  /// Takes a token from `peer`'s HTTP request bucket; false when it is spent
  /// or the table is full.
  bool allow_request(const std::string& peer, Clock::time_point now);

  /// Room memberships of `peer`'s clients: false when it has `most` already.
  bool join_room(const std::string& peer, std::size_t most, Clock::time_point now);
  void leave_room(const std::string& peer) noexcept;
  std::size_t rooms(const std::string& peer) const noexcept;

  /// History bytes the clients of `peer` hold (reserved for reads, queued
  /// and not yet written): its share of the source's history budget.
  void add_history(const std::string& peer, std::size_t bytes, Clock::time_point now);
  void release_history(const std::string& peer, std::size_t bytes) noexcept;
  std::size_t history(const std::string& peer) const noexcept;

  /// Forgets entries that hold nothing and whose buckets have refilled.
  void forget_idle(Clock::time_point now);
  /// New limits (a reload): entries' buckets take the new rates at once.
  void set_limits(const Limits& limits, Clock::time_point now);

  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t sockets(const std::string& peer) const noexcept;
  std::size_t clients(const std::string& peer) const noexcept;

 private:
  struct Entry {
    Entry(const Limits& limits, Clock::time_point now)
        : connects(limits.connects_per_second, limits.connect_burst, now),
          messages(limits.messages_per_second, limits.message_burst, now),
          requests(limits.requests_per_second, limits.request_burst, now) {}
    std::size_t sockets = 0;
    std::size_t clients = 0;
    std::size_t history_bytes = 0;
    std::size_t rooms = 0;
    TokenBucket connects;
    TokenBucket messages;
    TokenBucket requests;
  };
  /// The entry of `peer`, made if need be; null when the table is full.
  Entry* find_or_add(const std::string& peer, Clock::time_point now);
  bool idle(const Entry& entry, Clock::time_point now) const noexcept;

  Limits limits_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace nudge::plugins::websocket
