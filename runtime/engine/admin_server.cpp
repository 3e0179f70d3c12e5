#include "engine/admin_server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "nudge/sdk/config.hpp"

namespace nudge::runtime {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

// An admin request is a request line and a few headers; nothing sends a body.
constexpr std::uint32_t kHeaderLimit = 8 * 1024;
constexpr std::uint64_t kBodyLimit = 4 * 1024;
// What the wait for a request's first bytes reads at once: a whole request, usually.
constexpr std::size_t kFirstRead = 2048;
// What one write of a tap's stream carries at most: a few hundred events.
constexpr std::size_t kTapWrite = 64 * 1024;

class AdminSession;

/// Where a connection is between two requests, which says whether it may
/// be closed to make room for a new one (AdminServer::State::make_room).
enum class Phase {
  waiting,    ///< for the first byte of a request: new, or kept alive after an answer; closed first
  receiving,  ///< part of a request in: closed once it took longer than first_byte_timeout
  answering,  ///< the request is whole: handled and answered; never closed for another
  closed,     ///< no longer counts; the session goes once its last handler ran
};

/// Why the endpoint turned a client away; the `reason` label of nudge_admin_refused_total.
enum class Refusal { browser, host, unauthorized, reload_disabled, max_connections, tap_disabled, max_taps };
constexpr std::size_t kRefusals = 7;

const char* to_string(Refusal r) {
  switch (r) {
    case Refusal::browser:
      return "browser";
    case Refusal::host:
      return "host";
    case Refusal::unauthorized:
      return "unauthorized";
    case Refusal::reload_disabled:
      return "reload_disabled";
    case Refusal::max_connections:
      return "max_connections";
    case Refusal::tap_disabled:
      return "tap_disabled";
    case Refusal::max_taps:
      return "max_taps";
  }
  return "unknown";
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

/// The host of a Host header (`name:port`, `[v6]:port`, `name`), lowercased,
/// without a final dot.
std::string host_of(std::string_view value) {
  std::string_view host = value;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') == std::string_view::npos ? std::string_view::npos : host.find(']') - 1);
  } else if (const auto colon = host.find(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.ends_with('.')) host.remove_suffix(1);
  return lowercase(host);
}

/// The token of an `Authorization: Bearer TOKEN` header, or nullopt when the
/// header is another scheme.
std::optional<std::string_view> bearer_token(std::string_view value) {
  constexpr std::string_view scheme = "bearer ";
  if (value.size() < scheme.size() || !beast::iequals(value.substr(0, scheme.size()), scheme)) return std::nullopt;
  value.remove_prefix(scheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  return value;
}

}  // namespace

bool secrets_equal(std::string_view presented, std::string_view expected) noexcept {
  // Every byte of `expected` is read whatever `presented` holds; the volatile
  // accumulator keeps the compiler from stopping at the first difference.
  volatile unsigned char difference = presented.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto p = static_cast<unsigned char>(i < presented.size() ? presented[i] : 0);
    difference = static_cast<unsigned char>(difference | (p ^ static_cast<unsigned char>(expected[i])));
  }
  return difference == 0;
}

struct AdminServer::State {
  State(AdminHandlers h, AdminAccess a, MetricsRegistry& metrics) : handlers(std::move(h)), access(std::move(a)) {
    for (auto& name : access.allowed_hosts) name = host_of(name);
    for (const Refusal r : {Refusal::browser, Refusal::host, Refusal::unauthorized, Refusal::reload_disabled,
                            Refusal::max_connections, Refusal::tap_disabled, Refusal::max_taps})
      refused[static_cast<std::size_t>(r)] =
          &metrics.counter("nudge_admin_refused",
                           "Admin requests refused (browser: Origin or Sec-Fetch-* headers; host: an unknown Host; "
                           "unauthorized: no or a wrong token; reload_disabled, tap_disabled: no token configured; "
                           "max_taps: admin.max_taps taps attached) and connections closed at accept because "
                           "admin.max_connections were open, each in the middle of a request",
                           {{"reason", to_string(r)}});
    evicted = &metrics.counter("nudge_admin_connections_evicted",
                               "Admin connections closed to make room for a new one past admin.max_connections: one "
                               "waiting for a request, else one whose request was slow to arrive");
  }

  /// Connections that count against max_connections.
  std::size_t open() const;
  /// Closes the connection that has waited longest for a request, else the
  /// one whose request has been arriving longest if that is longer than
  /// first_byte_timeout (a program sends its request at once). False when
  /// there is none: every connection is answering, or receiving a request
  /// it began within first_byte_timeout.
  bool make_room();

  void refuse(Refusal r, const std::string& why, const tcp::socket& socket) {
    refused[static_cast<std::size_t>(r)]->add();
    boost::system::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    logger.warn("refused ", why, " from ", ec ? std::string("an unknown address") : peer.address().to_string());
  }

  /// An IP literal, localhost, the listen host or one of allowed_hosts.
  bool host_allowed(const std::string& host) const {
    if (host.empty() || host == "localhost" || host == listen_host) return true;
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    if (!ec) return true;
    return std::find(access.allowed_hosts.begin(), access.allowed_hosts.end(), host) != access.allowed_hosts.end();
  }

  AdminHandlers handlers;
  AdminAccess access;
  std::string listen_host;
  /// Every session alive, closed ones included until they go.
  std::vector<AdminSession*> sessions;
  std::array<Counter*, kRefusals> refused{};
  Counter* evicted = nullptr;
  NamedLogger logger{"admin"};
};

namespace {

/// One admin connection: requests answered in turn, keep-alive honoured.
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket socket, std::shared_ptr<AdminServer::State> state)
      : stream_(std::move(socket)), buffer_(kHeaderLimit + kBodyLimit), state_(std::move(state)) {
    state_->sessions.push_back(this);
  }
  ~AdminSession() { std::erase(state_->sessions, this); }

  /// Waits for the next request, and answers it.
  void read() {
    enter(Phase::waiting);
    request_ = {};
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    // One deadline for the idle wait and the whole request: a client sending
    // a byte at a time is cut off like a silent one. A new connection has
    // first_byte_timeout to begin: a holder of idle sockets cycles out fast.
    const auto deadline = std::chrono::steady_clock::now() + state_->access.request_timeout;
    if (buffer_.size() > 0) return read_request(deadline);  // pipelined: the next request has begun
    stream_.expires_at(answered_
                           ? deadline
                           : std::min(deadline, std::chrono::steady_clock::now() + state_->access.first_byte_timeout));
    stream_.async_read_some(buffer_.prepare(kFirstRead),
                            [self = shared_from_this(), deadline](beast::error_code ec, std::size_t n) {
                              if (ec) return self->close();
                              self->buffer_.commit(n);
                              self->read_request(deadline);
                            });
  }

  Phase phase() const noexcept { return phase_; }
  /// When the connection entered its phase.
  std::chrono::steady_clock::time_point since() const noexcept { return since_; }
  std::string peer() const {
    boost::system::error_code ec;
    const auto endpoint = stream_.socket().remote_endpoint(ec);
    return ec ? std::string("an unknown address") : endpoint.address().to_string();
  }
  /// Closed for a newcomer: the pending read ends with operation_aborted.
  void evict() { close(); }

 private:
  void enter(Phase phase) {
    phase_ = phase;
    since_ = std::chrono::steady_clock::now();
  }

  void read_request(std::chrono::steady_clock::time_point deadline) {
    enter(Phase::receiving);
    stream_.expires_at(deadline);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec == http::error::header_limit || ec == http::error::body_limit || ec == http::error::buffer_overflow) {
        self->request_.keep_alive(false);
        return self->answer(ec == http::error::body_limit ? http::status::payload_too_large
                                                          : http::status::request_header_fields_too_large,
                            "request too large: admin requests have no body and headers under 8 KiB\n");
      }
      if (ec) return self->close();
      self->request_ = self->parser_->release();
      self->enter(Phase::answering);
      self->handle();
    });
  }

  void handle() {
    if (carries_browser_headers()) {
      state_->refuse(Refusal::browser, "a browser's request (Origin or Sec-Fetch-* headers)", stream_.socket());
      return answer(http::status::forbidden,
                    "forbidden: the admin endpoint does not answer browsers (this request carries Origin or "
                    "Sec-Fetch-* headers), so no web page can reach it; use curl, nudge top or nudge reload\n");
    }
    if (const auto host = host_of(request_[http::field::host]); !state_->host_allowed(host)) {
      state_->refuse(Refusal::host, "a request for an unknown Host", stream_.socket());
      return answer(http::status::forbidden,
                    "forbidden: Host '" + host +
                        "' is not this endpoint's: address it by IP, localhost or its listen host, or add the name "
                        "to [admin] allowed_hosts (a check against DNS rebinding)\n");
    }
    const std::string target(request_.target());
    const std::string path = target.substr(0, target.find('?'));
    const auto method = request_.method();
    if (path == "/reload") {
      if (method != http::verb::post) return answer(http::status::method_not_allowed, "use POST /reload\n");
      if (!authorized(kReload)) return;
      state_->handlers.reload([self = shared_from_this()](unsigned status, std::string body) {
        self->answer(static_cast<http::status>(status), std::move(body));
      });
      return;
    }
    if (path == "/tap") {
      if (method != http::verb::get) return answer(http::status::method_not_allowed, "use GET /tap\n");
      if (!authorized(kTap)) return;
      return start_tap(target);
    }
    if (method != http::verb::get && method != http::verb::head)
      return answer(http::status::method_not_allowed, "use GET\n");
    if (path == "/healthz") return answer(http::status::ok, "ok\n");
    if (path == "/readyz") {
      const auto problems = state_->handlers.not_ready();
      if (problems.empty()) return answer(http::status::ok, "ready\n");
      std::string body = "not ready\n";
      for (const auto& p : problems) body += p + "\n";
      return answer(http::status::service_unavailable, std::move(body));
    }
    if (path == "/metrics")
      return answer(http::status::ok, state_->handlers.metrics(), "text/plain; version=0.0.4; charset=utf-8");
    if (path == "/")
      return answer(http::status::ok,
                    "nudge admin endpoint\n  GET /healthz   the process is alive\n  GET /readyz    every stage "
                    "ready, or which is not\n  GET /metrics   Prometheus metrics\n  POST /reload   re-read the "
                    "pipeline file (Authorization: Bearer <admin token>)\n  GET /tap       watch messages as they "
                    "pass, as JSON lines (?stage=&room=&sample=&limit=&max_text=; the admin token)\n");
    answer(http::status::not_found,
           "no such endpoint: " + path + " (try /healthz, /readyz, /metrics, /reload, /tap)\n");
  }

  /// Browsers add these to every cross-site (and same-site) request a page
  /// makes; curl, Prometheus, kubelet and nudge send none.
  bool carries_browser_headers() const {
    for (const auto& field : request_) {
      const auto name = field.name_string();
      if (beast::iequals(name, "origin") || (name.size() > 10 && beast::iequals(name.substr(0, 10), "sec-fetch-")))
        return true;
    }
    return false;
  }

  /// What an endpoint needing the token says when it is missing or off.
  struct Guarded {
    const char* what;        ///< `POST /reload`, as the refusals name it
    Refusal no_token;        ///< counted when no token is configured
    const char* then;        ///< how to go on once a token is configured
    const char* token_from;  ///< where the nudge command takes the token from
  };
  static constexpr Guarded kReload{"POST /reload", Refusal::reload_disabled,
                                   "then run nudge reload with the token; meanwhile SIGHUP reloads (kill -HUP PID)",
                                   "nudge reload sends it from --token, $NUDGE_ADMIN_TOKEN or the pipeline file"};
  static constexpr Guarded kTap{"GET /tap", Refusal::tap_disabled, "then run nudge tap with the token",
                                "nudge tap sends it from --token or $NUDGE_ADMIN_TOKEN"};

  /// True when the request bears the admin token; else answers 401 or 403.
  bool authorized(const Guarded& guarded) {
    const std::string& token = state_->access.token;
    const std::string what = guarded.what;
    if (token.empty()) {
      state_->refuse(guarded.no_token, what + " (no admin token is configured)", stream_.socket());
      answer(http::status::forbidden,
             "forbidden: " + what +
                 " is turned off because no admin token is configured. Set [admin] token (e.g. token = "
                 "\"${NUDGE_ADMIN_TOKEN}\") or token_file in the pipeline file and restart, " +
                 guarded.then + "\n");
      return false;
    }
    const auto presented = bearer_token(request_[http::field::authorization]);
    if (presented && secrets_equal(*presented, token)) return true;
    const bool sent = request_.find(http::field::authorization) != request_.end();
    state_->refuse(Refusal::unauthorized, what + (sent ? " with a wrong admin token" : " without the admin token"),
                   stream_.socket());
    answer(http::status::unauthorized,
           sent ? "unauthorized: the token does not match [admin] token (or token_file)\n"
                : "unauthorized: " + what +
                      " needs the header 'Authorization: Bearer <token>' with the token of [admin] token or "
                      "token_file (" +
                      guarded.token_from + ")\n",
           "text/plain; charset=utf-8", true);
    return false;
  }

  /// GET /tap: attaches a tap and streams its events until the client goes,
  /// the limit is reached or the client stops reading for request_timeout.
  void start_tap(const std::string& target) {
    if (!state_->handlers.taps) return answer(http::status::not_found, "this instance has no taps\n");
    std::string error;
    auto filter = parse_tap_query(target, error);
    if (!filter) return answer(http::status::bad_request, "bad tap request: " + error + "\n");
    std::string refusal;
    tap_ = state_->handlers.taps->attach(
        *filter,
        // Runs inside the pipeline's call: only schedules the write.
        [weak = weak_from_this(), executor = stream_.get_executor()] {
          boost::asio::post(executor, [weak] {
            if (auto self = weak.lock()) self->flush_tap();
          });
        },
        refusal);
    if (!tap_) {
      state_->refuse(Refusal::max_taps, "GET /tap (" + refusal + ")", stream_.socket());
      request_.keep_alive(false);
      return answer(http::status::too_many_requests, "too many taps: " + refusal + "; try again later\n");
    }
    state_->logger.info("tap attached for ", peer(), ": ", describe(*filter));
    // A tap is bulk and one-way: a modest send buffer keeps what the kernel
    // holds for a slow reader near tap_queue_bytes, and keep-alive probes
    // free the tap of a peer that vanished without closing.
    boost::system::error_code ignored;
    auto& socket = stream_.socket();
    socket.set_option(boost::asio::socket_base::send_buffer_size(64 * 1024), ignored);
    socket.set_option(boost::asio::socket_base::keep_alive(true), ignored);
    const int idle = 30, interval = 10, probes = 3;
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);

    chunked_ = request_.version() >= 11;
    auto header = std::make_shared<http::response<http::empty_body>>(http::status::ok, request_.version());
    header->set(http::field::server, "nudge");
    header->set(http::field::content_type, "application/x-ndjson");
    header->set(http::field::cache_control, "no-store");
    header->set("X-Content-Type-Options", "nosniff");
    header->keep_alive(false);
    if (chunked_) header->chunked(true);
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*header);
    writing_ = true;
    stream_.expires_after(state_->access.request_timeout);
    http::async_write_header(stream_, *serializer,
                             [self = shared_from_this(), header, serializer](beast::error_code ec, std::size_t) {
                               self->writing_ = false;
                               if (ec) return self->end_tap("the client went away");
                               self->watch_for_close();
                               self->flush_tap();
                             });
  }

  /// A tapper sends nothing more: a read ends only when it closes.
  void watch_for_close() {
    stream_.socket().async_read_some(boost::asio::buffer(discard_),
                                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                       if (ec) return self->end_tap("the client went away");
                                       self->watch_for_close();
                                     });
  }

  /// Writes what the tap queued, one write at a time; ends the stream once
  /// the limit is reached and everything is out.
  void flush_tap() {
    if (!tap_ || writing_ || phase_ == Phase::closed) return;
    auto data = std::make_shared<std::string>(tap_->take(kTapWrite));
    if (data->empty()) {
      if (tap_->finished()) end_tap("limit");
      return;
    }
    write_tap(std::move(data), false);
  }

  void write_tap(std::shared_ptr<std::string> data, bool last) {
    writing_ = true;
    // A tapper not reading for request_timeout is closed (its events were being missed meanwhile).
    stream_.expires_after(state_->access.request_timeout);
    auto done = [self = shared_from_this(), data, last](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      if (last) return self->close();
      if (ec)
        return self->end_tap(ec == beast::error::timeout
                                 ? "the client did not read for " +
                                       std::to_string(self->state_->access.request_timeout.count()) + " ms"
                                 : std::string("the client went away"));
      self->flush_tap();
    };
    if (!chunked_) return boost::asio::async_write(stream_, boost::asio::buffer(*data), std::move(done));
    if (!last) return boost::asio::async_write(stream_, http::make_chunk(boost::asio::buffer(*data)), std::move(done));
    // The last chunk carries the end notice, then the stream's terminator.
    boost::asio::async_write(stream_,
                             beast::buffers_cat(http::make_chunk(boost::asio::buffer(*data)), http::make_chunk_last()),
                             std::move(done));
  }

  /// Detaches the tap (once) and ends the stream: with an end notice when the
  /// client is still there (the limit), else by closing.
  void end_tap(const std::string& why) {
    if (!tap_) return;
    state_->handlers.taps->detach(tap_);
    const auto tap = std::move(tap_);
    tap_.reset();
    state_->logger.info("tap for ", peer(), " ended (", why, "): ", tap->events(), " events sent, ", tap->missed(),
                        " missed");
    if (why != "limit" || phase_ == Phase::closed) return close();
    auto notice = std::make_shared<std::string>(
        "{\"notice\":\"end\",\"reason\":\"limit\",\"events\":" + std::to_string(tap->events()) +
        ",\"missed\":" + std::to_string(tap->missed()) + "}\n");
    write_tap(std::move(notice), true);
  }

  void answer(http::status status, std::string body, const char* type = "text/plain; charset=utf-8",
              bool challenge = false) {
    enter(Phase::answering);
    answered_ = true;
    auto response = std::make_shared<http::response<http::string_body>>(status, request_.version());
    response->set(http::field::server, "nudge");
    response->set(http::field::content_type, type);
    response->set(http::field::cache_control, "no-store");
    response->set("X-Content-Type-Options", "nosniff");
    if (challenge) response->set(http::field::www_authenticate, "Bearer realm=\"nudge admin\"");
    response->keep_alive(request_.keep_alive());
    if (request_.method() != http::verb::head) response->body() = std::move(body);
    response->prepare_payload();
    stream_.expires_after(state_->access.request_timeout);
    http::async_write(stream_, *response, [self = shared_from_this(), response](beast::error_code ec, std::size_t) {
      if (ec || !response->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    if (phase_ == Phase::closed) return;
    enter(Phase::closed);
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  std::shared_ptr<AdminServer::State> state_;
  Phase phase_ = Phase::waiting;
  std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
  /// Whether a request was answered: a new connection's wait for its first byte is shorter.
  bool answered_ = false;
  // GET /tap: the tap being streamed, whether a write is under way, and chunked framing (HTTP/1.1).
  std::shared_ptr<Tap> tap_;
  bool writing_ = false;
  bool chunked_ = true;
  std::array<char, 512> discard_{};
};

}  // namespace

std::size_t AdminServer::State::open() const {
  return static_cast<std::size_t>(std::count_if(sessions.begin(), sessions.end(),
                                                [](const AdminSession* s) { return s->phase() != Phase::closed; }));
}

bool AdminServer::State::make_room() {
  const auto now = std::chrono::steady_clock::now();
  AdminSession* victim = nullptr;
  auto oldest = [&](Phase phase, std::chrono::steady_clock::duration at_least) {
    for (AdminSession* s : sessions)
      if (s->phase() == phase && now - s->since() >= at_least && (!victim || s->since() < victim->since())) victim = s;
  };
  oldest(Phase::waiting, std::chrono::steady_clock::duration::zero());
  if (!victim) oldest(Phase::receiving, access.first_byte_timeout);
  if (!victim) return false;
  evicted->add();
  const double seconds = std::chrono::duration<double>(now - victim->since()).count();
  logger.warn(
      "closed the admin connection from ", victim->peer(),
      victim->phase() == Phase::waiting ? ", waiting for a request for " : ", whose request was still arriving after ",
      static_cast<long long>(seconds * 1000), " ms, to make room for a new one (admin.max_connections)");
  victim->evict();
  return true;
}

AdminServer::AdminServer(boost::asio::io_context& io, AdminHandlers handlers, AdminAccess access,
                         MetricsRegistry& metrics)
    : io_(io), state_(std::make_shared<State>(std::move(handlers), std::move(access), metrics)), acceptor_(io) {}

AdminServer::~AdminServer() { stop(); }

Status AdminServer::start(const std::string& listen) {
  std::string host;
  std::uint16_t port = 0;
  if (!parse_host_port(listen, host, port))
    return Status::error(StatusCode::invalid_argument, "admin.listen: '" + listen + "' is not host:port");
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return Status::error(StatusCode::invalid_argument, "admin.listen: '" + host + "' is not an IP address");
  state_->listen_host = host_of(host);
  const tcp::endpoint endpoint(address, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::error(StatusCode::unavailable, "admin endpoint: cannot listen on " + listen + ": " + ec.message());
  const auto bound = acceptor_.local_endpoint();
  const std::string shown =
      bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
  state_->logger.info("admin endpoint listening on http://", shown, ":", bound.port(),
                      " (/healthz /readyz /metrics, POST /reload and GET /tap ",
                      state_->access.token.empty() ? "off: no admin token)" : "with the admin token)");
  accept();
  return Status::success();
}

unsigned short AdminServer::port() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void AdminServer::stop() {
  boost::system::error_code ignored;
  if (acceptor_.is_open()) acceptor_.close(ignored);
}

void AdminServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec && state_->open() >= state_->access.max_connections && !state_->make_room()) {
      state_->refuse(Refusal::max_connections,
                     "a connection (" + std::to_string(state_->open()) +
                         " open already, each in the middle of a request: admin.max_connections)",
                     socket);
      boost::system::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
    } else if (!ec) {
      std::make_shared<AdminSession>(std::move(socket), state_)->read();
    }
    accept();
  });
}

}  // namespace nudge::runtime
