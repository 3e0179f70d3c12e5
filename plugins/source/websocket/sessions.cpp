#include "sessions_impl.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "socketio.hpp"

namespace nudge::plugins::websocket {

Hub::Hub(const WebSocketConfig& cfg, Context& ctx)
    : config(cfg),
      logger(ctx.logger()),
      instance_id(ctx.instance_id()),
      resends(std::chrono::milliseconds(cfg.resend_window_ms), static_cast<std::size_t>(cfg.resend_max_entries)),
      connections_accepted(ctx.metrics().counter("connections_accepted", "WebSocket connections accepted")),
      connections_refused(ctx.metrics().counter("connections_refused", "Upgrades refused (limits, origin)")),
      connections_open(ctx.metrics().gauge("connections_open", "WebSocket connections open")),
      rooms_open(ctx.metrics().gauge("rooms", "Rooms with at least one local client")),
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
      idle_closed(ctx.metrics().counter("idle_closed", "Connections cut after idle_timeout_ms without a byte")),
      socketio_sessions(ctx.metrics().counter("socketio_sessions", "Socket.IO sessions opened")),
      socketio_upgrades(ctx.metrics().counter("socketio_upgrades", "Socket.IO sessions upgraded from polling to WebSocket")),
      socketio_refused(ctx.metrics().counter("socketio_refused",
                                             "Socket.IO requests refused (unknown sid, bad transport, payload too large)")),
      history_sent(ctx.metrics().counter("history_sent", "Messages sent from history on joining or catching up")),
      history_failures(ctx.metrics().counter("history_failures", "Joins whose history could not be read")) {}

// ---------------------------------------------------------------- Outbound

const std::shared_ptr<const std::string>& Outbound::native_frame() {
  if (!native_made_) {
    native_made_ = true;
    const std::string json = message_frame(*message_, history_);
    if (!json.empty()) native_frame_ = std::make_shared<const std::string>(encode_frame(Opcode::text, json));
  }
  return native_frame_;
}

const std::shared_ptr<const std::string>& Outbound::socketio_packet() {
  if (!socketio_made_) {
    socketio_made_ = true;
    // The original design's clients read `message` events carrying JSON
    // text with at least `message`; the JSON travels as a string argument.
    const Message& m = *message_;
    rapidjson::StringBuffer inner;
    {
      rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::CrtAllocator,
                        rapidjson::kWriteValidateEncodingFlag>
          w(inner);
      const std::string id = m.id.to_string();
      bool ok = w.StartObject() && w.Key("message") &&
                w.String(m.payload.data(), static_cast<rapidjson::SizeType>(m.payload.size())) && w.Key("id") &&
                w.String(id.data(), static_cast<rapidjson::SizeType>(id.size())) && w.Key("room") &&
                w.String(m.room.data(), static_cast<rapidjson::SizeType>(m.room.size())) && w.Key("sender") &&
                w.String(m.sender.data(), static_cast<rapidjson::SizeType>(m.sender.size())) && w.Key("ts") &&
                w.Int64(m.timestamp_ms);
      if (history_) ok = ok && w.Key("history") && w.Bool(true);
      if (!ok || !w.EndObject()) return socketio_packet_;
    }
    rapidjson::StringBuffer quoted;
    rapidjson::Writer<rapidjson::StringBuffer> q(quoted);
    q.String(inner.GetString(), static_cast<rapidjson::SizeType>(inner.GetSize()));
    socketio_packet_ = std::make_shared<const std::string>(
        socketio::event_packet("message", "[" + std::string(quoted.GetString(), quoted.GetSize()) + "]"));
  }
  return socketio_packet_;
}

const std::shared_ptr<const std::string>& Outbound::socketio_frame() {
  if (!socketio_frame_ && socketio_packet())
    socketio_frame_ = std::make_shared<const std::string>(encode_frame(Opcode::text, *socketio_packet_));
  return socketio_frame_;
}

// --------------------------------------------------------------- WsSession

void WsSession::deliver(Outbound& message) {
  if (catching_up_) {
    if (auto it = catching_up_->find(message.message()->room); it != catching_up_->end()) {
      auto& held = it->second.held;
      if (held.size() >= static_cast<std::size_t>(hub_->config.max_send_queue)) {
        hub_->slow_clients_dropped.add();
        return close(CloseCode::policy_error, "too many messages while the room's history was read");
      }
      held.push_back(message.message());
      return;
    }
  }
  deliver_live(message);
}

void WsSession::join_room(const std::string& room, std::optional<MessageId> after) {
  if (!rooms_.insert(room).second) return history_done(room, 0, Status::success());
  hub_->join(this, room);
  const bool wanted = after ? hub_->config.catch_up_max_messages > 0 : hub_->config.history_messages > 0;
  if (!wanted || !hub_->ingress || !hub_->ingress->has_history()) return history_done(room, 0, Status::success());
  if (!catching_up_) catching_up_ = std::make_unique<std::unordered_map<std::string, CatchUp>>();
  auto& state = (*catching_up_)[room];
  state = CatchUp{};
  state.after = after.has_value();
  read_history(room, after);
}

/// Messages asked for at once while catching up; more are read page by page.
static constexpr std::size_t kCatchUpPage = 500;

void WsSession::read_history(const std::string& room, std::optional<MessageId> after) {
  HistoryQuery query;
  query.room = room;
  query.after = after;
  query.limit = after ? kCatchUpPage : static_cast<std::size_t>(hub_->config.history_messages);
  hub_->ingress->read_history(std::move(query), [weak = weak_self(), room](Status status, std::vector<MessagePtr> messages) {
    if (auto self = weak.lock()) self->on_history(room, status, std::move(messages));
  });
}

void WsSession::on_history(const std::string& room, const Status& status, std::vector<MessagePtr> messages) {
  if (!catching_up_ || !rooms_.contains(room)) return;  // left (or closed) meanwhile
  const auto it = catching_up_->find(room);
  if (it == catching_up_->end()) return;
  auto& state = it->second;
  if (!status.ok()) {
    hub_->logger.debug("history of room '", room, "' unreadable: ", status.message());
    return finish_catch_up(room, status);
  }
  const std::size_t page = messages.size();
  const std::size_t budget = static_cast<std::size_t>(hub_->config.catch_up_max_messages);
  for (auto& m : messages) {
    if (state.after && state.sent.size() >= budget) break;
    if (!state.sent.insert(m->id).second) continue;
    Outbound out(m, true);
    send_history(out);
    hub_->history_sent.add();
  }
  if (state.after && page == kCatchUpPage && state.sent.size() < budget)
    return read_history(room, messages.back()->id);
  finish_catch_up(room, Status::success());
}

void WsSession::finish_catch_up(const std::string& room, const Status& status) {
  auto node = catching_up_->extract(room);
  if (catching_up_->empty()) catching_up_.reset();
  auto& state = node.mapped();
  const std::size_t count = state.sent.size();
  history_done(room, count, status);
  // Live messages that arrived meanwhile, less those history already sent.
  for (auto& m : state.held) {
    if (state.sent.contains(m->id)) continue;
    Outbound out(m);
    deliver_live(out);
  }
}

bool WsSession::leave_room(const std::string& room) {
  if (!rooms_.erase(room)) return false;
  hub_->leave(this, room);
  if (catching_up_) {
    catching_up_->erase(room);
    if (catching_up_->empty()) catching_up_.reset();
  }
  return true;
}

void Hub::join(WsSession* session, const std::string& room) {
  auto& members = rooms[room];
  const bool first = members.empty();
  members.insert(session);
  if (first) {
    rooms_open.set(static_cast<std::int64_t>(rooms.size()));
    if (ingress) ingress->set_room_interest(room, true);
  }
}

void Hub::leave(WsSession* session, const std::string& room) {
  auto it = rooms.find(room);
  if (it == rooms.end()) return;
  it->second.erase(session);
  if (it->second.empty()) {
    rooms.erase(it);
    rooms_open.set(static_cast<std::int64_t>(rooms.size()));
    if (ingress) ingress->set_room_interest(room, false);
  }
}

void Hub::remove(WsSession* session) {
  if (!sessions.erase(session)) return;
  if (session->counted()) {
    --connections;
    connections_open.add(-1);
    if (auto it = connections_by_address.find(session->address());
        it != connections_by_address.end() && --it->second == 0)
      connections_by_address.erase(it);
  }
  for (const auto& room : session->rooms()) leave(session, room);
  if (sessions.empty() && on_last_session_closed) std::exchange(on_last_session_closed, nullptr)();
}

void Hub::reconfigure(const WebSocketConfig& next) {
  config.apply_live(next);
  for (WsSession* session : sessions) session->apply_limits();
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
