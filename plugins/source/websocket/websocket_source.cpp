#include "websocket_source.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "socketio_session.hpp"
#include "tls.hpp"

namespace nudge::plugins::websocket {

using tcp = boost::asio::ip::tcp;

namespace {

/// Reads the HS256 key file: its bytes, less one trailing newline.
Status read_secret_file(const std::string& path, std::string& secret) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(StatusCode::invalid_argument,
                         "cannot read auth_jwt_secret_file '" + path + "': " + std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  secret = bytes.str();
  if (secret.ends_with("\r\n")) secret.resize(secret.size() - 2);
  else if (secret.ends_with("\n")) secret.pop_back();
  if (secret.size() < kMinSecretBytes)
    return Status::error(StatusCode::invalid_argument,
                         "auth_jwt_secret_file '" + path + "' holds " + std::to_string(secret.size()) +
                             " bytes; an HS256 key needs at least 32 (make one with `openssl rand -base64 32`)");
  return Status::success();
}

}  // namespace

WebSocketSource::WebSocketSource(const Config& config, Context& context)
    : context_(context),
      config_(config),
      hub_(std::make_shared<Hub>(WebSocketConfig::from(config), context)),
      stop_timer_(context.executor()),
      sweep_timer_(context.executor()),
      undeliverable_(context.metrics().counter("undeliverable", "Messages whose payload is not valid UTF-8")),
      accept_failures_(context.metrics().counter(
          "accept_failures", "Accepts that failed, most for want of file descriptors (then shed and paused)")) {}

WebSocketSource::~WebSocketSource() {
  hub_->ingress = nullptr;
  hub_->on_last_session_closed = nullptr;
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

namespace {

/// Descriptors left to the rest of the process (plugins' connections, files,
/// the admin endpoint) when max_sockets is derived from the limit.
constexpr std::size_t kDescriptorsKept = 256;

/// The soft open-file limit, raised to the hard one first: a server's sockets
/// are its work, and the soft default (often 1024) is a desktop's.
std::size_t open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : static_cast<std::size_t>(limit.rlim_cur);
}

}  // namespace

Status WebSocketSource::start(Ingress& ingress) {
  const auto& cfg = hub_->config;
  if (cfg.tls_enabled()) {
    std::string error;
    hub_->tls = make_tls_context(cfg.tls_cert_file, cfg.tls_key_file, error);
    if (!hub_->tls) return Status::error(StatusCode::invalid_argument, error);
  }
  if (cfg.auth_enabled()) {
    JwtPolicy policy{cfg.auth_jwt_secret, cfg.auth_leeway_ms, cfg.auth_issuer, cfg.auth_audience,
                     cfg.auth_identity_claim};
    if (!cfg.auth_jwt_secret_file.empty())
      if (auto status = read_secret_file(cfg.auth_jwt_secret_file, policy.secret); !status.ok()) return status;
    hub_->verifier = std::make_unique<JwtVerifier>(std::move(policy));
  }
  if (auto status = listen(); !status.ok()) return status;
  const std::size_t descriptors = open_file_limit();
  const std::size_t derived = descriptors > 2 * kDescriptorsKept ? descriptors - kDescriptorsKept : descriptors / 2;
  hub_->max_sockets = cfg.max_sockets > 0 ? static_cast<std::size_t>(cfg.max_sockets) : derived;
  if (hub_->max_sockets > derived)
    context_.logger().warn("max_sockets is ", hub_->max_sockets, " but the process may open ", descriptors,
                           " files: past about ", derived, " connections accepts will fail and be shed");
  hub_->peers.set_limits(hub_->peer_limits(), WsSession::Clock::now());
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  hub_->ingress = &ingress;
  for (auto& listener : listeners_) do_accept(*listener);
  sweep_timeouts();
  const bool v6 = cfg.host.find(':') != std::string::npos;
  const std::string url_host = v6 ? "[" + cfg.host + "]" : cfg.host;
  const char* secure = hub_->tls ? "s" : "";
  const char* auth = hub_->verifier ? "; tokens required" : "";
  if (cfg.static_dir.empty())
    context_.logger().info("listening on ws", secure, "://", url_host, ":", bound_port_, cfg.path,
                           " (no static_dir: no page served", auth, ")");
  else
    context_.logger().info("serving the chat at http", secure, "://", url_host, ":", bound_port_, "/ (WebSocket at ",
                           cfg.path, cfg.socketio ? ", Socket.IO at " + cfg.socketio_path : std::string(), auth, ")");
  return Status::success();
}

Status WebSocketSource::listen() {
  const auto& cfg = hub_->config;
  // "localhost" is both loopbacks: a client resolving it to ::1 first (older
  // Node, several CLI tools, some macOS setups) must not be refused.
  const std::vector<std::string> hosts =
      cfg.host == "localhost" ? std::vector<std::string>{"127.0.0.1", "::1"} : std::vector<std::string>{cfg.host};
  std::uint16_t port = cfg.port;
  for (const auto& host : hosts) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(host, ec);
    if (ec)
      return Status::error(StatusCode::invalid_argument,
                           "listen: '" + cfg.host + "' is not an IP address or localhost");
    const std::string where = (address.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
    auto listener = std::make_unique<Listener>(context_.executor());
    auto* acceptor = &listener->acceptor;
    if (acceptor->open(address.is_v6() ? tcp::v6() : tcp::v4(), ec); ec) {
      if (&host != &hosts.front() && address.is_v6()) {
        context_.logger().warn("no IPv6 here (", ec.message(), "): localhost is served on 127.0.0.1 alone");
        break;
      }
      return Status::error(StatusCode::unavailable, "cannot open a socket for " + where + ": " + ec.message());
    }
    acceptor->set_option(boost::asio::socket_base::reuse_address(true), ec);
    if (address.is_v6()) acceptor->set_option(boost::asio::ip::v6_only(true), ec);
    if (acceptor->bind(tcp::endpoint(address, port), ec); ec) {
      if (&host != &hosts.front() && ec.value() == EADDRNOTAVAIL) {
        context_.logger().warn("cannot listen on ", where, " (", ec.message(),
                               "): localhost is served on 127.0.0.1 alone");
        break;
      }
      const std::string hint = ec == boost::asio::error::address_in_use
                                   ? " (another process listens there; stop it or change source.websocket.listen)"
                                   : "";
      return Status::error(StatusCode::unavailable, "cannot listen on " + where + ": " + ec.message() + hint);
    }
    if (acceptor->listen(boost::asio::socket_base::max_listen_connections, ec); ec)
      return Status::error(StatusCode::unavailable, "cannot listen on " + where + ": " + ec.message());
    acceptor->native_non_blocking(true, ec);
    // Port 0: the first loopback's port is the other's too.
    port = acceptor->local_endpoint().port();
    listeners_.push_back(std::move(listener));
  }
  bound_port_ = port;
  return Status::success();
}

void WebSocketSource::do_accept(Listener& listener) {
  listener.acceptor.async_accept([this, &listener](boost::system::error_code ec, LoopSocket socket) {
    if (ec == boost::asio::error::operation_aborted || !listener.acceptor.is_open()) return;
    if (ec) {
      accept_failures_.add();
      std::uint64_t held_back = 0;
      if (accept_log_.allow(held_back))
        context_.logger().warn("accept failed: ", ec.message(), " (", held_back, " more since the last report; ",
                               hub_->sockets_open, " connections open)");
      // Out of descriptors: the accept loop must neither end nor spin.
      if (ec == boost::asio::error::no_descriptors || ec.value() == ENFILE ||
          ec == boost::asio::error::no_buffer_space || ec == boost::asio::error::no_memory)
        return shed_and_pause(listener);
    } else {
      serve(std::move(socket));
    }
    do_accept(listener);
  });
}

void WebSocketSource::serve(LoopSocket socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // gone already
  // A trusted proxy's connections are many clients': counted in the total
  // only, and each request by the client its X-Forwarded-For names.
  std::string peer = hub_->proxies.contains(remote.address()) ? std::string() : peer_key(remote.address());
  if (!hub_->open_socket(peer, remote.address().to_string())) {
    // Closed unread: a refused connection costs nothing more.
    socket.set_option(boost::asio::socket_base::linger(true, 0), ec);
    return;
  }
  SocketSlot slot(*hub_, std::move(peer));
  socket.set_option(tcp::no_delay(true), ec);
  if (hub_->tls) std::make_shared<TlsDetector>(hub_, std::move(socket), std::move(slot))->run();
  else std::make_shared<HttpSession<PlainStream>>(hub_, PlainStream(std::move(socket)), std::move(slot))->run();
}

void WebSocketSource::shed_and_pause(Listener& listener) {
  if (spare_fd_ >= 0) {
    ::close(spare_fd_);
    const int shed = ::accept4(listener.acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (shed >= 0) ::close(shed);
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  listener.pause.expires_after(std::chrono::milliseconds(100));
  listener.pause.async_wait([this, &listener](boost::system::error_code ec) {
    if (!ec && listener.acceptor.is_open()) do_accept(listener);
  });
}

void WebSocketSource::sweep_timeouts() {
  // One timer for all connections rather than one each: an idle connection
  // then holds no timer wait. The interval bounds how late a ping or a cut
  // comes (idle_timeout_ms / 8, at most 250 ms).
  const auto& cfg = hub_->config;
  const auto shortest = cfg.socketio ? std::min(cfg.idle_timeout_ms, cfg.ping_timeout_ms) : cfg.idle_timeout_ms;
  const auto interval = std::clamp(std::chrono::milliseconds(shortest / 8), std::chrono::milliseconds(10),
                                   std::chrono::milliseconds(250));
  sweep_timer_.expires_after(interval);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto now = WsSession::Clock::now();
    // A check may close a session, which leaves hub_->sessions: iterate a copy.
    sweep_scratch_.assign(hub_->sessions.begin(), hub_->sessions.end());
    for (WsSession* session : sweep_scratch_)
      if (hub_->sessions.contains(session)) session->check_timeouts(now);
    hub_->expire_presence_reads(now);
    if (now - peers_swept_ >= std::chrono::seconds(1)) {
      peers_swept_ = now;
      hub_->peers.forget_idle(now);
      hub_->peers_tracked.set(static_cast<std::int64_t>(hub_->peers.size()));
    }
    sweep_timeouts();
  });
}

void WebSocketSource::deliver(const MessagePtr& message) {
  const auto room = hub_->rooms.find(message->room);
  if (room == hub_->rooms.end()) return;
  // Serialised and framed once per protocol, on first need, and the same
  // bytes queued to every recipient of that protocol.
  Outbound out(message);
  // A send may drop a slow client, which removes it from the room: iterate
  // a copy. Its storage is kept from one message to the next; a delivery
  // only queues frames, but should one ever deliver again, that one copies.
  std::vector<WsSession*> own;
  auto& members = std::exchange(delivering_, true) ? own : deliver_scratch_;
  members.assign(room->second.begin(), room->second.end());
  for (WsSession* session : members) session->deliver(out);
  // Only the forms some recipient needed were made: asking now would make the others.
  if (out.undeliverable()) undeliverable_.add();
  else hub_->messages_delivered.add(members.size());
  if (&members == &deliver_scratch_) {
    members.clear();
    delivering_ = false;
  }
}

void WebSocketSource::deliver_presence(std::string_view room, const PresenceEvent& event) {
  hub_->deliver_presence(room, event);
}

Readiness WebSocketSource::readiness() const {
  if (!hub_->intake_open) return Readiness::no("not accepting connections (stopping)");
  if (listeners_.empty() || bound_port_ == 0) return Readiness::no("not listening yet");
  return Readiness::yes();
}

Status WebSocketSource::reconfigure(const Config& config) {
  // Keys not declared live need a restart: the runtime does not pass them,
  // and a change of one here leaves everything as it was.
  const auto schema = WebSocketConfig::schema();
  std::string restart_only;
  for (const auto& field : schema.fields()) {
    if (field.live) continue;
    const auto now = config_.values().find(field.key);
    const auto next = config.values().find(field.key);
    const bool same = now != config_.values().end() && next != config.values().end() && now->second == next->second;
    if (!same) restart_only += (restart_only.empty() ? "" : ", ") + field.key;
  }
  if (!restart_only.empty())
    return Status::error(StatusCode::invalid_argument, "changing " + restart_only + " needs a restart");
  WebSocketConfig next;
  try {
    next = WebSocketConfig::from(config);
  } catch (const std::exception& e) {
    return Status::error(StatusCode::invalid_argument, e.what());
  }
  hub_->reconfigure(next);
  config_ = config;
  context_.logger().info("applied new limits to ", hub_->sessions.size(), " open connections: max_message_bytes ",
                         next.max_message_bytes, ", rate_limit_per_second ", next.rate_limit_per_second,
                         ", rate_limit_burst ", next.rate_limit_burst, ", max_connections ", next.max_connections,
                         ", idle_timeout_ms ", next.idle_timeout_ms);
  return Status::success();
}

void WebSocketSource::stop_intake() {
  hub_->intake_open = false;
  boost::system::error_code ec;
  for (auto& listener : listeners_) {
    listener->acceptor.close(ec);
    listener->pause.cancel();
  }
}

void WebSocketSource::stop(std::function<void()> done) {
  stop_intake();
  const auto& h = *hub_;
  context_.logger().info("served ", h.connections_accepted.value(), " WebSocket connections and refused ",
                         h.connections_refused.value(), " upgrades (", h.auth_refused.value(),
                         " for a missing or invalid token); dropped ", h.slow_clients_dropped.value(),
                         " slow clients; closed ", h.auth_expired.value(), " connections whose token expired; ",
                         h.tls_handshakes_failed.value(), " TLS handshakes failed (", h.tls_plaintext_refused.value(),
                         " plaintext)");
  if (hub_->sessions.empty()) {
    sweep_timer_.cancel();
    return done();
  }
  auto finished = std::make_shared<std::function<void()>>(std::move(done));
  auto finish_once = [this, finished] {
    if (!*finished) return;
    sweep_timer_.cancel();
    std::exchange(*finished, nullptr)();
  };
  hub_->on_last_session_closed = finish_once;
  // Clients that do not answer the close handshake are not waited for long.
  stop_timer_.expires_after(std::chrono::seconds(2));
  stop_timer_.async_wait([finish_once](boost::system::error_code) { finish_once(); });
  context_.logger().info("closing ", hub_->sessions.size(), " connections");
  // Socket.IO sessions first: each closes its WebSocket with its own goodbye.
  std::vector<std::shared_ptr<SioSession>> sio;
  for (auto& [sid, session] : hub_->sio_sessions) sio.push_back(session);
  for (auto& session : sio) session->shutdown();
  std::vector<WsSession*> sessions(hub_->sessions.begin(), hub_->sessions.end());
  for (WsSession* session : sessions)
    if (hub_->sessions.contains(session)) session->shutdown();
}

}  // namespace nudge::plugins::websocket
