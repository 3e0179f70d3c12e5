#include "hub.hpp"

#include <algorithm>
#include <cstdio>
#include <random>

namespace nudge::plugins::websocket {

Hub::Hub(const WebSocketConfig& cfg, Context& ctx)
    : config(cfg),
      logger(ctx.logger()),
      executor(ctx.executor()),
      instance_id(ctx.instance_id()),
      peers(PeerTable::Limits{}),
      resends(std::chrono::milliseconds(cfg.resend_window_ms), static_cast<std::size_t>(cfg.resend_max_entries)),
      connections_accepted(ctx.metrics().counter("connections_accepted", "WebSocket connections accepted")),
      connections_refused(ctx.metrics().counter("connections_refused", "Upgrades refused (limits, origin)")),
      requests_rate_limited(ctx.metrics().counter(
          "requests_rate_limited",
          "HTTP requests answered 429: their address made more than http_request_rate_per_address")),
      sockets_refused(ctx.metrics().counter(
          "sockets_refused",
          "TCP connections closed at accept: too many open from the address or in all, or opened too fast")),
      connections_open(ctx.metrics().gauge("connections_open", "WebSocket connections open")),
      sockets_gauge(ctx.metrics().gauge("sockets_open", "TCP connections open, in any state")),
      peers_tracked(ctx.metrics().gauge("peers_tracked", "Addresses and senders whose limits are being counted")),
      rooms_open(ctx.metrics().gauge("rooms", "Rooms with at least one local client")),
      frames_in(ctx.metrics().counter("frames_in", "Client frames received")),
      frames_refused(ctx.metrics().counter("frames_refused", "Client frames answered with an error")),
      frames_rate_limited(ctx.metrics().counter("frames_rate_limited", "Client frames refused for the rate limit")),
      messages_delivered(ctx.metrics().counter("messages_delivered", "Message frames queued to clients")),
      slow_clients_dropped(ctx.metrics().counter("slow_clients_dropped",
                                                 "Clients dropped for a full send queue or one that made no progress")),
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
      connections_reset(
          ctx.metrics().counter("connections_reset",
                                "Connections the server gave up on (silent, or not taking its close) that it reset "
                                "rather than closed, as the kernel still held bytes they had not read")),
      socketio_sessions(ctx.metrics().counter("socketio_sessions", "Socket.IO sessions opened")),
      socketio_upgrades(
          ctx.metrics().counter("socketio_upgrades", "Socket.IO sessions upgraded from polling to WebSocket")),
      socketio_refused(ctx.metrics().counter(
          "socketio_refused", "Socket.IO requests refused (unknown sid, bad transport, payload too large)")),
      unauthenticated_displaced(ctx.metrics().counter(
          "unauthenticated_displaced",
          "Socket.IO sessions yet to authenticate ended to make room for a newer one (the pool was full)")),
      history_sent(ctx.metrics().counter("history_sent", "Messages sent from history on joining or catching up")),
      history_failures(ctx.metrics().counter("history_failures", "Joins whose history could not be read")),
      joins_refused(ctx.metrics().counter("joins_refused", "Joins refused for max_rooms_per_connection or max_rooms")),
      presence_events_sent(
          ctx.metrics().counter("presence_events_sent", "presence_join and presence_leave frames queued to clients")),
      presence_reads(ctx.metrics().counter("presence_reads", "Presence requests of clients passed to the fanout")),
      presence_reads_refused(ctx.metrics().counter(
          "presence_reads_refused", "Presence requests refused busy because max_presence_reads were unanswered")),
      presence_read_timeouts(ctx.metrics().counter(
          "presence_read_timeouts", "Presence requests answered unavailable after presence_read_timeout_ms")),
      ephemeral_sent(ctx.metrics().counter("ephemeral_sent", "Ephemeral sends of clients handed to the pipeline")),
      history_bytes_gauge(ctx.metrics().gauge("history_bytes_held",
                                              "Bytes of history reserved for reads in flight or queued to clients and "
                                              "not yet written (history_buffer_bytes)")) {
  peers.set_limits(peer_limits(), Clock::now());
  std::string error;
  if (auto parsed = TrustedProxies::parse(config.trusted_proxies, error)) proxies = std::move(*parsed);
  std::random_device random;
  for (auto& key : client_keys) key = (std::uint64_t{random()} << 32) ^ random();
}

namespace {

/// SplitMix64's finaliser: a bijection of 64-bit values that spreads every bit.
std::uint64_t mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

std::string Hub::client_id(std::uint64_t serial) const {
  const std::uint64_t id = mix(mix(serial ^ client_keys[0]) ^ client_keys[1]);
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return std::string(text, 16);
}

void Hub::deliver_presence(std::string_view room, const PresenceEvent& event) {
  if (!config.presence_events) return;
  const std::string name(room);
  const auto it = rooms.find(name);
  if (it == rooms.end()) return;
  if (it->second.size() > static_cast<std::size_t>(config.presence_events_max_room)) return;
  std::string native = presence_event_frame(room, event);
  if (native.empty()) return;  // a name another instance sent that is not UTF-8
  // Socket.IO's argument is the native frame less its type: {room, user, client}.
  const std::string_view event_name = event.change == PresenceChange::join ? "presence_join" : "presence_leave";
  std::string args = "[{" + native.substr(native.find(',') + 1) + "]";
  Notice notice(std::move(native), event_name, std::move(args));
  // A send may drop a slow client, which leaves its rooms (and may end
  // this one's entry): walk a copy.
  const std::vector<WsSession*> members(it->second.begin(), it->second.end());
  std::size_t sent = 0;
  for (WsSession* session : members) {
    if (!sessions.contains(session) || !session->rooms().contains(name)) continue;
    session->deliver_notice(notice);
    ++sent;
  }
  presence_events_sent.add(sent);
}

PeerTable::Limits Hub::peer_limits() const {
  PeerTable::Limits limits;
  limits.sockets_per_peer = static_cast<std::size_t>(config.max_sockets_per_address);
  limits.clients_per_peer = static_cast<std::size_t>(config.max_connections_per_address);
  limits.connects_per_second = config.connection_rate_per_address;
  limits.connect_burst = static_cast<double>(config.connection_burst_per_address);
  limits.messages_per_second = config.sender_rate_limit_per_second;
  limits.message_burst = static_cast<double>(config.sender_rate_limit_burst);
  limits.requests_per_second = config.http_request_rate_per_address;
  limits.request_burst = static_cast<double>(config.http_request_burst_per_address);
  // Every open socket has an entry; recently active peers are the rest.
  limits.max_peers = std::max<std::size_t>(65536, 2 * max_sockets);
  return limits;
}

// -------------------------------------------------------------- SocketSlot

SocketSlot& SocketSlot::operator=(SocketSlot&& other) noexcept {
  if (this != &other) {
    release();
    hub_ = std::exchange(other.hub_, nullptr);
    peer_ = std::move(other.peer_);
  }
  return *this;
}

void SocketSlot::release() noexcept {
  if (Hub* hub = std::exchange(hub_, nullptr)) hub->close_socket(peer_);
}

bool Hub::open_socket(const std::string& peer, const std::string& address) {
  const char* why = nullptr;
  if (sockets_open >= max_sockets) {
    why = "max_sockets are open";
  } else if (!peer.empty()) {
    switch (peers.open_socket(peer, Clock::now())) {
      case PeerTable::Refusal::none:
        break;
      case PeerTable::Refusal::too_many_sockets:
        why = "max_sockets_per_address are open from it";
        break;
      case PeerTable::Refusal::connecting_too_fast:
        why = "it opens connections faster than connection_rate_per_address";
        break;
      case PeerTable::Refusal::table_full:
        why = "too many addresses are being tracked";
        break;
    }
  }
  peers_tracked.set(static_cast<std::int64_t>(peers.size()));
  if (why) {
    sockets_refused.add();
    std::uint64_t held_back = 0;
    if (refusal_log_.allow(held_back))
      logger.warn("closed a connection from '", address, "' at accept: ", why, " (", held_back,
                  " more refused since the last report)");
    return false;
  }
  ++sockets_open;
  sockets_gauge.set(static_cast<std::int64_t>(sockets_open));
  return true;
}

void Hub::close_socket(const std::string& peer) noexcept {
  if (!peer.empty()) peers.close_socket(peer);
  if (sockets_open > 0) --sockets_open;
  sockets_gauge.set(static_cast<std::int64_t>(sockets_open));
}

bool Hub::open_client(const std::string& peer, bool forwarded, Counted as, std::string& why) {
  const bool waiting = as == Counted::unauthenticated;
  const auto max = static_cast<std::size_t>(config.max_connections);
  if (!waiting && connections >= max) {
    why = "too many connections";
    return false;
  }
  if (!peer.empty() && !peers.open_client(peer, Clock::now(), forwarded)) {
    why = "too many connections from this address";
    return false;
  }
  if (!waiting) {
    count_client();
    return true;
  }
  // Squatters filling the pool from many addresses would otherwise lock out
  // every client that brings its token in CONNECT: the address holding the
  // most makes way.
  while (unauthenticated >= max && displace_unauthenticated()) {
  }
  if (unauthenticated >= max) {
    if (!peer.empty()) peers.close_client(peer);
    why = "too many connections waiting to authenticate";
    return false;
  }
  ++unauthenticated;
  rank_unauthenticated(peer, +1);
  return true;
}

bool Hub::open_socketio_session(const std::string& peer, Counted as, std::string& why) {
  return open_client(peer, true, as, why);
}

void Hub::rank_unauthenticated(const std::string& peer, int delta) {
  const auto it = unauthenticated_per_peer.find(peer);
  std::size_t count = it == unauthenticated_per_peer.end() ? 0 : it->second;
  if (count > 0) unauthenticated_ranking.erase({count, peer});
  if (delta > 0) ++count;
  else if (count > 0) --count;
  if (count == 0) {
    if (it != unauthenticated_per_peer.end()) unauthenticated_per_peer.erase(it);
    unauthenticated_lines.erase(peer);
    return;
  }
  if (it == unauthenticated_per_peer.end()) unauthenticated_per_peer.emplace(peer, count);
  else it->second = count;
  unauthenticated_ranking.emplace(count, peer);
}

bool Hub::displace_unauthenticated() {
  const auto displaceable = [this](const std::shared_ptr<WsSession>& session) {
    return session && session->counted() == Counted::unauthenticated && sessions.contains(session.get());
  };
  const auto displace = [this](const std::shared_ptr<WsSession>& session, const char* why) {
    unauthenticated_displaced.add();
    logger.debug("ending a Socket.IO session from '", session->address(),
                 "' that has not authenticated: the pool of those waiting is full and ", why);
    // Its end gives the place back (close_client), and may erase its line.
    session->close(CloseCode::policy_error, "displaced: send CONNECT with a token sooner");
    return true;
  };
  const bool one_each = unauthenticated_ranking.empty() || unauthenticated_ranking.rbegin()->first <= 1;
  if (one_each) {
    while (!unauthenticated_line.empty()) {
      const auto oldest = unauthenticated_line.front().lock();
      unauthenticated_line.pop_front();
      if (displaceable(oldest)) return displace(oldest, "it waited longest");
    }
    return false;
  }
  // From the address holding the most down: one whose sessions are all
  // between their count and their start has nobody in line yet.
  for (auto rank = unauthenticated_ranking.rbegin(); rank != unauthenticated_ranking.rend(); ++rank) {
    const auto line = unauthenticated_lines.find(rank->second);
    if (line == unauthenticated_lines.end()) continue;
    while (!line->second.empty()) {
      const auto oldest = line->second.front().lock();
      line->second.pop_front();
      if (displaceable(oldest)) return displace(oldest, "its address holds the most");
    }
  }
  return false;
}

void Hub::line_up_unauthenticated(const std::string& peer, std::weak_ptr<WsSession> session) {
  auto& line = unauthenticated_lines[peer];
  const auto count = unauthenticated_per_peer.contains(peer) ? unauthenticated_per_peer[peer] : 0;
  if (line.size() >= 2 * count + 8) {
    std::erase_if(line, [this](const std::weak_ptr<WsSession>& entry) {
      const auto held = entry.lock();
      return !held || held->counted() != Counted::unauthenticated || !sessions.contains(held.get());
    });
  }
  line.push_back(session);
  if (unauthenticated_line.size() >= 2 * unauthenticated + 64) {
    std::erase_if(unauthenticated_line, [this](const std::weak_ptr<WsSession>& entry) {
      const auto held = entry.lock();
      return !held || held->counted() != Counted::unauthenticated || !sessions.contains(held.get());
    });
  }
  unauthenticated_line.push_back(std::move(session));
}

void Hub::close_client(const std::string& peer, Counted as) noexcept {
  if (as == Counted::nothing) return;
  if (!peer.empty()) peers.close_client(peer);
  if (as == Counted::unauthenticated) {
    if (unauthenticated > 0) --unauthenticated;
    rank_unauthenticated(peer, -1);
    return;
  }
  if (connections > 0) --connections;
  connections_open.add(-1);
}

bool Hub::authenticate(const std::string& peer, std::string& why) {
  if (connections >= static_cast<std::size_t>(config.max_connections)) {
    why = "too many connections";
    return false;
  }
  if (unauthenticated > 0) --unauthenticated;
  rank_unauthenticated(peer, -1);
  count_client();
  return true;
}

void Hub::count_client() {
  ++connections;
  connections_open.add(1);
  connections_accepted.add();
}

// --------------------------------------------------------------------- Hub

Hub::JoinRefusal Hub::join(WsSession* session, const std::string& room) {
  auto it = rooms.find(room);
  if (it == rooms.end()) {
    if (rooms.size() >= static_cast<std::size_t>(config.max_rooms)) {
      joins_refused.add();
      return JoinRefusal::too_many_rooms;
    }
    it = rooms.try_emplace(room).first;
    rooms_open.set(static_cast<std::int64_t>(rooms.size()));
    if (ingress) ingress->set_room_interest(room, true);
  }
  it->second.insert(session);
  if (ingress && ingress->has_presence()) ingress->presence_join(room, session->name(), session->client_id());
  return JoinRefusal::none;
}

void Hub::leave(WsSession* session, const std::string& room) {
  auto it = rooms.find(room);
  if (it == rooms.end()) return;
  const bool was_in = it->second.erase(session) > 0;
  if (it->second.empty()) {
    rooms.erase(it);
    rooms_open.set(static_cast<std::int64_t>(rooms.size()));
    if (ingress) ingress->set_room_interest(room, false);
  }
  // Once per join, whichever of leave, close or removal comes first; last,
  // as a fanout reporting it at once would walk the rooms.
  if (was_in && ingress && ingress->has_presence())
    ingress->presence_leave(room, session->name(), session->client_id());
}

void Hub::remove(WsSession* session) {
  if (!sessions.erase(session)) return;
  close_client(session->peer(), session->counted());
  for (const auto& room : session->rooms()) {
    leave(session, room);
    if (!session->peer().empty()) peers.leave_room(session->peer());
  }
  if (sessions.empty() && on_last_session_closed) std::exchange(on_last_session_closed, nullptr)();
}

void Hub::reconfigure(const WebSocketConfig& next) {
  config.apply_live(next);
  std::string error;
  if (auto parsed = TrustedProxies::parse(config.trusted_proxies, error)) proxies = std::move(*parsed);
  peers.set_limits(peer_limits(), Clock::now());
  resends.set_max_entries(static_cast<std::size_t>(config.resend_max_entries));
  for (WsSession* session : sessions) session->apply_limits();
  start_history_reads();
}

void Hub::presence_read_done(std::uint64_t number, const Status& status, const PresenceList& list) {
  const auto it = presence_reads_pending.find(number);
  if (it == presence_reads_pending.end()) return;  // timed out: the client has had its answer
  auto answer = std::move(it->second.answer);
  presence_reads_pending.erase(it);
  answer(status, list);
}

void Hub::expire_presence_reads(Clock::time_point now) {
  std::size_t expired = 0;
  for (auto it = presence_reads_pending.begin(); it != presence_reads_pending.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    auto answer = std::move(it->second.answer);
    it = presence_reads_pending.erase(it);
    ++expired;
    answer(Status::error(StatusCode::unavailable,
                         "the room's presence could not be read in time (the fanout did not answer); ask again later"),
           PresenceList{});
  }
  if (expired == 0) return;
  presence_read_timeouts.add(expired);
  std::uint64_t suppressed = 0;
  if (presence_timeout_log_.allow(suppressed))
    logger.warn(expired, " presence request(s) unanswered by the fanout in presence_read_timeout_ms (",
                config.presence_read_timeout_ms, " ms) answered unavailable; is its store reachable? (", suppressed,
                " more reports held back)");
}

void Hub::request_history_read(std::weak_ptr<WsSession> session, std::string room, std::uint64_t ticket) {
  // A client joining and leaving in a loop while the sink is slow would grow
  // the line with entries nobody waits on any more: drop those when it is
  // long. It is then at most one entry per room a client is catching up in.
  if (history_waiting.size() >= kHistoryWaitingCompactAt) {
    std::erase_if(history_waiting, [](const HistoryTurn& turn) {
      const auto waiting = turn.session.lock();
      return !waiting || !waiting->wants_history_read(turn.room, turn.ticket);
    });
  }
  history_waiting.push_back(HistoryTurn{std::move(session), std::move(room), ticket});
  start_history_reads();
}

void Hub::hold_history_bytes(const std::string& peer, std::size_t bytes) {
  history_bytes_held += bytes;
  if (!peer.empty()) peers.add_history(peer, bytes, Clock::now());
  history_bytes_gauge.set(static_cast<std::int64_t>(history_bytes_held));
}

void Hub::history_read_done() {
  if (history_reads_in_flight > 0) --history_reads_in_flight;
}

void Hub::release_history_bytes(const std::string& peer, std::size_t bytes) {
  if (bytes == 0) return;
  history_bytes_held -= std::min(history_bytes_held, bytes);
  if (!peer.empty()) peers.release_history(peer, bytes);
  history_bytes_gauge.set(static_cast<std::int64_t>(history_bytes_held));
  start_history_reads();
}

void Hub::start_history_reads() {
  // A read reserves room for the largest messages it may return, as many as
  // the budget has left; one may always start, so a budget smaller than one
  // message still moves.
  const std::size_t one_message = static_cast<std::size_t>(config.max_message_bytes) + sizeof(Message);
  // Turns of addresses holding their share wait in place, the others go by.
  if (starting_history_reads_) return;  // a start below releases bytes, which calls here again
  starting_history_reads_ = true;
  for (auto it = history_waiting.begin();
       it != history_waiting.end() && history_reads_in_flight < static_cast<std::size_t>(config.max_history_reads) &&
       (history_bytes_held == 0 ||
        history_bytes_held + one_message <= static_cast<std::size_t>(config.history_buffer_bytes));) {
    const auto session = it->session.lock();
    const auto turn = session ? session->start_history_read(it->room, it->ticket) : WsSession::Turn::passed;
    if (turn == WsSession::Turn::deferred) ++it;
    else it = history_waiting.erase(it);
  }
  starting_history_reads_ = false;
}

void Hub::note_auth_refused(JwtError error, const std::string& address) {
  auth_refused.add();
  connections_refused.add();
  std::uint64_t held_back = 0;
  if (auth_log_.allow(held_back))
    logger.warn("refused a WebSocket from '", address, "': ", to_string(error), " (", held_back,
                " more refused for their token since the last report)");
  else logger.debug("refused a WebSocket from '", address, "': ", to_string(error));
}

void Hub::note_refused_origin(const std::string& origin, const std::string& address) {
  std::uint64_t held_back = 0;
  if (origin_log_.allow(held_back))
    logger.warn("refused a request from origin '", origin, "' (client '", address,
                "'): it is not this page's origin nor in allowed_origins; to let a front end served from there "
                "connect, add \"",
                origin, "\" to allowed_origins (", held_back, " more refused since the last report)");
  else logger.debug("refused a request from origin '", origin, "' (client '", address, "')");
}

void Hub::note_tls_failure(const std::string& address, std::string_view what, bool plaintext) {
  tls_handshakes_failed.add();
  if (plaintext) tls_plaintext_refused.add();
  std::uint64_t held_back = 0;
  if (plaintext && tls_log_.allow(held_back))
    logger.warn("a client at '", address, "' spoke plaintext to the TLS port (use https:// and wss://); ", held_back,
                " more refused since the last report");
  else logger.debug("TLS handshake with '", address, "' failed: ", what);
}

}  // namespace nudge::plugins::websocket
