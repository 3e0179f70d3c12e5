#include "url.hpp"

#include <charconv>
#include <stdexcept>

namespace nudge::bench {

Url Url::parse(std::string_view text) {
  const std::string original(text);
  std::string_view rest = text;
  if (rest.starts_with("ws://")) {
    rest.remove_prefix(5);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("wss://") || rest.starts_with("https://")) {
    throw std::invalid_argument("'" + original + "': TLS is not supported; use ws://");
  } else {
    throw std::invalid_argument("'" + original + "': expected ws://HOST:PORT/PATH");
  }
  Url url;
  const auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (url.target.front() == '?') url.target.insert(0, "/");
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("'" + original + "': unclosed '['");
    url.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
  } else {
    const auto colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    authority.remove_prefix(colon == std::string_view::npos ? authority.size() : colon);
  }
  if (!authority.empty()) {
    if (authority.front() != ':') throw std::invalid_argument("'" + original + "': bad host");
    authority.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(authority.data(), authority.data() + authority.size(), url.port);
    if (ec != std::errc{} || ptr != authority.data() + authority.size() || url.port == 0) {
      throw std::invalid_argument("'" + original + "': bad port");
    }
  }
  if (url.host.empty()) throw std::invalid_argument("'" + original + "': no host");
  return url;
}

std::string Url::host_header() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace nudge::bench
