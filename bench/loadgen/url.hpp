#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace nudge::bench {

/// A WebSocket target: `ws://HOST[:PORT][/PATH[?QUERY]]` (`http://` is taken
/// as `ws://`; `wss://` and `https://` are refused: the generator speaks
/// plaintext only, to measure the server rather than TLS).
struct Url {
  std::string host;
  std::uint16_t port = 80;
  std::string target;  ///< path and query, "/" at least

  /// Throws std::invalid_argument naming what is wrong.
  static Url parse(std::string_view text);
  /// host:port, as sent in the Host header.
  std::string host_header() const;
};

}  // namespace nudge::bench
