#include "config.hpp"

namespace nudge::plugins::websocket {

ConfigSchema WebSocketConfig::schema() {
  ConfigSchema s;
  s.string("listen", "127.0.0.1:8080", "Address and port to listen on (port 0 picks a free one)")
      .with_example("\"0.0.0.0:8080\"")
      .with_check([](const ConfigValue& v) {
        std::string host;
        std::uint16_t port = 0;
        return parse_host_port(std::get<std::string>(v), host, port) ? std::string()
                                                                     : std::string("must be host:port, e.g. \"127.0.0.1:8080\"");
      });
  s.string("static_dir", "", "Folder of static files served over HTTP (the chat page); empty serves none")
      .with_example("\"${PIPELINE_DIR}/web\"");
  s.string("path", "/ws", "HTTP path of the WebSocket endpoint").with_check([](const ConfigValue& v) {
    return std::get<std::string>(v).starts_with("/") ? std::string() : std::string("must start with '/'");
  });
  s.integer("max_message_bytes", 64 * 1024,
            "Largest frame a client may send; larger ones close the connection with 1009")
      .range(128, 16 * 1024 * 1024);
  s.integer("max_connections", 10000, "WebSocket connections this instance accepts; more get HTTP 503").range(1, 1'000'000);
  s.integer("handshake_timeout_ms", 10000, "Time a client has to finish the HTTP request and WebSocket handshake")
      .range(100, 600000);
  s.integer("idle_timeout_ms", 60000,
            "A connection silent for this long is pinged, and closed if the ping goes unanswered")
      .range(1000, 3600000);
  s.integer("max_send_queue", 1024,
            "Frames waiting to be sent to one client; a client that falls further behind is dropped, so a slow "
            "reader never holds a room back")
      .range(1, 1'000'000);
  s.number("rate_limit_per_second", 50,
           "Frames per second one connection may send on average (token bucket refill rate); 0 disables the limit")
      .range(0, 1'000'000);
  s.integer("rate_limit_burst", 100, "Frames one connection may send at once before the rate limit applies")
      .range(1, 1'000'000);
  s.integer("rate_limit_strikes", 20,
            "Frames refused for the rate limit over a connection's life; the one reaching this count closes it with 1008")
      .range(1, 1'000'000);
  s.integer("max_connections_per_address", 100,
            "WebSocket connections accepted from one remote IP address; more get HTTP 503. 0 disables the limit")
      .range(0, 1'000'000);
  s.string_list("allowed_origins", {},
                "Origins (scheme://host:port) allowed to open a WebSocket besides the page's own origin; \"*\" "
                "allows any. Others get HTTP 403")
      .with_example("[\"https://chat.example.com\"]");
  return s;
}

WebSocketConfig WebSocketConfig::from(const Config& c) {
  WebSocketConfig out;
  parse_host_port(c.get_string("listen"), out.host, out.port);
  out.static_dir = c.get_string("static_dir");
  out.path = c.get_string("path");
  out.max_message_bytes = c.get_int("max_message_bytes");
  out.max_connections = c.get_int("max_connections");
  out.handshake_timeout_ms = c.get_int("handshake_timeout_ms");
  out.idle_timeout_ms = c.get_int("idle_timeout_ms");
  out.max_send_queue = c.get_int("max_send_queue");
  out.rate_limit_per_second = c.get_number("rate_limit_per_second");
  out.rate_limit_burst = c.get_int("rate_limit_burst");
  out.rate_limit_strikes = c.get_int("rate_limit_strikes");
  out.max_connections_per_address = c.get_int("max_connections_per_address");
  out.allowed_origins = c.get_strings("allowed_origins");
  return out;
}

}  // namespace nudge::plugins::websocket
