// A client as the hub sees it, whatever its protocol (WsSession: rooms,
// history, sends), the forms a delivered message is sent in (Outbound), and
// the first step of a TLS listener's connection (TlsDetector).
#include "sessions_impl.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "socketio.hpp"

namespace nudge::plugins::websocket {

namespace {

/// Messages asked for at once while catching up; more are read page by page.
constexpr std::size_t kCatchUpPage = 500;

/// What a message read from history holds in memory, for the budget.
std::size_t held_size(const Message& m) noexcept {
  return sizeof(Message) + m.payload.size() + m.room.size() + m.sender.size() + m.origin.size();
}

}  // namespace

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
    if (is_ephemeral(m)) {
      // A newer event, so no older client to keep reading JSON text: one object argument.
      socketio_packet_ = std::make_shared<const std::string>(
          socketio::event_packet("ephemeral", "[" + std::string(inner.GetString(), inner.GetSize()) + "]"));
      return socketio_packet_;
    }
    rapidjson::StringBuffer quoted;
    rapidjson::Writer<rapidjson::StringBuffer> q(quoted);
    q.String(inner.GetString(), static_cast<rapidjson::SizeType>(inner.GetSize()));
    socketio_packet_ = std::make_shared<const std::string>(
        socketio::event_packet("message", "[" + std::string(quoted.GetString(), quoted.GetSize()) + "]"));
  }
  return socketio_packet_;
}

const std::shared_ptr<const std::string>& Notice::native_frame() {
  if (!native_frame_ && !native_json_.empty())
    native_frame_ = std::make_shared<const std::string>(encode_frame(Opcode::text, native_json_));
  return native_frame_;
}

const std::shared_ptr<const std::string>& Notice::socketio_packet() {
  if (!socketio_packet_ && !native_json_.empty())
    socketio_packet_ = std::make_shared<const std::string>(socketio::event_packet(event_, args_json_));
  return socketio_packet_;
}

const std::shared_ptr<const std::string>& Notice::socketio_frame() {
  if (!socketio_frame_ && socketio_packet())
    socketio_frame_ = std::make_shared<const std::string>(encode_frame(Opcode::text, *socketio_packet_));
  return socketio_frame_;
}

const std::shared_ptr<const std::string>& Outbound::socketio_frame() {
  if (!socketio_frame_ && socketio_packet())
    socketio_frame_ = std::make_shared<const std::string>(encode_frame(Opcode::text, *socketio_packet_));
  return socketio_frame_;
}

// --------------------------------------------------------------- WsSession

WsSession::WsSession(std::shared_ptr<Hub> hub, std::string address, std::string peer,
                     std::optional<JwtIdentity> identity)
    : hub_(std::move(hub)),
      address_(std::move(address)),
      peer_(std::move(peer)),
      identity_(identity ? std::make_unique<const JwtIdentity>(std::move(*identity)) : nullptr),
      serial_(++hub_->next_connection_serial) {
  if (identity_) name_ = identity_->name;
}

WsSession::~WsSession() { release_all_history(); }

void WsSession::apply_limits() {}

WsSession::RateVerdict WsSession::rate_check() {
  const auto now = TokenBucket::Clock::now();
  // Both buckets are asked: the connection's and the sender's across its
  // connections (so reconnecting earns nothing).
  const bool connection_ok = connection_bucket().allow(now);
  // Anonymous through a proxy that named no client: nobody to count it under.
  const bool sender_ok = identity_ ? hub_->peers.allow_message("sender:" + identity_->name, now)
                                   : peer_.empty() || hub_->peers.allow_message(peer_, now);
  if (connection_ok && sender_ok) return RateVerdict::allowed;
  hub_->frames_rate_limited.add();
  if (++rate_strikes_ >= hub_->config.rate_limit_strikes) {
    hub_->logger.debug("closing a connection from '", address_, "' after ", rate_strikes_,
                       " frames refused for the rate limit");
    return RateVerdict::refused_to_close;
  }
  return RateVerdict::refused;
}

bool WsSession::token_expired() {
  if (!identity_ || !hub_->config.auth_close_on_expiry) return false;
  if (now_ms() < identity_->expires_at_ms + hub_->config.auth_leeway_ms) return false;
  hub_->auth_expired.add();
  hub_->logger.debug("closing the connection of '", name_, "' from '", address_, "': its token expired");
  return true;
}

std::string WsSession::resend_scope() const {
  // Prefixes keep a name from ever matching a token subject or a connection.
  if (identity_) return "t:" + identity_->name;
  if (named_) return "n:" + name_;
  return "c:" + std::to_string(serial_);
}

bool WsSession::rename(std::string name) {
  if (name == name_) return true;
  const bool presence = hub_->ingress && hub_->ingress->has_presence() && !rooms_.empty();
  // A leave and a join per room, for every member of each: what a hello
  // costs in rooms is what that many joins cost, or renaming in a loop
  // would multiply the rate limit by max_rooms_per_connection.
  if (presence)
    for (std::size_t i = 0; i < rooms_.size(); ++i)
      if (rate_check() != RateVerdict::allowed) return false;
  if (presence)
    for (const auto& room : rooms_) hub_->ingress->presence_leave(room, name_, client_id());
  name_ = std::move(name);
  if (presence)
    for (const auto& room : rooms_) hub_->ingress->presence_join(room, name_, client_id());
  return true;
}

WsSession::PresenceAsk WsSession::ask_presence(const std::string& room, PresenceReply reply) {
  if (!rooms_.contains(room)) return PresenceAsk::not_joined;
  if (!hub_->ingress || !hub_->intake_open) return PresenceAsk::unavailable;
  if (!hub_->ingress->has_presence()) return PresenceAsk::unsupported;
  if (presence_reading_) return PresenceAsk::busy;
  if (hub_->presence_reads_pending.size() >= static_cast<std::size_t>(hub_->config.max_presence_reads)) {
    hub_->presence_reads_refused.add();
    return PresenceAsk::server_busy;
  }
  presence_reading_ = true;
  hub_->presence_reads.add();
  const std::uint64_t number = hub_->next_presence_read++;
  hub_->presence_reads_pending.emplace(
      number,
      Hub::PresenceRead{[weak = weak_self(), reply = std::move(reply)](const Status& status, const PresenceList& list) {
                          const auto self = weak.lock();
                          if (!self) return;
                          self->presence_reading_ = false;
                          reply(*self, status, list);
                        },
                        Clock::now() + std::chrono::milliseconds(hub_->config.presence_read_timeout_ms)});
  hub_->ingress->read_presence(
      room, [hub = hub_, number](Status status, PresenceList list) { hub->presence_read_done(number, status, list); });
  return PresenceAsk::reading;
}

WsSession::Submitted WsSession::submit(std::string room, std::string text, std::string ref, Reply reply,
                                       bool ephemeral) {
  std::weak_ptr<WsSession> weak = weak_self();
  auto publish = [&](const MessageId& id, std::optional<std::string> scope) {
    auto message = std::make_shared<Message>();
    message->id = id;
    message->room = std::move(room);
    message->sender = name_;
    message->payload = std::move(text);
    message->timestamp_ms = now_ms();
    message->origin = hub_->instance_id;
    if (ephemeral) {
      message->headers.emplace_back(std::string(kEphemeralHeader), "1");
      hub_->ephemeral_sent.add();
    }
    // The hub is held, not the session: the cache entry is settled (and other
    // connections waiting on it answered) even after this client is gone.
    hub_->ingress->publish(std::move(message),
                           [weak, hub = hub_, scope = std::move(scope), ref, id, reply](Status status) {
                             if (scope) hub->resends.settle(*scope, ref, status, ResendCache::Clock::now());
                             if (auto self = weak.lock()) reply(*self, SendOutcome{status, id, {}});
                           });
    // Backpressure: the next message is read only when the pipeline has
    // room. The waiter owns the session: no read is pending to keep it alive.
    waiting_for_pipeline_ = true;
    hub_->ingress->when_ready([self = weak.lock()] {
      if (!self) return;
      self->waiting_for_pipeline_ = false;
      self->on_pipeline_ready();
    });
    return Submitted::published;
  };
  const auto refuse_conflict = [&] {
    hub_->ref_conflicts.add();
    hub_->frames_refused.add();
    reply(*this, SendOutcome{Status::error(StatusCode::invalid_argument,
                                           "ref '" + ref + "' was already used for a different message; use a new ref"),
                             MessageId(), "ref_conflict"});
    return Submitted::answered;
  };
  if (ref.empty() || hub_->config.resend_window_ms == 0) return publish(MessageId::generate(), std::nullopt);
  std::string scope = resend_scope();
  // An ephemeral is not remembered (nothing stores it, so a resend would only
  // repeat a signal), but a ref still remembered from a durable send is
  // refused: answering with that send's id would say this one was stored, and
  // publishing under a new id would break "same ref, first outcome".
  if (ephemeral) {
    if (hub_->resends.remembers(scope, ref, ResendCache::Clock::now())) return refuse_conflict();
    return publish(MessageId::generate(), std::nullopt);
  }
  // The cache's share is the sender's, as for its rate: a flood of refs from
  // elsewhere evicts the flood's own first.
  const std::string owner = identity_ ? "sender:" + identity_->name : peer_;
  auto claim = hub_->resends.claim(
      scope, ref, ResendCache::content_of(room, text), MessageId::generate(), ResendCache::Clock::now(),
      [weak, reply](const Status& status, const MessageId& id) {
        if (auto self = weak.lock()) reply(*self, SendOutcome{status, id, {}});
      },
      owner);
  switch (claim.outcome) {
    case ResendCache::Outcome::publish:
      return publish(claim.id, std::move(scope));
    case ResendCache::Outcome::already_acked:
      hub_->resends_recognised.add();
      reply(*this, SendOutcome{Status::success(), claim.id, {}});
      return Submitted::answered;
    case ResendCache::Outcome::waiting:
      hub_->resends_recognised.add();  // answered when the first attempt is
      return Submitted::answered;
    case ResendCache::Outcome::conflict:
      return refuse_conflict();
    case ResendCache::Outcome::busy:
      hub_->frames_refused.add();
      reply(*this, SendOutcome{Status::error(StatusCode::unavailable, "too many sends are in flight to remember ref '" +
                                                                          ref + "'; send it again in a moment"),
                               MessageId(),
                               {}});
      return Submitted::answered;
  }
  return Submitted::answered;
}

void WsSession::write_at_turn_end() {
  if (write_due_) return;
  auto self = weak_self();
  if (self.expired()) return;  // being destroyed: nothing more is written
  write_due_ = true;
  hub_->writes_due.push_back(std::move(self));
  if (hub_->flush_posted) return;
  hub_->flush_posted = true;
  // Posted behind the handlers already due: every read and delivery of this
  // turn queues its frames first.
  boost::asio::post(hub_->executor, [hub = hub_] { hub->flush_writes(); });
}

void Hub::flush_writes() {
  flush_posted = false;
  // What a write starts (history, a close) may queue more: it goes in the next turn's list.
  std::vector<std::weak_ptr<WsSession>> due;
  due.swap(writes_due);
  for (auto& weak : due)
    if (auto session = weak.lock()) session->write_due();
  // Keep the storage for the next turn, unless something queued meanwhile.
  due.clear();
  if (writes_due.empty()) writes_due.swap(due);
}

void WsSession::deliver(Outbound& message) {
  if (catching_up_) {
    if (auto it = catching_up_->find(message.message()->room); it != catching_up_->end()) {
      auto& state = it->second;
      const std::size_t size = held_size(*message.message());
      if (state.held.size() >= static_cast<std::size_t>(hub_->config.max_send_queue) ||
          state.held_bytes + size > static_cast<std::size_t>(hub_->config.max_send_queue_bytes)) {
        hub_->slow_clients_dropped.add();
        return close(CloseCode::policy_error, "too many messages while the room's history was read");
      }
      state.held.push_back(message.message());
      state.held_bytes += size;
      return;
    }
  }
  deliver_live(message);
}

Hub::JoinRefusal WsSession::join_room(const std::string& room, std::optional<MessageId> after) {
  if (rooms_.contains(room)) {
    history_done(room, 0, Status::success());
    return Hub::JoinRefusal::none;
  }
  if (rooms_.size() >= static_cast<std::size_t>(hub_->config.max_rooms_per_connection)) {
    hub_->joins_refused.add();
    return Hub::JoinRefusal::too_many_rooms_here;
  }
  if (!peer_.empty() &&
      !hub_->peers.join_room(peer_, static_cast<std::size_t>(hub_->config.max_rooms_per_address), Hub::Clock::now())) {
    hub_->joins_refused.add();
    return Hub::JoinRefusal::too_many_rooms_from_address;
  }
  if (const auto refusal = hub_->join(this, room); refusal != Hub::JoinRefusal::none) {
    if (!peer_.empty()) hub_->peers.leave_room(peer_);
    return refusal;
  }
  rooms_.insert(room);
  const bool wanted = after ? hub_->config.catch_up_max_messages > 0 : hub_->config.history_messages > 0;
  if (!wanted || !hub_->ingress || !hub_->ingress->has_history()) {
    history_done(room, 0, Status::success());
    return Hub::JoinRefusal::none;
  }
  if (!catching_up_) catching_up_ = std::make_unique<std::unordered_map<std::string, CatchUp>>();
  auto& state = (*catching_up_)[room];
  state = CatchUp{};
  state.paged = after.has_value();
  state.cursor = after;
  request_turn(room);
  return Hub::JoinRefusal::none;
}

bool WsSession::may_read_history() const noexcept {
  return !history_reading_ && !queuing_history_ && history_held() < kHistoryBytesPerClient / 2 &&
         queued_frames() < static_cast<std::size_t>(hub_->config.max_send_queue) / 4;
}

void WsSession::request_turn(const std::string& room) {
  auto& state = catching_up_->at(room);
  if (!may_read_history()) {
    state.phase = CatchUp::Phase::waiting_for_room;  // resume_waiting_history asks again
    return;
  }
  state.phase = CatchUp::Phase::queued;
  state.ticket = ++hub_->next_history_ticket;
  hub_->request_history_read(weak_self(), room, state.ticket);
}

bool WsSession::wants_history_read(const std::string& room, std::uint64_t ticket) const {
  if (!catching_up_) return false;
  const auto it = catching_up_->find(room);
  return it != catching_up_->end() && it->second.ticket == ticket && it->second.phase == CatchUp::Phase::queued;
}

WsSession::Turn WsSession::start_history_read(const std::string& room, std::uint64_t ticket) {
  if (!hub_->ingress || !wants_history_read(room, ticket)) return Turn::passed;
  auto& state = catching_up_->at(room);
  if (!may_read_history()) {
    // Another room's read of this client got its turn first.
    state.phase = CatchUp::Phase::waiting_for_room;
    return Turn::passed;
  }
  const std::size_t share = hub_->history_share_per_peer();
  const std::size_t peer_holds = peer_.empty() ? 0 : hub_->peers.history(peer_);
  if (!peer_.empty() && peer_holds + static_cast<std::size_t>(hub_->config.max_message_bytes) > share)
    return Turn::deferred;
  const auto& cfg = hub_->config;
  HistoryQuery query;
  query.room = room;
  query.after = state.cursor;
  const std::size_t left = static_cast<std::size_t>(cfg.catch_up_max_messages) -
                           std::min(state.sent, static_cast<std::size_t>(cfg.catch_up_max_messages));
  // A page fills at most half the client's queue in frames as well.
  const std::size_t frames = static_cast<std::size_t>(cfg.max_send_queue) / 2;
  const std::size_t frame_room = std::max<std::size_t>(1, frames > queued_frames() ? frames - queued_frames() : 0);
  query.limit =
      std::min(state.paged ? std::min(kCatchUpPage, left) : static_cast<std::size_t>(cfg.history_messages), frame_room);
  // The reservation is what the answer may be queued of (the rest is
  // read again, or left out): this client's allowance and the hub's budget.
  const std::size_t largest = static_cast<std::size_t>(cfg.max_message_bytes) + sizeof(Message);
  const std::size_t budget = static_cast<std::size_t>(cfg.history_buffer_bytes);
  const std::size_t hub_free = budget > hub_->history_bytes_held ? budget - hub_->history_bytes_held : 0;
  const std::size_t peer_free = peer_.empty() ? hub_free : share - std::min(share, peer_holds);
  const std::size_t reserved = std::max(
      largest, std::min({query.limit * largest, kHistoryBytesPerClient - history_held(), hub_free, peer_free}));
  state.phase = CatchUp::Phase::reading;
  state.asked = query.limit;
  history_reading_ = true;
  history_reserved_ = reserved;
  ++hub_->history_reads_in_flight;
  hub_->hold_history_bytes(peer_, reserved);
  hub_->ingress->read_history(std::move(query), [weak = weak_self(), hub = hub_, peer = peer_, room, reserved](
                                                    Status status, std::vector<MessagePtr> messages) {
    hub->history_read_done();
    auto self = weak.lock();
    if (!self) return hub->release_history_bytes(peer, reserved);
    self->history_reading_ = false;
    // What is queued of the reservation stays held (until written); the rest goes back.
    self->on_history(room, status, std::move(messages));  // takes history_reserved_ in every case
    self->resume_waiting_history();
    hub->start_history_reads();
  });
  return Turn::started;
}

void WsSession::on_history(const std::string& room, const Status& status, std::vector<MessagePtr> messages) {
  const auto it = catching_up_ ? catching_up_->find(room) : decltype(catching_up_->end()){};
  if (!catching_up_ || it == catching_up_->end() || it->second.phase != CatchUp::Phase::reading) {
    // Left (or closed) meanwhile: nothing of the reservation is kept.
    hub_->release_history_bytes(peer_, std::exchange(history_reserved_, 0));
    return;
  }
  auto& state = it->second;
  if (!status.ok()) {
    hub_->release_history_bytes(peer_, std::exchange(history_reserved_, 0));
    hub_->logger.debug("history of room '", room, "' unreadable: ", status.message());
    return finish_catch_up(room, status);
  }
  // What the read reserved is queued (the client's allowance and the hub's
  // budget, as they were when it started); one message always, so a single
  // large one still moves when nothing else is held.
  const std::size_t reserved = std::exchange(history_reserved_, 0);
  std::size_t room_left = reserved;
  const bool holds_none = history_queued_ == 0;
  auto fits = [&](const MessagePtr& m, bool first) {
    const std::size_t size = held_size(*m);
    if (size > room_left && !(first && holds_none)) return false;
    room_left -= std::min(room_left, size);
    return true;
  };
  const bool full_page = messages.size() >= state.asked;
  std::size_t first = 0;
  std::size_t end = messages.size();
  if (state.paged) {
    // Oldest first; what does not fit is read again from the cursor.
    for (end = 0; end < messages.size() && fits(messages[end], end == 0); ++end) {
    }
  } else {
    // The last N on joining cannot be paged: the newest that fit go, the
    // oldest are left out (a room's latest are what a joining client wants).
    for (first = messages.size(); first > 0 && fits(messages[first - 1], first == messages.size()); --first) {
    }
  }
  const bool cut = state.paged && end < messages.size();
  if (end > first) state.cursor = messages[end - 1]->id;
  // The reservation becomes what is queued; the rest of it goes back.
  const std::size_t queued = queue_history(state, messages, first, end);
  if (queued > reserved) hub_->hold_history_bytes(peer_, queued - reserved);  // one large message
  else hub_->release_history_bytes(peer_, reserved - queued);
  if (!catching_up_ || !catching_up_->contains(room)) return;  // closed while queuing
  auto& after = catching_up_->at(room);
  after.more = after.paged && !messages.empty() && (cut || full_page) &&
               after.sent < static_cast<std::size_t>(hub_->config.catch_up_max_messages);
  continue_catch_up(room);
}

std::size_t WsSession::queue_history(CatchUp& state, std::vector<MessagePtr>& messages, std::size_t first,
                                     std::size_t end) {
  std::size_t bytes = 0;
  queuing_history_ = true;
  for (std::size_t i = first; i < end; ++i) {
    auto& message = messages[i];
    // A live message held meanwhile that history carries is not sent twice.
    std::erase_if(state.held, [&](const MessagePtr& m) {
      if (m->id != message->id) return false;
      state.held_bytes -= held_size(*m);
      return true;
    });
    ++state.sent;
    bytes += held_size(*message);
    hub_->history_sent.add();
    Outbound out(std::move(message), true);
    send_history(out);
    // Sending may close the session (its queue overflowed with live
    // traffic), which drops `state`: stop here.
    if (!catching_up_) break;
  }
  queuing_history_ = false;
  if (bytes == 0 || rooms_.empty()) return 0;  // (closing: the frames went with the queue)
  // The read's reservation carries over to what was queued (it is released
  // once written); the caller gives back the rest.
  history_queued_ += bytes;
  history_batches_.emplace_back(frames_queued_ever(), bytes);
  release_written_history();  // what went out at once (a waiting poll, a socket with room)
  return bytes;
}

void WsSession::continue_catch_up(const std::string& room) {
  auto& state = catching_up_->at(room);
  if (!state.more) return finish_catch_up(room, Status::success());
  request_turn(room);
}

void WsSession::release_written_history() {
  const std::uint64_t written = frames_written_ever();
  std::size_t released = 0;
  auto done = history_batches_.begin();
  for (; done != history_batches_.end() && done->first <= written; ++done) released += done->second;
  history_batches_.erase(history_batches_.begin(), done);
  if (history_batches_.empty()) decltype(history_batches_)().swap(history_batches_);  // an idle client holds none
  if (released == 0) return;
  history_queued_ -= std::min(history_queued_, released);
  hub_->release_history_bytes(peer_, released);
}

void WsSession::release_all_history() {
  decltype(history_batches_)().swap(history_batches_);
  if (history_queued_ > 0) hub_->release_history_bytes(peer_, std::exchange(history_queued_, 0));
}

void WsSession::resume_waiting_history() {
  if (!catching_up_ || !may_read_history()) return;
  std::vector<std::string> waiting;
  for (const auto& [room, state] : *catching_up_)
    if (state.phase == CatchUp::Phase::waiting_for_room) waiting.push_back(room);
  for (const auto& room : waiting) {
    if (!catching_up_ || !catching_up_->contains(room) || !may_read_history()) return;
    request_turn(room);
  }
}

void WsSession::on_queue_drained() {
  release_written_history();
  if (!queuing_history_) resume_waiting_history();
}

void WsSession::finish_catch_up(const std::string& room, const Status& status) {
  auto node = catching_up_->extract(room);
  if (catching_up_->empty()) catching_up_.reset();
  auto& state = node.mapped();
  history_done(room, state.sent, status);
  // Live messages that arrived meanwhile, less those history already sent.
  for (auto& m : state.held) {
    if (!rooms_.contains(room)) return;  // closed while sending these
    Outbound out(m);
    deliver_live(out);
  }
}

bool WsSession::leave_room(const std::string& room) {
  if (!rooms_.erase(room)) return false;
  hub_->leave(this, room);
  if (!peer_.empty()) hub_->peers.leave_room(peer_);
  if (catching_up_) {
    catching_up_->erase(room);
    if (catching_up_->empty()) catching_up_.reset();
  }
  return true;
}

void WsSession::leave_rooms() {
  for (const auto& room : rooms_) {
    hub_->leave(this, room);
    if (!peer_.empty()) hub_->peers.leave_room(peer_);
  }
  rooms_.clear();
  catching_up_.reset();
  release_all_history();
}

// -------------------------------------------------------------- TlsDetector

TlsDetector::TlsDetector(std::shared_ptr<Hub> hub, LoopSocket&& socket, SocketSlot slot)
    : hub_(std::move(hub)), stream_(std::move(socket)), slot_(std::move(slot)) {
  buffer_.max_size(4096);
}

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
    return std::make_shared<HttpSession<TlsStream>>(hub_, TlsStream(std::move(stream_), context), std::move(slot_),
                                                    std::move(buffer_))
        ->run();
  }
  hub_->note_tls_failure(remote_address(stream_), "the client spoke plaintext", true);
  // Whatever it sent, one short HTTP answer says what to do instead.
  auto res = std::make_shared<http::response<http::string_body>>(http::status::bad_request, 11);
  res->set(http::field::server, detail::kServer);
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
