#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

namespace nudge::plugins::websocket {

/// The reverse proxies whose word on a client's address is taken
/// (`trusted_proxies`): connections from them are not one client but many,
/// so per-address limits count the address each request's X-Forwarded-For
/// names instead. Nobody else's X-Forwarded-For is read: a client cannot
/// choose the address it is counted under.
class TrustedProxies {
 public:
  /// Parses addresses and networks ("10.0.0.1", "10.0.0.0/8", "::1",
  /// "fd00::/8"); nullopt and `error` set for the first that is neither.
  static std::optional<TrustedProxies> parse(const std::vector<std::string>& entries, std::string& error);

  bool empty() const noexcept { return v4_.empty() && v6_.empty(); }
  bool contains(const boost::asio::ip::address& address) const noexcept;

  /// The client's address a request came from: for a connection from a
  /// trusted proxy, the right-most address of `forwarded_for` (the value of
  /// X-Forwarded-For; "address:port" forms too) that is not itself a trusted
  /// proxy; nullopt when the proxy named none (then the request counts under
  /// the proxy's own address).
  std::optional<boost::asio::ip::address> client_of(std::string_view forwarded_for) const;
  /// The same for a request with several X-Forwarded-For lines, in the order
  /// received: they are one list (RFC 9110 section 5.3), and the last line is
  /// the one a proxy that appends its own (HAProxy's `option forwardfor`)
  /// wrote, so a client's own line never names the client.
  std::optional<boost::asio::ip::address> client_of(const std::vector<std::string_view>& lines) const;

 private:
  std::vector<boost::asio::ip::network_v4> v4_;
  std::vector<boost::asio::ip::network_v6> v6_;
};

}  // namespace nudge::plugins::websocket
