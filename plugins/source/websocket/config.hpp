#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::websocket {

struct WebSocketConfig {
  std::string host;
  std::uint16_t port = 0;
  std::string static_dir;
  std::string path;
  std::int64_t max_message_bytes = 0;
  std::int64_t max_connections = 0;
  std::int64_t handshake_timeout_ms = 0;
  std::int64_t idle_timeout_ms = 0;
  std::int64_t max_send_queue = 0;
  double rate_limit_per_second = 0;
  std::int64_t rate_limit_burst = 0;
  std::int64_t rate_limit_strikes = 0;
  std::int64_t max_connections_per_address = 0;
  std::vector<std::string> allowed_origins;

  static ConfigSchema schema();
  static WebSocketConfig from(const Config& config);
};

}  // namespace nudge::plugins::websocket
