#include "http_router.hpp"

#include <vector>

#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "json_writer.hpp"
#include "socketio_session.hpp"
#include "static_files.hpp"

namespace nudge::plugins::websocket {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;

namespace {

/// Largest request header (request line and fields) read.
constexpr std::size_t kMaxHeaderBytes = 16 * 1024;

std::string_view view(boost::beast::string_view s) noexcept { return {s.data(), s.size()}; }

/// The raw value of `name` in a request target's query ("" when absent);
/// Engine.IO's parameters need no percent-decoding.
std::string_view query_parameter(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

}  // namespace

HttpRouter::HttpRouter(std::shared_ptr<Hub> hub, SocketSlot slot,
                       std::optional<boost::asio::ip::address> socket_address, beast::flat_buffer buffer)
    : hub_(std::move(hub)),
      slot_(std::move(slot)),
      address_(socket_address ? socket_address->to_string() : std::string()),
      peer_(slot_.peer()),
      buffer_(std::move(buffer)),
      socket_address_(socket_address),
      from_proxy_(slot_.peer().empty()) {}

void HttpRouter::prepare_request() {
  parser_.emplace();
  sio_request_ = false;
  parser_->header_limit(kMaxHeaderBytes);
  // A long-polling POST carries up to maxPayload (max_message_bytes) of packets.
  const auto body_limit = static_cast<std::size_t>(hub_->config.max_message_bytes);
  parser_->body_limit(body_limit);
  // What a request may make the connection hold: its header and body, and
  // the start of the next one pipelined behind it.
  buffer_.max_size(kMaxHeaderBytes + body_limit + 4096);
  // The whole request must arrive in time: a client trickling bytes holds nothing for long.
  expires_after(std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
}

void HttpRouter::identify_client() {
  if (!from_proxy_) return;  // the socket's address, as set at the start
  // A proxy's keep-alive connection carries requests of many clients: each
  // request says whose it is. One that names nobody counts under the
  // proxy's own address: a proxy that sends no X-Forwarded-For makes every
  // client one (the limits bite, visibly) rather than none (no limits at all).
  address_ = socket_address_ ? socket_address_->to_string() : std::string();
  peer_ = socket_address_ ? peer_key(*socket_address_) : std::string();
  forwarded_ = false;
  const auto& req = parser_->get();
  std::vector<std::string_view> lines;
  for (auto [line, end] = req.equal_range("X-Forwarded-For"); line != end; ++line) lines.push_back(view(line->value()));
  if (lines.empty()) return;
  if (const auto client = hub_->proxies.client_of(lines)) {
    address_ = client->to_string();
    peer_ = peer_key(*client);
    forwarded_ = true;
  }
}

bool HttpRouter::origin_allowed() const {
  const auto& req = parser_->get();
  const auto origin_it = req.find(http::field::origin);
  if (origin_it == req.end()) return true;  // not a browser: nothing to hijack
  const std::string origin(origin_it->value());
  for (const auto& allowed : hub_->config.allowed_origins)
    if (allowed == "*" || allowed == origin) return true;
  // Same origin: the Origin's authority equals the Host the browser connected to.
  const auto scheme_end = origin.find("://");
  const std::string authority = scheme_end == std::string::npos ? origin : origin.substr(scheme_end + 3);
  return authority == std::string(req[http::field::host]);
}

void HttpRouter::note_refused_origin() {
  hub_->connections_refused.add();
  hub_->note_refused_origin(std::string(parser_->get()[http::field::origin]), address_);
}

void HttpRouter::on_read(beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == boost::asio::error::eof) return close();
  if (ec == beast::error::timeout || ec == boost::asio::error::operation_aborted ||
      ec == ssl::error::stream_truncated || ec == boost::asio::error::connection_reset)
    return;
  const auto& req = parser_->get();
  const std::string_view target = view(req.target());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool socketio = hub_->config.socketio &&
                        (path == hub_->config.socketio_path || std::string(path) + "/" == hub_->config.socketio_path);
  if (ec == http::error::body_limit && socketio) {
    // A long-polling POST over maxPayload: the session ends (Engine.IO v4).
    hub_->socketio_refused.add();
    const auto sid = query_parameter(target, "sid");
    if (auto it = hub_->sio_sessions.find(std::string(sid)); it != hub_->sio_sessions.end())
      it->second->close(CloseCode::too_big, "payload too large");
    return respond_socketio_error(http::status::payload_too_large, 3, "Payload too large");
  }
  if (ec == http::error::header_limit)
    return respond_text(http::status::request_header_fields_too_large, "request header too large\n");
  if (ec == http::error::body_limit) return respond_text(http::status::payload_too_large, "request body too large\n");
  if (ec) return respond_text(http::status::bad_request, "bad request: " + ec.message() + "\n");
  identify_client();
  // Every request is work, and a keep-alive connection carries any number:
  // they are counted per address, over all its connections.
  if (!peer_.empty() && !hub_->peers.allow_request(peer_, PeerTable::Clock::now())) {
    hub_->requests_rate_limited.add();
    hub_->logger.debug("refused an HTTP request from '", address_, "': http_request_rate_per_address spent");
    return respond_text(http::status::too_many_requests, "too many requests from this address; slow down\n");
  }
  if (socketio) return serve_socketio();
  if (beast::websocket::is_upgrade(req)) {
    if (path != hub_->config.path) return respond_text(http::status::not_found, "no WebSocket endpoint here\n");
    return upgrade();
  }
  if (req.method() != http::verb::get && req.method() != http::verb::head)
    return respond_text(http::status::method_not_allowed, "only GET and HEAD are served\n");
  if (path == hub_->config.path) return respond_text(http::status::upgrade_required, "this is a WebSocket endpoint\n");
  serve_file(target);
}

void HttpRouter::serve_file(std::string_view target) {
  const auto& req = parser_->get();
  beast::error_code ec;
  const auto file = resolve_static_path(hub_->config.static_dir, target);
  if (!file) return respond_text(http::status::not_found, "not found\n");
  http::file_body::value_type body;
  body.open(file->c_str(), beast::file_mode::scan, ec);
  if (ec) return respond_text(http::status::not_found, "not found\n");
  const auto size = body.size();
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::server, detail::kServer);
    res.set(http::field::content_type, content_type_for(*file));
    res.content_length(size);
    res.keep_alive(req.keep_alive());
    return respond(std::move(res));
  }
  http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(body)),
                                      std::make_tuple(http::status::ok, req.version())};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, content_type_for(*file));
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  // The chat page is not to be framed by another site (clickjacking).
  res.set("Content-Security-Policy", "frame-ancestors 'self'");
  res.set("X-Frame-Options", "SAMEORIGIN");
  res.content_length(size);
  res.keep_alive(req.keep_alive());
  // A file as big as the client likes to read slowly: the write must end
  // within write_timeout_ms like any other.
  expires_after(std::chrono::milliseconds(hub_->config.write_timeout_ms));
  respond(std::move(res));
}

bool HttpRouter::admit(std::optional<JwtIdentity>& identity) {
  if (!hub_->intake_open) {
    hub_->connections_refused.add();
    respond_text(http::status::service_unavailable, "shutting down\n");
    return false;
  }
  if (!origin_allowed()) {
    note_refused_origin();
    respond_text(http::status::forbidden, "origin not allowed\n");
    return false;
  }
  // The token is checked before the limits: a client without one learns nothing about the load.
  if (hub_->verifier) {
    const auto& req = parser_->get();
    const std::string token = token_from_request(view(req[http::field::authorization]), view(req.target()));
    // A Socket.IO client may bring its token in CONNECT's auth data instead.
    const bool later = token.empty() && sio_request_;
    if (!later) {
      auto result = hub_->verifier->verify(token, now_ms());
      if (!result) {
        hub_->note_auth_refused(result.error(), address_);
        // RFC 6750 section 3: no error code when the request carried no token.
        const std::string challenge = result.error() == JwtError::missing
                                          ? std::string("Bearer realm=\"nudge\"")
                                          : "Bearer realm=\"nudge\", error=\"invalid_token\", error_description=\"" +
                                                std::string(to_string(result.error())) + "\"";
        respond_text(http::status::unauthorized, "unauthorized: " + std::string(to_string(result.error())) + "\n",
                     challenge);
        return false;
      }
      identity = std::move(result.identity());
    }
  }
  return true;
}

void HttpRouter::upgrade() {
  std::optional<JwtIdentity> identity;
  if (!admit(identity)) return;
  accept_websocket(std::move(identity), nullptr, false);
}

void HttpRouter::accept_websocket(std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio, bool probe) {
  const auto& req = parser_->get();
  if (req[http::field::sec_websocket_version] != "13") {
    if (probe) sio->probe_ended();
    http::response<http::string_body> res{http::status::upgrade_required, req.version()};
    res.set(http::field::server, detail::kServer);
    res.set(http::field::sec_websocket_version, "13");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "this server speaks WebSocket version 13\n";
    res.prepare_payload();
    return respond(std::move(res));
  }
  const std::string_view key = view(req[http::field::sec_websocket_key]);
  if (!valid_websocket_key(key)) {
    if (probe) sio->probe_ended();
    return respond_text(http::status::bad_request, "missing or malformed Sec-WebSocket-Key\n");
  }
  if (!probe) {
    // The client counted: a native WebSocket, or a Socket.IO session that
    // starts on this connection (the probe of a session counted already is not).
    std::string why;
    const bool opened = sio ? hub_->open_socketio_session(peer_, sio->counted(), why)
                            : hub_->open_client(peer_, forwarded_, WsSession::Counted::client, why);
    if (!opened) {
      hub_->connections_refused.add();
      hub_->logger.debug("refused a WebSocket from '", address_, "': ", why);
      return respond_text(http::status::service_unavailable, why + "\n");
    }
  }
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
      websocket_accept_key(key) + "\r\nServer: " + detail::kServer + "\r\n\r\n";
  // A client may send its first frames right behind the request.
  std::string early(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  // A Socket.IO session holds its client's identity itself.
  if (sio) identity.reset();
  hand_over(std::move(response), std::move(early), std::move(identity), std::move(sio), probe);
}

void HttpRouter::serve_socketio() {
  sio_request_ = true;
  const auto& req = parser_->get();
  const std::string_view target = view(req.target());
  if (!origin_allowed()) {
    hub_->socketio_refused.add();
    note_refused_origin();
    return respond_socketio_error(http::status::forbidden, 4, "Forbidden");
  }
  if (req.method() == http::verb::options) {
    // The CORS preflight of a cross-origin POST (Content-Type: text/plain is
    // simple, but clients that set extraHeaders preflight every request).
    http::response<http::empty_body> res{http::status::no_content, req.version()};
    res.set(http::field::server, detail::kServer);
    add_cors(res);
    res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
    const auto asked = req[http::field::access_control_request_headers];
    res.set(http::field::access_control_allow_headers, asked.empty() ? "content-type" : asked);
    res.set(http::field::access_control_max_age, "86400");
    res.keep_alive(req.keep_alive());
    return respond(std::move(res));
  }
  if (query_parameter(target, "EIO") != "4")
    return respond_socketio_error(http::status::bad_request, 5, "Unsupported protocol version");
  const auto transport = query_parameter(target, "transport");
  if (transport != "polling" && transport != "websocket")
    return respond_socketio_error(http::status::bad_request, 0, "Transport unknown");
  const std::string sid(query_parameter(target, "sid"));
  std::shared_ptr<SioSession> session;
  if (!sid.empty()) {
    const auto it = hub_->sio_sessions.find(sid);
    if (it == hub_->sio_sessions.end())
      return respond_socketio_error(http::status::bad_request, 1, "Session ID unknown");
    session = it->second;
  }
  if (beast::websocket::is_upgrade(req)) {
    if (transport != "websocket") return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    return upgrade_socketio(std::move(session));
  }
  if (transport != "polling") return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  if (req.method() == http::verb::get) return poll_socketio(std::move(session));
  if (req.method() == http::verb::post) return post_socketio(std::move(session));
  respond_socketio_error(http::status::bad_request, 2, "Bad handshake method");
}

void HttpRouter::upgrade_socketio(std::shared_ptr<SioSession> session) {
  if (session) {
    // One upgrade per session, from polling: a second probe, or one for a
    // session on a WebSocket already, is refused.
    if (!session->begin_probe()) {
      hub_->socketio_refused.add();
      return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    }
    return accept_websocket(std::nullopt, std::move(session), true);
  }
  std::optional<JwtIdentity> identity;
  if (!admit(identity)) return;
  auto created = std::make_shared<SioSession>(hub_, address_, peer_, identity, false);
  return accept_websocket(std::move(identity), std::move(created), false);
}

void HttpRouter::poll_socketio(std::shared_ptr<SioSession> session) {
  if (!session) {
    std::optional<JwtIdentity> identity;
    if (!admit(identity)) return;
    auto created = std::make_shared<SioSession>(hub_, address_, peer_, std::move(identity), true);
    std::string why;
    if (!hub_->open_socketio_session(peer_, created->counted(), why)) {
      hub_->connections_refused.add();
      return respond_socketio_error(http::status::service_unavailable, 3, why);
    }
    return answer_socketio(created->start());
  }
  if (!session->polling()) return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  // A long poll: answered when the session has something to send (a ping
  // at the latest), so it must not time out meanwhile.
  expires_after(std::nullopt);
  const bool parked =
      session->poll([self = shared_from_this()](std::string body) { self->answer_socketio(std::move(body)); });
  if (!parked) {
    // Two polls at once break the protocol: the session ends.
    hub_->socketio_refused.add();
    session->close(CloseCode::protocol_error, "overlapping polls");
    return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  }
}

void HttpRouter::post_socketio(std::shared_ptr<SioSession> session) {
  if (!session) return respond_socketio_error(http::status::bad_request, 1, "Session ID unknown");
  if (!session->polling()) return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  // Answered once every packet is taken: while the pipeline is full that
  // waits, and the client sends nothing more meanwhile (backpressure).
  expires_after(std::nullopt);
  const bool taken = session->on_post(std::move(parser_->get().body()),
                                      [self = shared_from_this()] { self->answer_socketio("ok", "text/html"); });
  if (!taken) {
    // Two POSTs at once break the protocol as two polls do.
    hub_->socketio_refused.add();
    session->close(CloseCode::protocol_error, "overlapping POST requests");
    return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  }
}

void HttpRouter::answer_socketio(std::string body, std::string_view content_type) {
  const auto& req = parser_->get();
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  add_cors(res);
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  // Whatever waited (a long poll, a POST held for the pipeline), the answer
  // must get through in time.
  expires_after(std::chrono::milliseconds(hub_->config.write_timeout_ms));
  respond(std::move(res));
}

template <class Response>
void HttpRouter::add_cors(Response& res) const {
  const auto& req = parser_->get();
  const auto origin = req.find(http::field::origin);
  if (origin == req.end()) return;
  // Only reached for allowed origins (origin_allowed checked first).
  res.set(http::field::access_control_allow_origin, origin->value());
  res.set(http::field::access_control_allow_credentials, "true");
  res.set(http::field::vary, "Origin");
}

void HttpRouter::respond_socketio_error(http::status status, int code, std::string_view message) {
  http::response<http::string_body> res{status, parser_ ? parser_->get().version() : 11};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, "application/json");
  if (parser_ && status != http::status::forbidden) add_cors(res);
  res.keep_alive(false);
  res.body() = "{\"code\":" + std::to_string(code) + ",\"message\":" + json_string(message) + "}";
  res.prepare_payload();
  respond(std::move(res));
}

void HttpRouter::respond_text(http::status status, std::string body, std::string www_authenticate) {
  http::response<http::string_body> res{status, parser_ ? parser_->get().version() : 11};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (!www_authenticate.empty()) res.set(http::field::www_authenticate, www_authenticate);
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  respond(std::move(res));
}

}  // namespace nudge::plugins::websocket
