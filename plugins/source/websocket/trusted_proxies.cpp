#include "trusted_proxies.hpp"

namespace nudge::plugins::websocket {

namespace ip = boost::asio::ip;

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

/// IPv4-mapped IPv6 addresses ("::ffff:10.0.0.1") are their IPv4 address.
ip::address unmapped(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  return address;
}

}  // namespace

std::optional<TrustedProxies> TrustedProxies::parse(const std::vector<std::string>& entries, std::string& error) {
  TrustedProxies proxies;
  for (const auto& entry : entries) {
    boost::system::error_code ec;
    if (entry.find('/') == std::string::npos) {
      const auto address = unmapped(ip::make_address(entry, ec));
      if (!ec && address.is_v4()) proxies.v4_.emplace_back(address.to_v4(), 32);
      else if (!ec) proxies.v6_.emplace_back(address.to_v6(), 128);
    } else if (entry.find(':') == std::string::npos) {
      proxies.v4_.push_back(ip::make_network_v4(entry, ec));
    } else {
      proxies.v6_.push_back(ip::make_network_v6(entry, ec));
    }
    if (ec) {
      error = "'" + entry + "' is not an IP address or network (e.g. \"10.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\")";
      return std::nullopt;
    }
  }
  return proxies;
}

bool TrustedProxies::contains(const ip::address& given) const noexcept {
  const auto address = unmapped(given);
  if (address.is_v4()) {
    const auto bits = address.to_v4().to_uint();
    for (const auto& network : v4_) {
      const auto mask = network.netmask().to_uint();
      if ((bits & mask) == (network.address().to_uint() & mask)) return true;
    }
    return false;
  }
  const auto bytes = address.to_v6().to_bytes();
  for (const auto& network : v6_) {
    const auto net = network.address().to_bytes();
    unsigned left = network.prefix_length();
    bool same = true;
    for (std::size_t i = 0; i < bytes.size() && left > 0 && same; ++i) {
      const unsigned take = left >= 8 ? 8 : left;
      const auto mask = static_cast<unsigned char>(0xFF << (8 - take));
      same = (bytes[i] & mask) == (net[i] & mask);
      left -= take;
    }
    if (same) return true;
  }
  return false;
}

std::optional<ip::address> TrustedProxies::client_of(std::string_view forwarded_for) const {
  // Each proxy appends the address it saw: read from the right, past our own proxies.
  while (!forwarded_for.empty()) {
    const auto comma = forwarded_for.rfind(',');
    const std::string_view entry =
        trim(comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    forwarded_for = comma == std::string_view::npos ? std::string_view() : forwarded_for.substr(0, comma);
    boost::system::error_code ec;
    auto address = ip::make_address(std::string(entry), ec);
    if (ec) {
      // Some proxies append the port: "203.0.113.9:5123", "[2001:db8::5]:5123".
      std::string_view host = entry;
      if (host.starts_with('['))
        host = host.substr(1, host.find(']') == std::string_view::npos ? 0 : host.find(']') - 1);
      else if (host.find(':') == host.rfind(':')) host = host.substr(0, host.find(':'));
      address = ip::make_address(std::string(host), ec);
    }
    if (ec) return std::nullopt;  // not an address: nothing further left can be trusted
    if (!contains(address)) return unmapped(address);
  }
  return std::nullopt;
}

std::optional<ip::address> TrustedProxies::client_of(const std::vector<std::string_view>& lines) const {
  std::string joined;
  for (const auto line : lines) {
    if (!joined.empty()) joined += ',';
    joined += line;
  }
  return client_of(joined);
}

}  // namespace nudge::plugins::websocket
