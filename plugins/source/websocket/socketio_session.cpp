#include "socketio_session.hpp"

#include <rapidjson/document.h>

#include "json_writer.hpp"
#include "nudge/sdk/text.hpp"

namespace nudge::plugins::websocket {

namespace {

/// Separates packets in a long-polling body (Engine.IO v4).
constexpr char kRecordSeparator = '\x1e';


/// A string member of an object, or the value itself when it is a string
/// (`join "room"` and `join {room: "room"}` both work).
std::optional<std::string> string_arg(const rapidjson::Value& value, const char* key) {
  if (value.IsString()) return std::string(value.GetString(), value.GetStringLength());
  if (!value.IsObject()) return std::nullopt;
  const auto it = value.FindMember(key);
  if (it == value.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}


}  // namespace

SioSession::SioSession(std::shared_ptr<Hub> hub, std::string address, std::optional<JwtIdentity> identity,
                       bool polling)
    : WsSession(std::move(hub), std::move(address)),
      sid_(MessageId::generate().to_string()),
      polling_(polling),
      identity_(std::move(identity)),
      bucket_(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
              TokenBucket::Clock::now()) {
  if (identity_) name_ = identity_->name;
}

SioSession::~SioSession() { hub_->remove(this); }

std::string SioSession::start() {
  hub_->sessions.insert(this);
  hub_->sio_sessions.emplace(sid_, shared_from_this());
  ++hub_->connections_by_address[address_];
  ++hub_->connections;
  hub_->connections_open.add(1);
  hub_->connections_accepted.add();
  hub_->socketio_sessions.add();
  next_ping_ = Clock::now() + std::chrono::milliseconds(hub_->config.ping_interval_ms);
  auto open = socketio::open_packet(sid_, polling_, hub_->config.ping_interval_ms, hub_->config.ping_timeout_ms,
                                    hub_->config.max_message_bytes);
  if (!polling_) send_packet(open);
  return open;
}

// ------------------------------------------------------------- transports

bool SioSession::poll(std::function<void(std::string)> answer) {
  if (poll_waiter_) return false;
  poll_waiter_ = std::move(answer);
  if (upgrading_) {
    // Between the probe and "5", polls are answered at once: the client
    // waits for its poll to return before it completes the upgrade.
    std::exchange(poll_waiter_, nullptr)("6");
    return true;
  }
  if (ended_) {
    // The session ended between polls: this one learns it.
    std::exchange(poll_waiter_, nullptr)("1");
    return true;
  }
  flush_poll();
  return true;
}

void SioSession::flush_poll() {
  if (!poll_waiter_ || poll_queue_.empty()) return;
  std::size_t bytes = 0;
  for (const auto& p : poll_queue_) bytes += p->size() + 1;
  std::string body;
  body.reserve(bytes);
  for (const auto& p : poll_queue_) {
    if (!body.empty()) body.push_back(kRecordSeparator);
    body.append(*p);
  }
  poll_queue_.clear();
  std::exchange(poll_waiter_, nullptr)(std::move(body));
}

void SioSession::on_post(std::string_view body) {
  while (!ended_) {
    const auto end = body.find(kRecordSeparator);
    const auto packet = body.substr(0, end);
    if (!packet.empty() && packet[0] == 'b') {
      // A base64 binary packet (attachments): this server reads text only.
      if (attachments_to_skip_ > 0) --attachments_to_skip_;
      else refuse(std::nullopt, "bad_request", "binary data is not supported; send JSON");
    } else {
      on_packet(packet);
    }
    if (end == std::string_view::npos) break;
    body.remove_prefix(end + 1);
  }
}

void SioSession::on_probe() {
  upgrading_ = true;
  // The waiting poll returns at once, so the client sees the upgrade through.
  if (poll_waiter_) {
    poll_queue_.push_back(std::make_shared<const std::string>("6"));
    flush_poll();
  }
}

void SioSession::attach_websocket(std::shared_ptr<WsSession> ws) {
  if (ended_) return ws->close(CloseCode::normal, "session ended");
  if (polling_) hub_->socketio_upgrades.add();
  websocket_ = ws;
  polling_ = false;
  upgrading_ = false;
  // What was waiting for the next poll goes out on the WebSocket, in order.
  for (auto& packet : poll_queue_) ws->send(std::make_shared<const std::string>(encode_frame(Opcode::text, *packet)));
  poll_queue_.clear();
  if (poll_waiter_) std::exchange(poll_waiter_, nullptr)("6");
}

void SioSession::websocket_closed(const WsSession* ws) {
  const auto current = websocket_.lock();
  if (!polling_ && (!current || current.get() == ws)) end("transport close");
}

void SioSession::send(std::shared_ptr<const std::string> frame) {
  if (auto ws = websocket_.lock(); ws && !polling_) ws->send(std::move(frame));
}

void SioSession::send_packet(std::shared_ptr<const std::string> packet, std::shared_ptr<const std::string> frame) {
  if (ended_) return;
  if (!polling_) {
    if (auto ws = websocket_.lock())
      ws->send(frame ? std::move(frame) : std::make_shared<const std::string>(encode_frame(Opcode::text, *packet)));
    return;
  }
  if (poll_queue_.size() >= static_cast<std::size_t>(hub_->config.max_send_queue)) {
    hub_->slow_clients_dropped.add();
    hub_->logger.debug("dropping a Socket.IO client from '", address_, "' that does not poll (", poll_queue_.size(),
                       " packets waiting)");
    return end("send queue full: client too slow");
  }
  poll_queue_.push_back(std::move(packet));
  flush_poll();
}

// -------------------------------------------------------------- Engine.IO

void SioSession::on_packet(std::string_view text) {
  if (ended_) return;
  const auto packet = socketio::parse_engine_packet(text);
  if (!packet) {
    hub_->protocol_errors.add();
    hub_->logger.debug("closing a Socket.IO session from '", address_, "': not an Engine.IO packet");
    return end("parse error");
  }
  switch (packet->type) {
    case socketio::EngineType::pong:
      awaiting_pong_ = false;
      next_ping_ = Clock::now() + std::chrono::milliseconds(hub_->config.ping_interval_ms);
      return;
    case socketio::EngineType::ping: return send_packet("3" + std::string(packet->data));
    case socketio::EngineType::message: return on_socketio(packet->data);
    case socketio::EngineType::close: return end("client close");
    case socketio::EngineType::noop: return;
    case socketio::EngineType::open:
    case socketio::EngineType::upgrade:
      hub_->protocol_errors.add();
      return end("parse error");
  }
}

void SioSession::on_binary() {
  if (attachments_to_skip_ > 0) {
    --attachments_to_skip_;
    return;
  }
  refuse(std::nullopt, "bad_request", "binary data is not supported; send JSON");
}

void SioSession::apply_limits() {
  bucket_.reconfigure(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
                      TokenBucket::Clock::now());
}

void SioSession::check_timeouts(Clock::time_point now) {
  if (ended_) return;
  if (awaiting_pong_) {
    if (now < pong_deadline_) return;
    hub_->idle_closed.add();
    hub_->logger.debug("closing a Socket.IO session from '", address_, "': no pong within ",
                       hub_->config.ping_timeout_ms, " ms");
    return end("ping timeout");
  }
  if (now >= next_ping_) {
    awaiting_pong_ = true;
    pong_deadline_ = now + std::chrono::milliseconds(hub_->config.ping_timeout_ms);
    send_packet("2");
  }
}

void SioSession::shutdown() { close(CloseCode::going_away, "server shutting down"); }

void SioSession::close(CloseCode code, std::string_view reason) {
  if (ended_) return;
  if (connected_) send_packet("41");  // the namespace is disconnected by the server
  if (auto ws = websocket_.lock(); ws && !polling_) ws->close(code, reason);
  end(reason);
}

void SioSession::end(std::string_view reason) {
  if (ended_) return;
  auto self = shared_from_this();  // the hub's reference goes below
  ended_ = true;
  for (const auto& room : std::set<std::string>(rooms_)) leave_room(room);
  hub_->sio_sessions.erase(sid_);
  hub_->remove(this);
  if (auto ws = websocket_.lock(); ws && !polling_) ws->close(CloseCode::normal, reason);
  // A poll waiting now learns the session is over.
  if (poll_waiter_) std::exchange(poll_waiter_, nullptr)("1");
}

// -------------------------------------------------------------- Socket.IO

void SioSession::on_socketio(std::string_view text) {
  if (const auto binary = socketio::parse_binary_header(text)) {
    // Its attachments follow as binary messages: skip them; a refusal answers its ack.
    attachments_to_skip_ = binary->attachments;
    hub_->frames_refused.add();
    return refuse(binary->ack_id, "bad_request", "binary data is not supported; send JSON");
  }
  socketio::ParseError error;
  const auto packet = socketio::parse_packet(text, error);
  if (!packet) {
    hub_->frames_refused.add();
    hub_->logger.debug("refused a Socket.IO packet from '", address_, "': ", error.message);
    return refuse(std::nullopt, "bad_packet", error.message);
  }
  if (packet->nsp != "/") {
    if (packet->type == socketio::PacketType::connect)
      return send_packet(socketio::connect_error_packet(packet->nsp, "Invalid namespace"));
    return;  // nothing else is served on another namespace
  }
  switch (packet->type) {
    case socketio::PacketType::connect: return on_connect(*packet);
    case socketio::PacketType::disconnect: return end("client namespace disconnect");
    case socketio::PacketType::event:
      if (!connected_) return;
      return on_event(*packet);
    case socketio::PacketType::ack: return;  // this server asks for no acks
    default: return;
  }
}

void SioSession::on_connect(const socketio::Packet& packet) {
  if (connected_) return;
  rapidjson::Document auth;
  if (!packet.data.empty()) auth.Parse<kJsonParseFlags>(packet.data.data(), packet.data.size());
  const bool has_auth = !packet.data.empty() && auth.IsObject();
  auto member = [&](const char* key) -> std::optional<std::string> {
    if (!has_auth) return std::nullopt;
    return string_arg(auth, key);
  };
  if (hub_->verifier && !identity_) {
    // Socket.IO clients pass tokens in the auth data: io(url, {auth: {token}}).
    const auto token = member("token");
    auto result = hub_->verifier->verify(token.value_or(""), now_ms());
    if (!result) {
      hub_->note_auth_refused(result.error(), address_);
      send_packet(socketio::connect_error_packet("/", "unauthorized: " + std::string(to_string(result.error()))));
      return;
    }
    identity_ = std::move(result.identity());
    name_ = identity_->name;
  }
  std::string room = hub_->config.socketio_default_room;
  if (auto requested = member("room")) {
    if (!is_valid_room(*requested)) {
      send_packet(socketio::connect_error_packet("/", "invalid room name: use 1 to 128 characters of A-Z a-z 0-9 _ - . :"));
      return;
    }
    room = std::move(*requested);
  }
  std::optional<MessageId> after;
  if (auto last = member("after")) {
    after = MessageId::parse(*last);
    if (!after) {
      send_packet(socketio::connect_error_packet("/", "'after' must be the id of a message (a UUID string)"));
      return;
    }
  }
  if (auto name = member("name"); name && !identity_) {
    if (!is_valid_name(*name)) {
      send_packet(socketio::connect_error_packet("/", "'name' must be 1 to 64 bytes without control characters"));
      return;
    }
    name_ = std::move(*name);
  }
  connected_ = true;
  send_packet(socketio::connect_packet(sid_));
  current_room_ = room;
  join_room(room, after);
}

void SioSession::on_event(const socketio::Packet& packet) {
  const auto ack = packet.ack_id;
  if (!bucket_.allow(TokenBucket::Clock::now())) {
    hub_->frames_rate_limited.add();
    refuse(ack, "rate_limited", "too many events; slow down");
    if (++rate_strikes_ >= hub_->config.rate_limit_strikes) {
      hub_->logger.debug("closing a Socket.IO session from '", address_, "' after ", rate_strikes_,
                         " events refused for the rate limit");
      close(CloseCode::policy_error, "rate limit exceeded");
    }
    return;
  }
  hub_->frames_in.add();
  if (packet.event == "event:message" || packet.event == "message") return on_send(packet.args, ack);
  rapidjson::Document args;
  args.Parse<kJsonParseFlags>(packet.args.data(), packet.args.size());
  const rapidjson::Value* first = args.IsArray() && !args.Empty() ? &args[0] : nullptr;
  if (packet.event == "join") {
    auto room = first ? string_arg(*first, "room") : std::nullopt;
    if (!room || !is_valid_room(*room)) {
      hub_->frames_refused.add();
      return refuse(ack, "bad_request", "join takes a room name: 1 to 128 characters of A-Z a-z 0-9 _ - . :");
    }
    std::optional<MessageId> after;
    if (first->IsObject() && first->HasMember("after")) {
      auto last = string_arg(*first, "after");
      after = last ? MessageId::parse(*last) : std::nullopt;
      if (!after) {
        hub_->frames_refused.add();
        return refuse(ack, "bad_request", "'after' must be the id of a message (a UUID string)");
      }
    }
    current_room_ = *room;
    if (ack) join_acks_[*room] = *ack;
    return join_room(*room, after);
  }
  if (packet.event == "leave") {
    auto room = first ? string_arg(*first, "room") : std::nullopt;
    if (!room) {
      hub_->frames_refused.add();
      return refuse(ack, "bad_request", "leave takes a room name");
    }
    const bool was_in = leave_room(*room);
    if (current_room_ == *room) current_room_ = rooms_.empty() ? std::string() : *rooms_.rbegin();
    return ack_ok(ack, "\"room\":" + json_string(*room) + ",\"left\":" + (was_in ? "true" : "false"));
  }
  if (packet.event == "hello") {
    auto name = first ? string_arg(*first, "name") : std::nullopt;
    if (!name || !is_valid_name(*name)) {
      hub_->frames_refused.add();
      return refuse(ack, "bad_request", "hello takes a name: 1 to 64 bytes without control characters");
    }
    if (identity_ && *name != identity_->name) {
      hub_->frames_refused.add();
      return refuse(ack, "forbidden",
                    "this connection is authenticated as '" + identity_->name + "'; its name comes from the token");
    }
    name_ = std::move(*name);
    return ack_ok(ack, "\"name\":" + json_string(name_));
  }
  hub_->frames_refused.add();
  refuse(ack, "unknown_event",
         "unknown event; expected event:message, join, leave or hello");
}

void SioSession::on_send(std::string_view args_json, std::optional<std::uint64_t> ack) {
  rapidjson::Document args;
  args.Parse<kJsonParseFlags>(args_json.data(), args_json.size());
  const rapidjson::Value* first = args.IsArray() && !args.Empty() ? &args[0] : nullptr;
  auto text = first ? string_arg(*first, "message") : std::nullopt;
  if (!text || !is_valid_utf8(*text)) {
    hub_->frames_refused.add();
    return refuse(ack, "bad_request", "event:message takes {message: \"text\"} (and optionally room)");
  }
  std::string room = current_room_;
  if (first->IsObject() && first->HasMember("room")) {
    auto named = string_arg(*first, "room");
    if (!named) {
      hub_->frames_refused.add();
      return refuse(ack, "bad_request", "'room' must be a string");
    }
    room = std::move(*named);
  }
  if (room.empty() || !rooms_.contains(room)) {
    hub_->frames_refused.add();
    return refuse(ack, "not_joined", "join room '" + room + "' before sending to it");
  }
  if (!hub_->ingress || !hub_->intake_open)
    return refuse(ack, "unavailable", "the server is shutting down; send again after reconnecting");
  auto message = std::make_shared<Message>();
  message->id = MessageId::generate();
  message->room = std::move(room);
  message->sender = name_;
  message->payload = std::move(*text);
  message->timestamp_ms = now_ms();
  message->origin = hub_->instance_id;
  const MessageId id = message->id;
  hub_->ingress->publish(std::move(message), [weak = weak_from_this(), ack, id](Status status) {
    auto self = weak.lock();
    if (!self) return;
    if (status.ok()) self->ack_ok(ack, "\"id\":\"" + id.to_string() + "\"");
    else self->refuse(ack, error_code_for(status.code()), status.message());
  });
}

void SioSession::refuse(std::optional<std::uint64_t> ack, std::string_view code, std::string_view message) {
  const std::string error = "{\"code\":" + json_string(code) + ",\"message\":" + json_string(message) + "}";
  if (ack) return send_packet(socketio::ack_packet(*ack, "[{\"ok\":false,\"error\":" + error + "}]"));
  send_packet(socketio::event_packet("error", "[" + error + "]"));
}

void SioSession::ack_ok(std::optional<std::uint64_t> ack, std::string_view fields_json) {
  if (!ack) return;
  send_packet(socketio::ack_packet(*ack, "[{\"ok\":true," + std::string(fields_json) + "}]"));
}

// ----------------------------------------------------------- deliveries

void SioSession::deliver_live(Outbound& message) {
  const auto& packet = message.socketio_packet();
  if (!packet) return;
  if (polling_) send_packet(packet);
  else send_packet(packet, message.socketio_frame());
}

void SioSession::send_history(Outbound& message) { deliver_live(message); }

void SioSession::history_done(const std::string& room, std::size_t count, const Status& status) {
  const auto it = join_acks_.find(room);
  std::optional<std::uint64_t> ack;
  if (it != join_acks_.end()) {
    ack = it->second;
    join_acks_.erase(it);
  }
  if (!status.ok()) {
    hub_->history_failures.add();
    return refuse(ack, "history_unavailable",
                  "the room's history could not be read: " + std::string(status.message()));
  }
  ack_ok(ack, "\"room\":" + json_string(room) + ",\"history\":" + std::to_string(count));
}

}  // namespace nudge::plugins::websocket
