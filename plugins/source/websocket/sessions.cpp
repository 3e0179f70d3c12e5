#include "sessions_impl.hpp"

namespace nudge::plugins::websocket {

Hub::Hub(const WebSocketConfig& cfg, Context& ctx)
    : config(cfg),
      logger(ctx.logger()),
      instance_id(ctx.instance_id()),
      resends(std::chrono::milliseconds(cfg.resend_window_ms), static_cast<std::size_t>(cfg.resend_max_entries)),
      connections_accepted(ctx.metrics().counter("connections_accepted", "WebSocket connections accepted")),
      connections_refused(ctx.metrics().counter("connections_refused", "Upgrades refused (limits, origin)")),
      connections_open(ctx.metrics().gauge("connections_open", "WebSocket connections open")),
      frames_in(ctx.metrics().counter("frames_in", "Client frames received")),
      frames_refused(ctx.metrics().counter("frames_refused", "Client frames answered with an error")),
      frames_rate_limited(ctx.metrics().counter("frames_rate_limited", "Client frames refused for the rate limit")),
      messages_delivered(ctx.metrics().counter("messages_delivered", "Message frames queued to clients")),
      slow_clients_dropped(ctx.metrics().counter("slow_clients_dropped", "Clients dropped for a full send queue")),
      auth_refused(ctx.metrics().counter("auth_refused", "Upgrades refused for a missing or invalid token")),
      auth_expired(ctx.metrics().counter("auth_expired", "Connections closed because their token expired")),
      tls_handshakes_failed(ctx.metrics().counter("tls_handshakes_failed", "TLS handshakes that failed or timed out")),
      tls_plaintext_refused(
          ctx.metrics().counter("tls_plaintext_refused", "Plaintext connections refused by the TLS listener")),
      resends_recognised(ctx.metrics().counter(
          "resends_recognised", "Sends recognised by their ref as a resend, answered without a second message")),
      ref_conflicts(ctx.metrics().counter("ref_conflicts", "Sends refused for reusing a ref for another message")),
      protocol_errors(ctx.metrics().counter(
          "protocol_errors", "Connections closed for breaking the WebSocket protocol (1002, 1007, 1009)")),
      idle_closed(ctx.metrics().counter("idle_closed", "Connections cut after idle_timeout_ms without a byte")) {}

void Hub::join(WsSession* session, const std::string& room) {
  auto& members = rooms[room];
  const bool first = members.empty();
  members.insert(session);
  if (first && ingress) ingress->set_room_interest(room, true);
}

void Hub::leave(WsSession* session, const std::string& room) {
  auto it = rooms.find(room);
  if (it == rooms.end()) return;
  it->second.erase(session);
  if (it->second.empty()) {
    rooms.erase(it);
    if (ingress) ingress->set_room_interest(room, false);
  }
}

void Hub::remove(WsSession* session) {
  if (!sessions.erase(session)) return;
  connections_open.add(-1);
  if (auto it = connections_by_address.find(session->address()); it != connections_by_address.end() && --it->second == 0)
    connections_by_address.erase(it);
  for (const auto& room : session->rooms()) leave(session, room);
  if (sessions.empty() && on_last_session_closed) std::exchange(on_last_session_closed, nullptr)();
}

void Hub::note_auth_refused(JwtError error, const std::string& address) {
  auth_refused.add();
  connections_refused.add();
  std::uint64_t held_back = 0;
  if (auth_log_.allow(held_back))
    logger.warn("refused a WebSocket from '", address, "': ", to_string(error), " (", held_back,
                " more refused for their token since the last report)");
  else
    logger.debug("refused a WebSocket from '", address, "': ", to_string(error));
}

void Hub::note_tls_failure(const std::string& address, std::string_view what, bool plaintext) {
  tls_handshakes_failed.add();
  if (plaintext) tls_plaintext_refused.add();
  std::uint64_t held_back = 0;
  if (plaintext && tls_log_.allow(held_back))
    logger.warn("a client at '", address, "' spoke plaintext to the TLS port (use https:// and wss://); ",
                held_back, " more refused since the last report");
  else
    logger.debug("TLS handshake with '", address, "' failed: ", what);
}

// -------------------------------------------------------------- TlsDetector

TlsDetector::TlsDetector(std::shared_ptr<Hub> hub, tcp::socket&& socket)
    : hub_(std::move(hub)), stream_(std::move(socket)) {}

void TlsDetector::run() {
  stream_.expires_after(std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
  beast::async_detect_ssl(stream_, buffer_, beast::bind_front_handler(&TlsDetector::on_detect, shared_from_this()));
}

void TlsDetector::on_detect(beast::error_code ec, bool is_tls) {
  // A connection closed before its first byte (a port probe) is no handshake.
  if (ec == boost::asio::error::eof && buffer_.size() == 0) return;
  if (ec) return hub_->note_tls_failure(remote_address(stream_), ec.message(), false);
  if (is_tls) {
    auto& context = *hub_->tls;
    return std::make_shared<HttpSession<TlsStream>>(hub_, TlsStream(std::move(stream_), context), std::move(buffer_))
        ->run();
  }
  hub_->note_tls_failure(remote_address(stream_), "the client spoke plaintext", true);
  // Whatever it sent, one short HTTP answer says what to do instead.
  auto res = std::make_shared<http::response<http::string_body>>(http::status::bad_request, 11);
  res->set(http::field::server, kServer);
  res->set(http::field::content_type, "text/plain; charset=utf-8");
  res->keep_alive(false);
  res->body() = "this port speaks TLS: use https:// for the page and wss:// for the WebSocket\n";
  res->prepare_payload();
  http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
    if (ec) return;
    self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    self->stream_.expires_after(std::chrono::seconds(1));
    self->drain();
  });
}

void TlsDetector::drain() {
  // Reading what the client still sends until it closes lets the answer
  // arrive: closing with unread bytes would reset the connection under it.
  buffer_.consume(buffer_.size());
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (!ec) self->drain();
  });
}

}  // namespace nudge::plugins::websocket
