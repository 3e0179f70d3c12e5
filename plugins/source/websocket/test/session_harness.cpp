#include "session_harness.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include <boost/asio/post.hpp>

#include "config.hpp"
#include "sessions_impl.hpp"

namespace nudge::plugins::websocket::testing {

// ------------------------------------------------------------- FakeIngress

void FakeIngress::publish(MessagePtr message, Completion on_durable) {
  published.push_back(std::move(message));
  if (auto_ack) boost::asio::post(io_, [done = std::move(on_durable)] { done(Status::success()); });
  else pending_.push_back(std::move(on_durable));
}

void FakeIngress::when_ready(std::function<void()> resume) {
  if (ready_) boost::asio::post(io_, std::move(resume));
  else ready_waiters_.push_back(std::move(resume));
}

void FakeIngress::set_room_interest(std::string_view room, bool interested) {
  interest[std::string(room)] += interested ? 1 : -1;
}

void FakeIngress::read_history(HistoryQuery query, HistoryHandler done) {
  ++history_reads_;
  if (hold_history) held_reads_.emplace_back(std::move(query), std::move(done));
  else answer(query, std::move(done));
}

void FakeIngress::answer(const HistoryQuery& query, HistoryHandler done) {
  std::vector<MessagePtr> found;
  if (const auto it = stored.find(query.room); it != stored.end()) {
    const auto& all = it->second;
    if (query.after) {
      for (const auto& m : all)
        if (m->id > *query.after && found.size() < query.limit) found.push_back(m);
    } else {
      const std::size_t take = std::min(query.limit, all.size());
      found.assign(all.end() - static_cast<std::ptrdiff_t>(take), all.end());
    }
  }
  boost::asio::post(
      io_, [done = std::move(done), found = std::move(found)]() mutable { done(Status::success(), std::move(found)); });
}

void FakeIngress::presence_join(std::string_view room, std::string_view user, std::string_view connection) {
  PresenceMember member{std::string(user), std::string(connection), "test"};
  members[std::string(room)].push_back(member);
  boost::asio::post(io_, [this, room = std::string(room), member] {
    if (report) report(room, PresenceEvent{PresenceChange::join, member});
  });
}

void FakeIngress::presence_leave(std::string_view room, std::string_view user, std::string_view connection) {
  auto& list = members[std::string(room)];
  const auto it = std::find_if(list.begin(), list.end(),
                               [&](const PresenceMember& m) { return m.connection == connection && m.user == user; });
  if (it == list.end()) return;
  const PresenceMember member = *it;
  list.erase(it);
  boost::asio::post(io_, [this, room = std::string(room), member] {
    if (report) report(room, PresenceEvent{PresenceChange::leave, member});
  });
}

void FakeIngress::read_presence(std::string_view room, PresenceHandler done) {
  ++presence_reads;
  if (hold_presence) held_presence_.emplace_back(std::string(room), std::move(done));
  else answer_presence(std::string(room), std::move(done));
}

void FakeIngress::answer_presence(const std::string& room, PresenceHandler done) {
  PresenceList list;
  if (const auto it = members.find(room); it != members.end()) {
    list.members = it->second;
    list.total = it->second.size();
  }
  boost::asio::post(
      io_, [done = std::move(done), list = std::move(list)]() mutable { done(Status::success(), std::move(list)); });
}

void FakeIngress::answer_presence() {
  for (auto& [room, done] : std::exchange(held_presence_, {})) answer_presence(room, std::move(done));
}

void FakeIngress::complete_all(const Status& status) {
  for (auto& done : std::exchange(pending_, {}))
    boost::asio::post(io_, [done = std::move(done), status] { done(status); });
}

void FakeIngress::set_ready(bool ready) {
  ready_ = ready;
  if (!ready) return;
  for (auto& resume : std::exchange(ready_waiters_, {})) boost::asio::post(io_, std::move(resume));
}

void FakeIngress::answer_history() {
  for (auto& [query, done] : std::exchange(held_reads_, {})) answer(query, std::move(done));
}

// ---------------------------------------------------------- SessionHarness

SessionHarness::SessionHarness(const std::map<std::string, ConfigValue>& overrides) {
  const auto config = WebSocketConfig::from(nudge::testing::make_config(WebSocketConfig::schema(), overrides));
  hub_ = std::make_shared<Hub>(config, context_);
  hub_->ingress = &ingress_;
  ingress_.report = [this](std::string_view room, const PresenceEvent& event) { hub_->deliver_presence(room, event); };
  hub_->max_sockets = config.max_sockets > 0 ? static_cast<std::size_t>(config.max_sockets) : 4096;
  hub_->peers.set_limits(hub_->peer_limits(), Hub::Clock::now());
}

SessionHarness::~SessionHarness() {
  for (auto& c : clients_)
    if (c.open()) ::close(std::exchange(c.fd, -1));
  hub_->intake_open = false;
  for (WsSession* session : std::vector<WsSession*>(hub_->sessions.begin(), hub_->sessions.end()))
    if (hub_->sessions.contains(session)) session->close(CloseCode::going_away, "test over");
  run();
  hub_->ingress = nullptr;
  // Handlers still queued (and the sessions they hold) go with the loop,
  // while the context and the hub they use are still alive.
  io_.stop();
  io_.restart();
  while (io_.poll() > 0) {
  }
}

std::optional<std::size_t> SessionHarness::connect(const std::string& peer) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  if (!hub_->open_socket(peer, peer)) {
    ::close(fds[0]);
    ::close(fds[1]);
    return std::nullopt;
  }
  LoopSocket server(io_);
  boost::system::error_code ec;
  server.assign(boost::asio::ip::tcp::v4(), fds[1], ec);
  if (ec) std::abort();
  std::make_shared<HttpSession<PlainStream>>(hub_, PlainStream(std::move(server)), SocketSlot(*hub_, peer))->run();
  clients_.push_back(FakeClient{fds[0], {}});
  run();
  return clients_.size() - 1;
}

bool SessionHarness::send(std::size_t client, std::string_view bytes) {
  auto& c = clients_.at(client);
  int stalled = 0;
  while (c.open() && !bytes.empty()) {
    const ssize_t n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      stalled = 0;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && ++stalled < 50) {
      run();  // the server reads as the loop runs
      continue;
    }
    return false;  // the server stopped reading, or closed its end
  }
  run();
  return bytes.empty();
}

void SessionHarness::drain(std::size_t client) {
  for (int rounds = 0; rounds < 10000; ++rounds) {
    run();
    if (read(client).empty()) {
      run();
      if (read(client).empty()) return;
    }
  }
}

std::vector<std::pair<Opcode, std::string>> SessionHarness::take_frames(std::size_t client) {
  auto& c = clients_.at(client);
  std::string_view bytes = c.received;
  if (!c.upgraded) {
    const auto end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos) return {};
    c.upgraded = true;
    bytes.remove_prefix(end + 4);
  }
  auto frames = server_frames(bytes);
  // What server_frames read, whole frames only, goes; a partial frame stays.
  std::size_t used = c.received.size() - bytes.size();
  for (const auto& [opcode, payload] : frames) {
    const std::size_t n = payload.size();
    used += 2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + n;
  }
  c.received.erase(0, used);
  return frames;
}

std::string SessionHarness::read(std::size_t client) {
  auto& c = clients_.at(client);
  std::string got;
  char buffer[65536];
  while (c.open()) {
    const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      got.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    ::close(std::exchange(c.fd, -1));  // EOF or reset: the server closed
  }
  c.received += got;
  return got;
}

void SessionHarness::close(std::size_t client) {
  auto& c = clients_.at(client);
  if (c.open()) ::close(std::exchange(c.fd, -1));
  run();
}

void SessionHarness::run() {
  io_.restart();
  // Handler by handler and bounded: sessions that keep posting work to each
  // other for ever are a bug to report (check_invariants), not to wait on.
  std::size_t handlers = 0;
  while (handlers < kMaxHandlersPerRun && io_.poll_one() > 0) ++handlers;
  if (handlers == kMaxHandlersPerRun) busy_forever_ = true;
}

void SessionHarness::sweep(std::chrono::steady_clock::time_point now) {
  for (WsSession* session : std::vector<WsSession*>(hub_->sessions.begin(), hub_->sessions.end()))
    if (hub_->sessions.contains(session)) session->check_timeouts(now);
  hub_->expire_presence_reads(now);
  hub_->peers.forget_idle(now);
  run();
}

void SessionHarness::deliver(const MessagePtr& message) {
  const auto room = hub_->rooms.find(message->room);
  if (room == hub_->rooms.end()) return;
  Outbound out(message);
  const std::vector<WsSession*> members(room->second.begin(), room->second.end());
  for (WsSession* session : members)
    if (hub_->sessions.contains(session)) session->deliver(out);
  run();
}

void SessionHarness::deliver_presence(std::string_view room, const PresenceEvent& event) {
  hub_->deliver_presence(room, event);
  run();
}

std::string SessionHarness::check_invariants(bool abort) const {
  std::ostringstream broken;
  const auto& cfg = hub_->config;
  if (busy_forever_) broken << "the loop never ran out of work (" << kMaxHandlersPerRun << " handlers in one run); ";
  // Control frames (a pong, a ping, the close) may sit past the data bound.
  constexpr std::size_t kControlBytes = 3 * 131;
  std::size_t counted = 0;
  for (const WsSession* session : hub_->sessions) {
    if (session->counted() == WsSession::Counted::client) ++counted;
    if (session->queued_bytes() > static_cast<std::size_t>(cfg.max_send_queue_bytes) + kControlBytes)
      broken << "a session holds " << session->queued_bytes() << " queued bytes, over max_send_queue_bytes; ";
    if (session->queued_frames() > static_cast<std::size_t>(cfg.max_send_queue) + 3)
      broken << "a session holds " << session->queued_frames() << " queued frames, over max_send_queue; ";
    if (session->rooms().size() > static_cast<std::size_t>(cfg.max_rooms_per_connection))
      broken << "a session is in " << session->rooms().size() << " rooms; ";
    for (const auto& room : session->rooms()) {
      const auto it = hub_->rooms.find(room);
      if (it == hub_->rooms.end() || !it->second.contains(const_cast<WsSession*>(session)))
        broken << "a session in room '" << room << "' is not among its members; ";
    }
  }
  std::map<std::string, std::size_t> memberships;
  for (const WsSession* session : hub_->sessions)
    if (!session->peer().empty()) memberships[session->peer()] += session->rooms().size();
  for (const auto& [peer, count] : memberships)
    if (hub_->peers.rooms(peer) != count)
      broken << "address '" << peer << "' counts " << hub_->peers.rooms(peer) << " room memberships, its clients hold "
             << count << "; ";
  if (counted != hub_->connections)
    broken << "the hub counts " << hub_->connections << " clients but holds " << counted << "; ";
  if (hub_->sockets_open > hub_->max_sockets) broken << "sockets_open over max_sockets; ";
  if (hub_->rooms.size() > static_cast<std::size_t>(cfg.max_rooms)) broken << "more rooms than max_rooms; ";
  for (const auto& [room, members] : hub_->rooms) {
    if (members.empty()) broken << "room '" << room << "' is empty but kept; ";
    for (WsSession* member : members)
      if (!hub_->sessions.contains(member) || !member->rooms().contains(room))
        broken << "room '" << room << "' holds a member that is gone or left; ";
    const auto interest = ingress_.interest.find(room);
    if (interest == ingress_.interest.end() || interest->second != 1)
      broken << "room '" << room << "' has members but the fanout was not told once; ";
  }
  for (const auto& [room, count] : ingress_.interest)
    if (count != 0 && !hub_->rooms.contains(room)) broken << "the fanout still has interest in '" << room << "'; ";
  if (ingress_.presence) {
    // Presence names exactly the room's members, each once, under the name
    // it has now: a leave missed or naming someone else would keep a member
    // listed for as long as the instance lives.
    std::map<std::string, std::multiset<std::pair<std::string, std::string>>> want;
    for (const auto& [room, members] : hub_->rooms)
      for (const WsSession* member : members) want[room].emplace(member->name(), member->client_id());
    for (const auto& [room, members] : ingress_.members) {
      std::multiset<std::pair<std::string, std::string>> have;
      for (const auto& m : members) have.emplace(m.user, m.connection);
      const auto it = want.find(room);
      if (have != (it == want.end() ? decltype(have)() : it->second))
        broken << "presence of room '" << room << "' lists " << have.size() << " members, the hub holds "
               << (it == want.end() ? 0 : it->second.size()) << " (or under other names); ";
    }
    for (const auto& [room, members] : want)
      if (!ingress_.members.contains(room)) broken << "room '" << room << "' has members but no presence; ";
  }
  std::size_t waiting = 0;
  for (const auto& turn : hub_->history_waiting) {
    const auto session = turn.session.lock();
    waiting += session && session->wants_history_read(turn.room, turn.ticket) ? 1 : 0;
  }
  if (hub_->history_waiting.size() > std::max(Hub::kHistoryWaitingCompactAt, 2 * waiting) + 1)
    broken << "the history line holds " << hub_->history_waiting.size() << " entries for " << waiting << " waiting; ";
  if (hub_->history_reads_in_flight > static_cast<std::size_t>(cfg.max_history_reads))
    broken << "history reads in flight over max_history_reads; ";
  const std::size_t one_message = static_cast<std::size_t>(cfg.max_message_bytes) + sizeof(Message);
  if (hub_->history_bytes_held > static_cast<std::size_t>(cfg.history_buffer_bytes) + one_message)
    broken << "history holds " << hub_->history_bytes_held << " bytes, over history_buffer_bytes; ";
  std::size_t held = 0;
  for (const WsSession* session : hub_->sessions) {
    held += session->history_held();
    if (session->history_held() > WsSession::kHistoryBytesPerClient + one_message)
      broken << "a client holds " << session->history_held() << " bytes of history, over its allowance; ";
  }
  // A client gone from the hub may still have a read in flight (its
  // reservation goes when the read answers); with none, the counts agree.
  if (held > hub_->history_bytes_held || (hub_->history_reads_in_flight == 0 && held != hub_->history_bytes_held))
    broken << "clients hold " << held << " bytes of history but the hub counts " << hub_->history_bytes_held << "; ";
  const std::string text = broken.str();
  if (!text.empty() && abort) {
    std::fprintf(stderr, "session harness: broken invariant: %s\n", text.c_str());
    std::abort();
  }
  return text;
}

// ----------------------------------------------------------------- framing

std::string SessionHarness::upgrade_request(std::string_view path, std::string_view extra_headers) {
  std::string request = "GET ";
  request.append(path);
  request +=
      " HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  request.append(extra_headers);
  request += "\r\n";
  return request;
}

std::string SessionHarness::client_frame(Opcode opcode, std::string_view payload, bool fin) {
  std::string frame;
  frame.push_back(static_cast<char>((fin ? 0x80 : 0) | static_cast<std::uint8_t>(opcode)));
  const std::size_t n = payload.size();
  if (n < 126) {
    frame.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    frame.push_back(static_cast<char>(0x80 | 126));
    frame.push_back(static_cast<char>(n >> 8));
    frame.push_back(static_cast<char>(n & 0xff));
  } else {
    frame.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) frame.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  frame.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) frame.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return frame;
}

std::vector<std::pair<Opcode, std::string>> SessionHarness::server_frames(std::string_view bytes) {
  std::vector<std::pair<Opcode, std::string>> frames;
  if (const auto end = bytes.find("\r\n\r\n"); bytes.starts_with("HTTP/1.1") && end != std::string_view::npos)
    bytes.remove_prefix(end + 4);
  while (bytes.size() >= 2) {
    const auto opcode = static_cast<Opcode>(static_cast<std::uint8_t>(bytes[0]) & 0x0f);
    std::size_t n = static_cast<std::uint8_t>(bytes[1]) & 0x7f;
    std::size_t header = 2;
    if (n == 126) {
      if (bytes.size() < 4) break;
      n = (static_cast<std::size_t>(static_cast<std::uint8_t>(bytes[2])) << 8) | static_cast<std::uint8_t>(bytes[3]);
      header = 4;
    } else if (n == 127) {
      if (bytes.size() < 10) break;
      n = 0;
      for (int i = 2; i < 10; ++i) n = (n << 8) | static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]);
      header = 10;
    }
    if (bytes.size() < header + n) break;
    frames.emplace_back(opcode, std::string(bytes.substr(header, n)));
    bytes.remove_prefix(header + n);
  }
  return frames;
}

}  // namespace nudge::plugins::websocket::testing
