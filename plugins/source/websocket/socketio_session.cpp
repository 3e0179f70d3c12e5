#include "socketio_session.hpp"

#include <array>
#include <stdexcept>

#include <rapidjson/document.h>
#include <boost/asio/post.hpp>

#include "json_writer.hpp"
#include "nudge/sdk/text.hpp"
#include "ws_connection.hpp"

namespace nudge::plugins::websocket {

namespace {

/// Separates packets in a long-polling body (Engine.IO v4).
constexpr char kRecordSeparator = '\x1e';

/// Longest `ref` a client may give a message (as in the native protocol).
constexpr std::size_t kMaxRef = 128;

/// A string member of an object, or the value itself when it is a string
/// (`join "room"` and `join {room: "room"}` both work).
std::optional<std::string> string_arg(const rapidjson::Value& value, const char* key) {
  if (value.IsString()) return std::string(value.GetString(), value.GetStringLength());
  if (!value.IsObject()) return std::nullopt;
  const auto it = value.FindMember(key);
  if (it == value.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

/// One member of CONNECT's auth data: absent, a string, or something else
/// (which is refused rather than ignored: a client meant something by it).
struct AuthMember {
  bool present = false;
  std::optional<std::string> text;  ///< set when present and a string
};

AuthMember auth_member(const rapidjson::Document& auth, bool has_auth, const char* key) {
  if (!has_auth) return {};
  const auto it = auth.FindMember(key);
  if (it == auth.MemberEnd() || it->value.IsNull()) return {};
  if (!it->value.IsString()) return {true, std::nullopt};
  return {true, std::string(it->value.GetString(), it->value.GetStringLength())};
}

}  // namespace

SioSession::SioSession(std::shared_ptr<Hub> hub, std::string address, std::string peer,
                       std::optional<JwtIdentity> identity, bool polling)
    : WsSession(std::move(hub), std::move(address), std::move(peer), std::move(identity)),
      sid_(socketio::new_session_id()),
      transport_(polling ? Transport::polling : Transport::websocket),
      bucket_(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
              TokenBucket::Clock::now()) {
  // With authentication on and no token yet, CONNECT must bring one: until
  // then the session takes no authenticated client's place.
  if (hub_->verifier && !identity_) counted_ = Counted::unauthenticated;
}

SioSession::~SioSession() { hub_->remove(this); }

void SioSession::apply_limits() {
  WsSession::apply_limits();
  bucket_.reconfigure(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
                      TokenBucket::Clock::now());
}

std::string SioSession::start() {
  hub_->sessions.insert(this);
  hub_->sio_sessions.emplace(sid_, shared_from_this());
  if (counted_ == Counted::unauthenticated) hub_->line_up_unauthenticated(peer_, weak_self());
  hub_->socketio_sessions.add();
  started_ = Clock::now();
  next_ping_ = started_ + std::chrono::milliseconds(hub_->config.ping_interval_ms);
  auto open = socketio::open_packet(sid_, polling(), hub_->config.ping_interval_ms, hub_->config.ping_timeout_ms,
                                    hub_->config.max_message_bytes);
  if (!polling()) send_packet(open);
  return open;
}

// ------------------------------------------------------------- transports

bool SioSession::poll(std::function<void(std::string)> answer) {
  if (poll_waiter_) return false;
  poll_waiter_ = std::move(answer);
  if (transport_ == Transport::upgrading) {
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
  std::string body;
  body.reserve(poll_queue_bytes_ + poll_queue_.size());
  for (const auto& p : poll_queue_) {
    if (!body.empty()) body.push_back(kRecordSeparator);
    body.append(*p);
  }
  poll_flushed_ += poll_queue_.size();
  decltype(poll_queue_)().swap(poll_queue_);
  poll_queue_bytes_ = 0;
  std::exchange(poll_waiter_, nullptr)(std::move(body));
  // Room again: history waiting for it goes on (into the next poll).
  on_queue_drained();
}

bool SioSession::on_post(std::string body, std::function<void()> done) {
  if (post_done_) return false;
  if (ended_) {
    done();
    return true;
  }
  post_body_ = std::move(body);
  post_offset_ = 0;
  post_done_ = std::move(done);
  take_post();
  return true;
}

void SioSession::take_post() {
  auto self = shared_from_this();  // a packet may end the session
  while (!ended_ && !waiting_for_pipeline_ && post_offset_ < post_body_.size()) {
    const std::string_view rest = std::string_view(post_body_).substr(post_offset_);
    const auto end = rest.find(kRecordSeparator);
    const auto packet = rest.substr(0, end);
    post_offset_ = end == std::string_view::npos ? post_body_.size() : post_offset_ + end + 1;
    if (!packet.empty() && packet[0] == 'b') {
      // A base64 binary packet (attachments): this server reads text only.
      if (attachments_to_skip_ > 0) --attachments_to_skip_;
      else refuse(std::nullopt, "bad_request", "binary data is not supported; send JSON");
    } else {
      on_packet(packet);
    }
  }
  if (!ended_ && waiting_for_pipeline_ && post_offset_ < post_body_.size()) return;  // on_pipeline_ready goes on
  post_body_.clear();
  post_body_.shrink_to_fit();
  post_offset_ = 0;
  if (auto done = std::exchange(post_done_, nullptr)) done();
}

void SioSession::on_pipeline_ready() {
  if (auto ws = std::move(paused_websocket_)) return ws->resume_reading();
  if (polling()) take_post();
}

bool SioSession::begin_probe() {
  if (ended_ || transport_ != Transport::polling) return false;
  transport_ = Transport::probing;
  return true;
}

void SioSession::probe_ended() {
  if (transport_ == Transport::probing || transport_ == Transport::upgrading) transport_ = Transport::polling;
}

void SioSession::on_probe() {
  transport_ = Transport::upgrading;
  // The waiting poll returns at once, so the client sees the upgrade through.
  if (poll_waiter_) std::exchange(poll_waiter_, nullptr)("6");
}

void SioSession::attach_websocket(std::shared_ptr<WsSession> ws) {
  if (ended_) return ws->close(CloseCode::normal, "session ended");
  if (transport_ != Transport::websocket) hub_->socketio_upgrades.add();
  websocket_ = ws;
  transport_ = Transport::websocket;
  // What was waiting for the next poll goes out on the WebSocket, in order.
  for (auto& packet : poll_queue_) ws->send(std::make_shared<const std::string>(encode_frame(Opcode::text, *packet)));
  decltype(poll_queue_)().swap(poll_queue_);
  poll_queue_bytes_ = 0;
  // History held counts by the poll queue's frames; from here the
  // WebSocket's count: what it held is let go (it is on its way).
  release_all_history();
  if (poll_waiter_) std::exchange(poll_waiter_, nullptr)("6");
}

void SioSession::websocket_closed(const WsSession* ws) {
  if (transport_ != Transport::websocket) return probe_ended();  // the probe went away: polling goes on
  const auto current = websocket_.lock();
  if (!current || current.get() == ws) end("transport close");
}

std::size_t SioSession::queued_frames() const noexcept {
  if (polling()) return poll_queue_.size();
  const auto ws = websocket_.lock();
  return ws ? ws->queued_frames() : 0;
}

std::size_t SioSession::queued_bytes() const noexcept {
  if (polling()) return poll_queue_bytes_;
  const auto ws = websocket_.lock();
  return ws ? ws->queued_bytes() : 0;
}

std::uint64_t SioSession::frames_queued_ever() const noexcept {
  if (polling()) return poll_pushed_;
  const auto ws = websocket_.lock();
  return ws ? ws->frames_queued_ever() : 0;
}

std::uint64_t SioSession::frames_written_ever() const noexcept {
  if (polling()) return poll_flushed_;
  const auto ws = websocket_.lock();
  return ws ? ws->frames_written_ever() : 0;
}

void SioSession::send(std::shared_ptr<const std::string> frame) {
  if (polling()) return;
  if (auto ws = websocket_.lock()) ws->send(std::move(frame));
}

void SioSession::send_packet(std::shared_ptr<const std::string> packet, std::shared_ptr<const std::string> frame) {
  if (ended_) return;
  if (!polling()) {
    if (auto ws = websocket_.lock())
      ws->send(frame ? std::move(frame) : std::make_shared<const std::string>(encode_frame(Opcode::text, *packet)));
    return;
  }
  const auto& cfg = hub_->config;
  if (poll_queue_.size() >= static_cast<std::size_t>(cfg.max_send_queue) ||
      poll_queue_bytes_ + packet->size() > static_cast<std::size_t>(cfg.max_send_queue_bytes)) {
    hub_->slow_clients_dropped.add();
    hub_->logger.debug("dropping a Socket.IO client from '", address_, "' that does not poll (", poll_queue_.size(),
                       " packets, ", poll_queue_bytes_, " bytes waiting)");
    return end("send queue full: client too slow");
  }
  poll_queue_bytes_ += packet->size();
  ++poll_pushed_;
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
  if (packet->type == socketio::EngineType::close) return end("client close");
  // Every packet a client sends is work, and many cost one back (a ping's
  // pong, an unknown namespace's refusal, a bad packet's error): all spend the
  // same tokens as a /ws client's frames, or a client could flood with the
  // kinds left out.
  const RateVerdict verdict = rate_check();
  if (verdict == RateVerdict::refused_to_close) {
    refuse(std::nullopt, "rate_limited", "too many packets; slow down");
    return close(CloseCode::policy_error, "rate limit exceeded");
  }
  switch (packet->type) {
    case socketio::EngineType::pong:
      awaiting_pong_ = false;
      next_ping_ = Clock::now() + std::chrono::milliseconds(hub_->config.ping_interval_ms);
      return;
    case socketio::EngineType::ping:
      // Engine.IO v4 clients ping only to probe ("2probe"): the data is sent
      // back when that short, so a pong is never a way to reflect a message.
      if (verdict == RateVerdict::allowed)
        send_packet("3" + std::string(packet->data.size() <= kMaxEchoedPingData ? packet->data : std::string_view()));
      return;
    case socketio::EngineType::message:
      return on_socketio(packet->data, verdict);
    case socketio::EngineType::close:
      return;  // ended above
    case socketio::EngineType::noop:
      return;
    case socketio::EngineType::open:
    case socketio::EngineType::upgrade:
      hub_->protocol_errors.add();
      return end("parse error");
  }
}

void SioSession::on_binary() {
  if (ended_) return;
  if (rate_check() == RateVerdict::refused_to_close) return close(CloseCode::policy_error, "rate limit exceeded");
  if (attachments_to_skip_ > 0) {
    --attachments_to_skip_;
    return;
  }
  refuse(std::nullopt, "bad_request", "binary data is not supported; send JSON");
}

void SioSession::check_timeouts(Clock::time_point now) {
  if (ended_) return;
  if (!connected_ && now - started_ >= std::chrono::milliseconds(hub_->config.handshake_timeout_ms)) {
    // A session that never connects to the namespace holds a place for nothing.
    hub_->socketio_refused.add();
    hub_->logger.debug("ending a Socket.IO session from '", address_, "': no CONNECT within ",
                       hub_->config.handshake_timeout_ms, " ms");
    return end("connect timeout");
  }
  if (token_expired()) {
    refuse(std::nullopt, "unauthorized", "the token expired; connect again with a new one");
    return close(CloseCode::policy_error, "token expired");
  }
  const auto timeout = std::chrono::milliseconds(hub_->config.ping_timeout_ms);
  if (waiting_for_pipeline_) {
    // The client's pong waits behind a message the pipeline has no room for:
    // the delay is ours.
    if (awaiting_pong_) pong_deadline_ = std::max(pong_deadline_, now + timeout);
    return;
  }
  if (awaiting_pong_) {
    if (now < pong_deadline_) return;
    hub_->idle_closed.add();
    hub_->logger.debug("closing a Socket.IO session from '", address_, "': no pong within ",
                       hub_->config.ping_timeout_ms, " ms");
    return end("ping timeout");
  }
  if (now >= next_ping_) {
    awaiting_pong_ = true;
    pong_deadline_ = now + timeout;
    send_packet("2");
  }
}

void SioSession::shutdown() { close(CloseCode::going_away, "server shutting down"); }

void SioSession::close(CloseCode code, std::string_view reason) {
  if (ended_) return;
  if (connected_) send_packet("41");  // the namespace is disconnected by the server
  if (auto ws = websocket_.lock(); ws && !polling()) ws->close(code, reason);
  end(reason);
}

void SioSession::end(std::string_view reason) {
  if (ended_) return;
  // The hub's reference goes below, and with it maybe the last one: this
  // session, and the WebSocket paused for it, are let go on the loop, not
  // inside a call that may still be running on either of them.
  boost::asio::post(hub_->executor, [self = shared_from_this(), ws = std::move(paused_websocket_)] {});
  ended_ = true;
  leave_rooms();
  hub_->sio_sessions.erase(sid_);
  hub_->remove(this);
  if (auto ws = websocket_.lock(); ws && !polling()) ws->close(CloseCode::normal, reason);
  // A poll waiting now learns the session is over; a POST being taken is answered.
  if (poll_waiter_) std::exchange(poll_waiter_, nullptr)("1");
  if (auto done = std::exchange(post_done_, nullptr)) done();
}

// -------------------------------------------------------------- Socket.IO

void SioSession::on_socketio(std::string_view text, RateVerdict verdict) {
  const bool over_rate = verdict != RateVerdict::allowed;
  if (const auto binary = socketio::parse_binary_header(text)) {
    // Its attachments follow as binary messages: skip them; a refusal answers its ack.
    attachments_to_skip_ = binary->attachments;
    hub_->frames_refused.add();
    if (over_rate) return refuse(binary->ack_id, "rate_limited", "too many packets; slow down");
    return refuse(binary->ack_id, "bad_request", "binary data is not supported; send JSON");
  }
  socketio::ParseError error;
  const auto packet = socketio::parse_packet(text, error);
  if (!packet) {
    hub_->frames_refused.add();
    if (over_rate) return;  // unanswered: an answer per bad packet is what a flood is after
    hub_->logger.debug("refused a Socket.IO packet from '", address_, "': ", error.message);
    return refuse(std::nullopt, "bad_packet", error.message);
  }
  if (packet->type == socketio::PacketType::event && connected_ && packet->nsp == "/" && over_rate) {
    // Refused unread, its ack answered so the sender knows to slow down.
    return refuse(packet->ack_id, "rate_limited", "too many events; slow down");
  }
  if (over_rate) return;
  if (packet->nsp != "/") {
    if (packet->type != socketio::PacketType::connect) return;  // nothing else is served on another namespace
    // Named back only when short: a refusal must not be a way to make the
    // server hold what the client sent.
    if (packet->nsp.size() > kMaxEchoedNamespace) {
      hub_->frames_refused.add();
      return refuse(std::nullopt, "bad_packet", "no such namespace; only '/' is served here");
    }
    return send_packet(socketio::connect_error_packet(packet->nsp, "Invalid namespace"));
  }
  switch (packet->type) {
    case socketio::PacketType::connect:
      return on_connect(*packet);
    case socketio::PacketType::disconnect:
      return end("client namespace disconnect");
    case socketio::PacketType::event:
      if (!connected_) return;
      return on_event(*packet);
    case socketio::PacketType::ack:
      return;  // this server asks for no acks
    case socketio::PacketType::connect_error:
    case socketio::PacketType::binary_event:
    case socketio::PacketType::binary_ack:
      return;
  }
}

void SioSession::on_connect(const socketio::Packet& packet) {
  if (connected_) return;
  rapidjson::Document auth;
  if (!packet.data.empty()) auth.Parse<kJsonParseFlags>(packet.data.data(), packet.data.size());
  const bool has_auth = !packet.data.empty() && !auth.HasParseError() && auth.IsObject();
  const auto refuse_connect = [this](std::string_view message) {
    send_packet(socketio::connect_error_packet("/", message));
  };
  // Each key the client sent must be what it can only be: a string.
  const AuthMember token = auth_member(auth, has_auth, "token");
  const AuthMember room_member = auth_member(auth, has_auth, "room");
  const AuthMember after_member = auth_member(auth, has_auth, "after");
  const AuthMember name = auth_member(auth, has_auth, "name");
  for (const auto& [key, member] : {std::pair{"token", &token}, std::pair{"room", &room_member},
                                    std::pair{"after", &after_member}, std::pair{"name", &name}}) {
    if (member->present && !member->text)
      return refuse_connect("'" + std::string(key) + "' in the auth data must be a string");
  }
  if (hub_->verifier && !identity_) {
    // Socket.IO clients pass tokens in the auth data: io(url, {auth: {token}}).
    auto result = hub_->verifier->verify(token.text.value_or(""), now_ms());
    if (!result) {
      hub_->note_auth_refused(result.error(), address_);
      return refuse_connect("unauthorized: " + std::string(to_string(result.error())));
    }
    identity_ = std::make_unique<const JwtIdentity>(std::move(result.identity()));
    name_ = identity_->name;
  }
  if (counted_ == Counted::unauthenticated) {
    std::string why;
    if (!hub_->authenticate(peer_, why)) {
      hub_->connections_refused.add();
      refuse_connect(why);
      return end(why);
    }
    counted_ = Counted::client;
  }
  std::string room = hub_->config.socketio_default_room;
  if (room_member.text) {
    if (!is_valid_room(*room_member.text))
      return refuse_connect("invalid room name: use 1 to 128 characters of A-Z a-z 0-9 _ - . :");
    room = *room_member.text;
  }
  std::optional<MessageId> after;
  if (after_member.text) {
    after = MessageId::parse(*after_member.text);
    if (!after) return refuse_connect("'after' must be the id of a message (a UUID string)");
  }
  if (name.text && !identity_) {
    if (!is_valid_name(*name.text)) return refuse_connect(kNameRule);
    name_ = *name.text;
    named_ = true;
  }
  connected_ = true;
  send_packet(socketio::connect_packet(sid_));
  current_room_ = room;
  switch (join_room(room, after)) {
    case Hub::JoinRefusal::none:
      break;
    case Hub::JoinRefusal::too_many_rooms_here:
    case Hub::JoinRefusal::too_many_rooms_from_address:
    case Hub::JoinRefusal::too_many_rooms:
      refuse(std::nullopt, "too_many_rooms", "no more rooms may be joined (max_rooms_per_address or max_rooms)");
      current_room_.clear();
      break;
  }
}

void SioSession::on_event(const socketio::Packet& packet) {
  const auto ack = packet.ack_id;
  hub_->frames_in.add();
  if (packet.event == "event:message" || packet.event == "message") return on_send(packet.args, ack);
  rapidjson::Document args;
  args.Parse<kJsonParseFlags>(packet.args.data(), packet.args.size());
  const rapidjson::Value* first = !args.HasParseError() && args.IsArray() && !args.Empty() ? &args[0] : nullptr;
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
    if (ack) join_acks_[*room] = *ack;  // answered with the room's history (history_done)
    switch (join_room(*room, after)) {
      case Hub::JoinRefusal::none:
        current_room_ = *room;
        return;
      case Hub::JoinRefusal::too_many_rooms_here:
        join_acks_.erase(*room);
        return refuse(ack, "too_many_rooms",
                      "this connection is in " + std::to_string(rooms_.size()) +
                          " rooms already (max_rooms_per_connection); leave one first");
      case Hub::JoinRefusal::too_many_rooms_from_address:
        join_acks_.erase(*room);
        return refuse(ack, "too_many_rooms",
                      "the clients of this address are in as many rooms as they may (max_rooms_per_address)");
      case Hub::JoinRefusal::too_many_rooms:
        join_acks_.erase(*room);
        return refuse(ack, "too_many_rooms", "the server holds as many rooms as it may (max_rooms)");
    }
    return;
  }
  if (packet.event == "leave") {
    auto room = first ? string_arg(*first, "room") : std::nullopt;
    if (!room || !is_valid_room(*room)) {
      hub_->frames_refused.add();
      return refuse(ack, "bad_request", "leave takes a room name: 1 to 128 characters of A-Z a-z 0-9 _ - . :");
    }
    const bool was_in = leave_room(*room);
    join_acks_.erase(*room);
    if (current_room_ == *room) current_room_ = rooms_.empty() ? std::string() : *rooms_.rbegin();
    return ack_ok(ack, "\"room\":" + json_string(*room) + ",\"left\":" + (was_in ? "true" : "false"));
  }
  if (packet.event == "hello") {
    auto name = first ? string_arg(*first, "name") : std::nullopt;
    if (!name || !is_valid_name(*name)) {
      hub_->frames_refused.add();
      return refuse(ack, "bad_request", std::string("hello takes a name: ") + kNameRule);
    }
    if (identity_ && *name != identity_->name) {
      hub_->frames_refused.add();
      return refuse(ack, "forbidden",
                    "this connection is authenticated as '" + identity_->name + "'; its name comes from the token");
    }
    if (!rename(std::move(*name)))
      return refuse(ack, "rate_limited",
                    "a rename announces a leave and a join in each of your rooms, more than the rate limit allows now; "
                    "slow down");
    named_ = true;
    return ack_ok(ack, "\"name\":" + json_string(name_));
  }
  if (packet.event == "presence") return on_presence(first, ack);
  hub_->frames_refused.add();
  refuse(ack, "unknown_event", "unknown event; expected event:message, join, leave, hello or presence");
}

void SioSession::on_presence(const rapidjson::Value* first, std::optional<std::uint64_t> ack) {
  const auto bad = [&](std::string_view message) {
    hub_->frames_refused.add();
    return refuse(ack, "bad_request", message);
  };
  // The answer travels in the ack: without one there is nowhere to put it.
  if (!ack) return bad("presence answers in its acknowledgement: emit it with a callback");
  std::string room = current_room_;
  if (first && (first->IsString() || (first->IsObject() && first->HasMember("room")))) {
    auto named = string_arg(*first, "room");
    if (!named || !is_valid_room(*named))
      return bad("presence takes a room name: 1 to 128 characters of A-Z a-z 0-9 _ - . :");
    room = std::move(*named);
  } else if (first && !first->IsObject()) {
    return bad("presence takes a room name, {room}, or nothing (the room joined last)");
  }
  const auto asked = ask_presence(room, [ack, room](WsSession& session, const Status& status,
                                                    const PresenceList& list) {
    auto& self = static_cast<SioSession&>(session);
    if (!status.ok()) return self.refuse(ack, error_code_for(status.code()), status.message());
    self.ack_ok(ack, "\"room\":" + json_string(room) + ",\"members\":" +
                         presence_members_json(list, static_cast<std::size_t>(self.hub_->config.max_presence_members)) +
                         ",\"total\":" + std::to_string(std::max<std::size_t>(list.total, list.members.size())));
  });
  switch (asked) {
    case PresenceAsk::reading:
      return;
    case PresenceAsk::not_joined:
      hub_->frames_refused.add();
      return refuse(ack, "not_joined", room.empty() ? "join a room first" : not_joined_message(room));
    case PresenceAsk::unsupported:
      hub_->frames_refused.add();
      return refuse(ack, "unsupported",
                    "this server keeps no presence (its pipeline's fanout does not, or [pipeline] presence = false)");
    case PresenceAsk::busy:
      hub_->frames_refused.add();
      return refuse(ack, "busy", "a presence request of this session is still unanswered; ask again after its reply");
    case PresenceAsk::server_busy:
      hub_->frames_refused.add();
      return refuse(ack, "busy", "the server is reading presence for many clients at once; ask again in a moment");
    case PresenceAsk::unavailable:
      return refuse(ack, "unavailable", "the server is shutting down; ask again after reconnecting");
  }
}

void SioSession::on_send(std::string_view args_json, std::optional<std::uint64_t> ack) {
  rapidjson::Document args;
  args.Parse<kJsonParseFlags>(args_json.data(), args_json.size());
  const rapidjson::Value* first = !args.HasParseError() && args.IsArray() && !args.Empty() ? &args[0] : nullptr;
  auto text = first ? string_arg(*first, "message") : std::nullopt;
  if (!text || !is_valid_utf8(*text)) {
    hub_->frames_refused.add();
    return refuse(ack, "bad_request", "event:message takes {message: \"text\"} (and optionally room and ref)");
  }
  std::string room = current_room_;
  std::string ref;
  bool ephemeral = false;
  if (first->IsObject()) {
    if (first->HasMember("room")) {
      auto named = string_arg(*first, "room");
      if (!named) {
        hub_->frames_refused.add();
        return refuse(ack, "bad_request", "'room' must be a string");
      }
      room = std::move(*named);
    }
    if (first->HasMember("ref")) {
      auto given = string_arg(*first, "ref");
      if (!given || given->empty() || given->size() > kMaxRef || !is_valid_utf8(*given)) {
        hub_->frames_refused.add();
        return refuse(ack, "bad_request", "'ref' must be a string of 1 to 128 bytes");
      }
      ref = std::move(*given);
    }
    if (const auto it = first->FindMember("ephemeral"); it != first->MemberEnd()) {
      if (!it->value.IsBool()) {
        hub_->frames_refused.add();
        return refuse(ack, "bad_request", "'ephemeral' must be true or false");
      }
      ephemeral = it->value.GetBool();
    }
  }
  if (room.empty() || !rooms_.contains(room)) {
    hub_->frames_refused.add();
    return refuse(ack, "not_joined", not_joined_message(room));
  }
  if (!hub_->ingress || !hub_->intake_open)
    return refuse(ack, "unavailable", "the server is shutting down; send again after reconnecting");
  submit(
      std::move(room), std::move(*text), std::move(ref),
      [ack](WsSession& session, const SendOutcome& outcome) {
        auto& self = static_cast<SioSession&>(session);
        if (outcome.status.ok()) self.ack_ok(ack, "\"id\":\"" + outcome.id.to_string() + "\"");
        else self.refuse(ack, outcome.error_code(), outcome.status.message());
      },
      ephemeral);
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
  if (polling()) send_packet(packet);
  else send_packet(packet, message.socketio_frame());
}

void SioSession::send_history(Outbound& message) { deliver_live(message); }

void SioSession::deliver_notice(Notice& notice) {
  const auto& packet = notice.socketio_packet();
  if (!packet) return;
  if (polling()) send_packet(packet);
  else send_packet(packet, notice.socketio_frame());
}

void SioSession::history_done(const std::string& room, std::size_t count, const Status& status) {
  const auto it = join_acks_.find(room);
  std::optional<std::uint64_t> ack;
  if (it != join_acks_.end()) {
    ack = it->second;
    join_acks_.erase(it);
  }
  if (!status.ok()) {
    hub_->history_failures.add();
    return refuse(ack, "history_unavailable", "the room's history could not be read: " + std::string(status.message()));
  }
  ack_ok(ack, "\"room\":" + json_string(room) + ",\"history\":" + std::to_string(count));
}

// ------------------------------------------- the bridge on a WebSocket

AfterMessage SioBridge::on_message(std::string_view data, bool text) {
  if (!text) {
    session_->on_binary();
    return AfterMessage::read;
  }
  if (state_ == State::probing) {
    if (data == "2probe") {
      connection_.send_text("3probe");
      session_->on_probe();
      return AfterMessage::read;
    }
    if (data == "5") {
      state_ = State::carrying;
      session_->attach_websocket(connection_.shared_from_this());
      return AfterMessage::read;
    }
    connection_.hub().protocol_errors.add();
    connection_.close_after_queue(CloseCode::protocol_error, "expected the upgrade probe");
    return AfterMessage::stop;
  }
  session_->on_packet(data);
  if (connection_.closing()) return AfterMessage::stop;
  if (!session_->waiting_for_pipeline()) return AfterMessage::read;
  // The session waits for the pipeline: it resumes this connection's reading.
  session_->pause_transport(connection_.shared_from_this());
  return AfterMessage::pause;
}

void SioBridge::on_closed() { session_->websocket_closed(&connection_); }

}  // namespace nudge::plugins::websocket
