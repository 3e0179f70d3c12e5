#include "config.hpp"

#include "protocol.hpp"
#include "trusted_proxies.hpp"

#include <stdexcept>

namespace nudge::plugins::websocket {

namespace {

// Where clients connect: the listening address, the page and the WebSocket path.
void endpoint_keys(ConfigSchema& s) {
  s.string("listen", "localhost:8080",
           "Address and port to listen on (port 0 picks a free one); localhost listens on both 127.0.0.1 and ::1")
      .with_example("\"0.0.0.0:8080\"")
      .with_check([](const ConfigValue& v) {
        std::string host;
        std::uint16_t port = 0;
        return parse_host_port(std::get<std::string>(v), host, port)
                   ? std::string()
                   : std::string("must be host:port, e.g. \"127.0.0.1:8080\"");
      });
  s.string("static_dir", "", "Folder of static files served over HTTP (the chat page); empty serves none")
      .with_example("\"${PIPELINE_DIR}/web\"");
  s.string("path", "/ws", "HTTP path of the WebSocket endpoint").with_check([](const ConfigValue& v) {
    return std::get<std::string>(v).starts_with("/") ? std::string() : std::string("must start with '/'");
  });
}

// What one connection, one address and the instance may hold: frames, sockets, queues, time, request rates.
void connection_limit_keys(ConfigSchema& s) {
  s.integer("max_message_bytes", 64 * 1024,
            "Largest frame a client may send; larger ones close the connection with 1009")
      .range(128, 16 * 1024 * 1024)
      .reloadable();
  s.integer("max_connections", 10000,
            "Clients this instance serves at once (WebSocket connections and Socket.IO sessions); more get HTTP 503")
      .range(1, 1'000'000)
      .reloadable();
  s.integer("max_sockets", 0,
            "TCP connections open at once in any state (page loads, polls, handshakes, WebSockets); more are closed "
            "at accept. 0: the process's open-file limit less 256 kept for the rest of the process")
      .range(0, 10'000'000);
  s.integer("handshake_timeout_ms", 10000, "Time a client has to finish the HTTP request and WebSocket handshake")
      .range(100, 600000)
      .reloadable();
  s.integer("idle_timeout_ms", 60000,
            "A connection silent for this long is pinged, and closed if the ping goes unanswered")
      .range(1000, 3600000)
      .reloadable();
  s.integer("max_send_queue", 1024,
            "Frames waiting to be sent to one client; a client that falls further behind is dropped, so a slow "
            "reader never holds a room back")
      .range(1, 1'000'000)
      .reloadable();
  s.integer("max_send_queue_bytes", 16 * 1024 * 1024,
            "Bytes waiting to be sent to one client, control frames included; a client that lets more pile up is "
            "dropped like one past max_send_queue")
      .range(64 * 1024, std::int64_t{1} << 30)
      .reloadable();
  s.integer("write_timeout_ms", 30000,
            "A client whose queued frames (or an HTTP response) make no progress for this long is dropped: a client "
            "that stops reading holds nothing for longer")
      .range(100, 3600000)
      .reloadable();
  s.number("rate_limit_per_second", 50,
           "Frames per second one connection may send on average (token bucket refill rate); 0 disables the limit")
      .range(0, 1'000'000)
      .reloadable();
  s.integer("rate_limit_burst", 100, "Frames one connection may send at once before the rate limit applies")
      .range(1, 1'000'000)
      .reloadable();
  s.integer(
       "rate_limit_strikes", 20,
       "Frames refused for the rate limit over a connection's life; the one reaching this count closes it with 1008")
      .range(1, 1'000'000)
      .reloadable();
  s.integer("max_connections_per_address", 100,
            "Clients (WebSocket connections and Socket.IO sessions) from one address (an IPv6 address counts by its "
            "/64); more get HTTP 503. 0 disables the limit")
      .range(0, 1'000'000)
      .reloadable();
  s.integer("max_sockets_per_address", 256,
            "TCP connections open at once from one address (IPv6: its /64), counted from accept whatever their "
            "state (a request half sent, a page load, a poll, a WebSocket); more are closed at accept. 0 disables "
            "the limit")
      .range(0, 1'000'000)
      .reloadable();
  s.number("connection_rate_per_address", 50,
           "New TCP connections per second one address (IPv6: its /64) may open on average; faster ones are closed "
           "at accept. 0 disables the limit")
      .range(0, 1'000'000)
      .reloadable();
  s.integer("connection_burst_per_address", 200,
            "New connections one address may open at once before connection_rate_per_address applies")
      .range(1, 1'000'000)
      .reloadable();
  s.number("http_request_rate_per_address", 100,
           "HTTP requests per second one address (IPv6: its /64) may make on average over all its connections "
           "(pages, Socket.IO polls and posts, upgrades), however many one keep-alive connection carries; past it "
           "a request is answered 429 and its connection closed. 0 disables the limit")
      .range(0, 1'000'000)
      .reloadable();
  s.integer("http_request_burst_per_address", 300,
            "HTTP requests one address may make at once before http_request_rate_per_address applies")
      .range(1, 1'000'000)
      .reloadable();
}

// What a sender may send and how many rooms a connection, an address and the instance may hold.
void sender_and_room_limit_keys(ConfigSchema& s) {
  s.number("sender_rate_limit_per_second", 100,
           "Frames per second one sender may send over all its connections together, so reconnecting earns "
           "nothing: an authenticated sender is its token's subject, an anonymous one its address (IPv6: its /64). "
           "0 disables the limit")
      .range(0, 1'000'000)
      .reloadable();
  s.integer("sender_rate_limit_burst", 300,
            "Frames one sender may send at once over all its connections before sender_rate_limit_per_second applies")
      .range(1, 1'000'000)
      .reloadable();
  s.integer("max_rooms_per_connection", 100,
            "Rooms one client may be in at once; a join past it gets the error too_many_rooms")
      .range(1, 100000)
      .reloadable();
  s.integer("max_rooms_per_address", 1000,
            "Room memberships of all the clients of one address (IPv6: its /64) together; a join past it gets "
            "too_many_rooms. 0 disables the limit")
      .range(0, 10'000'000)
      .reloadable();
  s.integer("max_rooms", 100000,
            "Rooms with local clients this instance holds at once (each a fanout subscription); a join of a new "
            "room past it gets the error too_many_rooms")
      .range(1, 10'000'000)
      .reloadable();
}

// Which origins may open a WebSocket, and which proxies name the client.
void origin_and_proxy_keys(ConfigSchema& s) {
  s.string_list("allowed_origins", {},
                "Origins (scheme://host:port) allowed to open a WebSocket besides the page's own origin; \"*\" "
                "allows any. Others get HTTP 403")
      .with_example("[\"https://chat.example.com\"]")
      .reloadable();
  s.string_list(
       "trusted_proxies", {},
       "Reverse proxies (addresses or networks, e.g. \"127.0.0.1\", \"10.0.0.0/8\") whose "
       "X-Forwarded-For names the client (its right-most address that is not a trusted proxy; several lines are one "
       "list, the last line last): per-address limits then count that address, not the proxy's. "
       "Requests through one without X-Forwarded-For count under the proxy's own address. Empty: every peer is a "
       "client")
      .with_example("[\"127.0.0.1\", \"::1\"]")
      .with_check([](const ConfigValue& v) {
        std::string error;
        return TrustedProxies::parse(std::get<std::vector<std::string>>(v), error) ? std::string() : error;
      })
      .reloadable();
}

// Resending by ref (docs/guarantees.md).
void resend_keys(ConfigSchema& s) {
  s.integer("resend_window_ms", 300000,
            "How long a send's `ref` is remembered per sender, so a resend after a lost ack, an error or a "
            "reconnect to this instance makes no second message (docs/guarantees.md); 0 turns this off")
      .range(0, 86400000);
  s.integer("resend_max_entries", 100000,
            "Refs remembered at most (oldest settled first out; about 200 bytes each); sends with a new ref are "
            "refused (unavailable) while this many are still in flight")
      .range(1, 100000000)
      .reloadable();
}

// Token authentication.
void auth_keys(ConfigSchema& s) {
  s.string("auth_jwt_secret", "",
           "HMAC key (raw bytes, at least 32) of the HS256 JWTs clients must present to open a WebSocket; empty "
           "turns token authentication off unless auth_jwt_secret_file is set")
      .with_example("\"${NUDGE_JWT_SECRET}\"")
      .with_check([](const ConfigValue& v) {
        const auto size = std::get<std::string>(v).size();
        return size == 0 || size >= kMinSecretBytes
                   ? std::string()
                   : std::string(
                         "must be empty (no authentication) or at least 32 bytes (RFC 7518 section 3.2); "
                         "make one with `openssl rand -base64 32`");
      });
  s.string("auth_jwt_secret_file", "",
           "File holding the HS256 key instead of auth_jwt_secret (read at start; one trailing newline is ignored)")
      .with_example("\"/etc/nudge/jwt.key\"");
  s.integer("auth_leeway_ms", 5000, "Clock skew tolerated when checking a token's exp and nbf").range(0, 300000);
  s.string("auth_issuer", "", "When set, a token's iss claim must equal it")
      .with_example("\"https://auth.example.com\"");
  s.string("auth_audience", "", "When set, a token's aud claim (a string or an array) must contain it")
      .with_example("\"nudge-chat\"");
  s.string("auth_identity_claim", "sub",
           "Claim whose value becomes the connection's sender name (a valid name: 1 to 64 bytes of UTF-8, no "
           "control, bidirectional or invisible formatting characters)")
      .with_check([](const ConfigValue& v) {
        return std::get<std::string>(v).empty() ? std::string("must name a claim, e.g. \"sub\"") : std::string();
      });
  s.boolean("auth_close_on_expiry", true,
            "Close an authenticated connection with 1008 when its token expires (exp plus auth_leeway_ms)");
}

// TLS.
void tls_keys(ConfigSchema& s) {
  s.string("tls_cert_file", "",
           "PEM certificate chain; with tls_key_file, the page is served over https and the WebSocket over wss on "
           "the same port")
      .with_example("\"/etc/nudge/tls/fullchain.pem\"");
  s.string("tls_key_file", "", "PEM private key (not encrypted) of tls_cert_file; both or neither")
      .with_example("\"/etc/nudge/tls/privkey.pem\"");
}

// The Socket.IO endpoint.
void socketio_keys(ConfigSchema& s) {
  s.boolean("socketio", true,
            "Also serve Socket.IO v4 clients (Engine.IO v4 over WebSocket and HTTP long-polling) at socketio_path "
            "on the same listener (docs/socketio.md)");
  s.string("socketio_path", "/socket.io/", "HTTP path of the Socket.IO endpoint (socket.io-client's `path` option)")
      .with_check([](const ConfigValue& v) {
        const auto& p = std::get<std::string>(v);
        return p.starts_with("/") && p.ends_with("/") ? std::string() : std::string("must start and end with '/'");
      });
  s.integer("ping_interval_ms", 25000, "Socket.IO heartbeat: the server pings each client this often")
      .range(100, 600000);
  s.integer("ping_timeout_ms", 20000,
            "Socket.IO heartbeat: a client that does not answer a ping within this long is disconnected")
      .range(100, 600000);
  s.string("socketio_default_room", "general", "Room a Socket.IO client is in until it joins another")
      .with_check([](const ConfigValue& v) {
        return is_valid_room(std::get<std::string>(v))
                   ? std::string()
                   : std::string("must be 1 to 128 characters of A-Z a-z 0-9 _ - . :");
      });
}

// History on joining and catching up.
void history_keys(ConfigSchema& s) {
  s.integer("history_messages", 50,
            "Past messages a client receives on joining a room, read from the sink (0 sends none)")
      .range(0, 10000)
      .reloadable();
  s.integer("catch_up_max_messages", 10000,
            "Most messages a reconnecting client is sent to catch up (the rest it must read otherwise)")
      .range(0, 1000000)
      .reloadable();
  s.integer("max_history_reads", 16,
            "History reads (joins, catching up) in flight at once over all clients; more wait their turn")
      .range(1, 10000)
      .reloadable();
  s.integer("history_buffer_bytes", 64 * 1024 * 1024,
            "Bytes of history read (or reserved for reads in flight, at max_message_bytes a message) and not yet "
            "queued to clients, over all clients; reads wait while it is spent. A client gets history only as fast "
            "as it reads it")
      .range(64 * 1024, std::int64_t{1} << 34)
      .reloadable();
}

// Presence: events, requests and their bounds.
void presence_keys(ConfigSchema& s) {
  s.boolean("presence_events", true,
            "Send clients presence_join and presence_leave as members of their rooms come and go (when the fanout "
            "keeps presence); presence requests are answered either way")
      .reloadable();
  s.integer("presence_events_max_room", 1000,
            "Rooms with more local clients than this get no presence events: each join and leave would cost a frame "
            "for every member (joining a room of N, N frames; filling it, N squared). Presence requests still answer")
      .range(0, 1000000)
      .reloadable();
  s.integer("max_presence_reads", 16,
            "Presence requests passed to the fanout and unanswered at once over all clients (each client has one at "
            "most); more are refused busy, as each costs the fanout's store a read of the room's members")
      .range(1, 10000)
      .reloadable();
  s.integer("presence_read_timeout_ms", 5000,
            "A presence request the fanout has not answered in this long is answered unavailable, freeing the "
            "client's request and its share of max_presence_reads; a later answer is dropped")
      .range(100, 600000)
      .reloadable();
  s.integer("max_presence_members", 1000,
            "Members a presence reply names at most (the fanout's max_presence_per_room bounds it too); its total "
            "counts them all")
      .range(0, 100000)
      .reloadable();
}

}  // namespace

ConfigSchema WebSocketConfig::schema() {
  ConfigSchema s;
  endpoint_keys(s);
  connection_limit_keys(s);
  sender_and_room_limit_keys(s);
  origin_and_proxy_keys(s);
  resend_keys(s);
  auth_keys(s);
  tls_keys(s);
  socketio_keys(s);
  history_keys(s);
  presence_keys(s);
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
  out.max_send_queue_bytes = c.get_int("max_send_queue_bytes");
  out.write_timeout_ms = c.get_int("write_timeout_ms");
  out.rate_limit_per_second = c.get_number("rate_limit_per_second");
  out.rate_limit_burst = c.get_int("rate_limit_burst");
  out.rate_limit_strikes = c.get_int("rate_limit_strikes");
  out.max_connections_per_address = c.get_int("max_connections_per_address");
  out.max_sockets_per_address = c.get_int("max_sockets_per_address");
  out.connection_rate_per_address = c.get_number("connection_rate_per_address");
  out.connection_burst_per_address = c.get_int("connection_burst_per_address");
  out.http_request_rate_per_address = c.get_number("http_request_rate_per_address");
  out.http_request_burst_per_address = c.get_int("http_request_burst_per_address");
  out.sender_rate_limit_per_second = c.get_number("sender_rate_limit_per_second");
  out.sender_rate_limit_burst = c.get_int("sender_rate_limit_burst");
  out.max_sockets = c.get_int("max_sockets");
  out.max_rooms_per_connection = c.get_int("max_rooms_per_connection");
  out.max_rooms_per_address = c.get_int("max_rooms_per_address");
  out.max_rooms = c.get_int("max_rooms");
  out.allowed_origins = c.get_strings("allowed_origins");
  out.trusted_proxies = c.get_strings("trusted_proxies");
  out.resend_window_ms = c.get_int("resend_window_ms");
  out.resend_max_entries = c.get_int("resend_max_entries");
  out.auth_jwt_secret = c.get_string("auth_jwt_secret");
  out.auth_jwt_secret_file = c.get_string("auth_jwt_secret_file");
  out.auth_leeway_ms = c.get_int("auth_leeway_ms");
  out.auth_issuer = c.get_string("auth_issuer");
  out.auth_audience = c.get_string("auth_audience");
  out.auth_identity_claim = c.get_string("auth_identity_claim");
  out.auth_close_on_expiry = c.get_bool("auth_close_on_expiry");
  out.tls_cert_file = c.get_string("tls_cert_file");
  out.tls_key_file = c.get_string("tls_key_file");
  out.socketio = c.get_bool("socketio");
  out.socketio_path = c.get_string("socketio_path");
  out.ping_interval_ms = c.get_int("ping_interval_ms");
  out.ping_timeout_ms = c.get_int("ping_timeout_ms");
  out.socketio_default_room = c.get_string("socketio_default_room");
  out.history_messages = c.get_int("history_messages");
  out.catch_up_max_messages = c.get_int("catch_up_max_messages");
  out.max_history_reads = c.get_int("max_history_reads");
  out.history_buffer_bytes = c.get_int("history_buffer_bytes");
  out.presence_events = c.get_bool("presence_events");
  out.presence_events_max_room = c.get_int("presence_events_max_room");
  out.max_presence_members = c.get_int("max_presence_members");
  out.max_presence_reads = c.get_int("max_presence_reads");
  out.presence_read_timeout_ms = c.get_int("presence_read_timeout_ms");
  if (const auto found = out.problems(); !found.empty()) {
    std::string text;
    for (const auto& p : found) text += (text.empty() ? "" : "; ") + p;
    throw std::invalid_argument(text);
  }
  return out;
}

void WebSocketConfig::apply_live(const WebSocketConfig& next) {
  max_message_bytes = next.max_message_bytes;
  max_connections = next.max_connections;
  handshake_timeout_ms = next.handshake_timeout_ms;
  idle_timeout_ms = next.idle_timeout_ms;
  max_send_queue = next.max_send_queue;
  max_send_queue_bytes = next.max_send_queue_bytes;
  write_timeout_ms = next.write_timeout_ms;
  rate_limit_per_second = next.rate_limit_per_second;
  rate_limit_burst = next.rate_limit_burst;
  rate_limit_strikes = next.rate_limit_strikes;
  max_connections_per_address = next.max_connections_per_address;
  max_sockets_per_address = next.max_sockets_per_address;
  connection_rate_per_address = next.connection_rate_per_address;
  connection_burst_per_address = next.connection_burst_per_address;
  http_request_rate_per_address = next.http_request_rate_per_address;
  http_request_burst_per_address = next.http_request_burst_per_address;
  sender_rate_limit_per_second = next.sender_rate_limit_per_second;
  sender_rate_limit_burst = next.sender_rate_limit_burst;
  max_rooms_per_connection = next.max_rooms_per_connection;
  max_rooms_per_address = next.max_rooms_per_address;
  max_rooms = next.max_rooms;
  resend_max_entries = next.resend_max_entries;
  allowed_origins = next.allowed_origins;
  trusted_proxies = next.trusted_proxies;
  history_messages = next.history_messages;
  catch_up_max_messages = next.catch_up_max_messages;
  max_history_reads = next.max_history_reads;
  history_buffer_bytes = next.history_buffer_bytes;
  presence_events = next.presence_events;
  presence_events_max_room = next.presence_events_max_room;
  max_presence_members = next.max_presence_members;
  max_presence_reads = next.max_presence_reads;
  presence_read_timeout_ms = next.presence_read_timeout_ms;
}

std::vector<std::string> WebSocketConfig::problems() const {
  std::vector<std::string> found;
  if (tls_cert_file.empty() != tls_key_file.empty())
    found.push_back(tls_cert_file.empty() ? "tls_key_file is set but tls_cert_file is not: set both or neither"
                                          : "tls_cert_file is set but tls_key_file is not: set both or neither");
  if (!auth_jwt_secret.empty() && !auth_jwt_secret_file.empty())
    found.push_back("auth_jwt_secret and auth_jwt_secret_file are both set: use one");
  if (socketio && (socketio_path == path || socketio_path == path + "/"))
    found.push_back("socketio_path '" + socketio_path + "' is the WebSocket path: give them different paths");
  return found;
}

}  // namespace nudge::plugins::websocket
