#include "sessions.hpp"

#include <chrono>

#include <boost/asio/dispatch.hpp>

#include "static_files.hpp"

namespace nudge::plugins::websocket {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ws = beast::websocket;
using tcp = boost::asio::ip::tcp;

namespace {
constexpr const char* kServer = "nudge";

std::string_view error_code_for(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "bad_request";
    case StatusCode::rejected: return "rejected";
    case StatusCode::unavailable:
    case StatusCode::timeout:
    case StatusCode::cancelled: return "unavailable";
    case StatusCode::internal: return "internal";
  }
  return "internal";
}

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}
}  // namespace

Hub::Hub(const WebSocketConfig& cfg, Context& ctx)
    : config(cfg),
      logger(ctx.logger()),
      instance_id(ctx.instance_id()),
      connections_accepted(ctx.metrics().counter("connections_accepted", "WebSocket connections accepted")),
      connections_refused(ctx.metrics().counter("connections_refused", "Upgrades refused (limits, origin)")),
      connections_open(ctx.metrics().gauge("connections_open", "WebSocket connections open")),
      frames_in(ctx.metrics().counter("frames_in", "Client frames received")),
      frames_refused(ctx.metrics().counter("frames_refused", "Client frames answered with an error")),
      frames_rate_limited(ctx.metrics().counter("frames_rate_limited", "Client frames refused for the rate limit")),
      messages_delivered(ctx.metrics().counter("messages_delivered", "Message frames queued to clients")),
      slow_clients_dropped(ctx.metrics().counter("slow_clients_dropped", "Clients dropped for a full send queue")) {}

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

// ---------------------------------------------------------------- WsSession

WsSession::WsSession(std::shared_ptr<Hub> hub, tcp::socket&& socket, std::string address)
    : hub_(std::move(hub)),
      ws_(std::move(socket)),
      address_(std::move(address)),
      bucket_(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
              TokenBucket::Clock::now()) {}

WsSession::~WsSession() { hub_->remove(this); }

void WsSession::run(http::request<http::string_body> request) {
  hub_->sessions.insert(this);
  ++hub_->connections_by_address[address_];
  hub_->connections_open.add(1);
  hub_->connections_accepted.add();
  beast::get_lowest_layer(ws_).expires_never();
  ws::stream_base::timeout timeout;
  timeout.handshake_timeout = std::chrono::milliseconds(hub_->config.handshake_timeout_ms);
  // Beast pings at half the idle time and closes when that ping goes unanswered.
  timeout.idle_timeout = std::chrono::milliseconds(hub_->config.idle_timeout_ms);
  timeout.keep_alive_pings = true;
  ws_.set_option(timeout);
  ws_.set_option(ws::stream_base::decorator([](ws::response_type& res) { res.set(http::field::server, kServer); }));
  ws_.read_message_max(static_cast<std::size_t>(hub_->config.max_message_bytes));
  ws_.auto_fragment(false);
  ws_.async_accept(request, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
}

void WsSession::on_accept(beast::error_code ec) {
  if (ec) return fail(ec, "handshake");
  do_read();
}

void WsSession::do_read() {
  if (closing_ || !hub_->intake_open) return;
  ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
}

void WsSession::on_read(beast::error_code ec, std::size_t) {
  if (ec) return fail(ec, "read");
  hub_->frames_in.add();
  if (!bucket_.allow(TokenBucket::Clock::now())) {
    // Refused unread: parsing is work the limit is there to spare.
    buffer_.consume(buffer_.size());
    hub_->frames_rate_limited.add();
    send_text(error_frame("", "rate_limited", "too many frames; slow down"));
    if (++rate_strikes_ >= hub_->config.rate_limit_strikes) {
      hub_->logger.debug("closing a connection from '", address_, "' after ", rate_strikes_,
                         " frames refused for the rate limit");
      return close_after_queue(ws::close_code::policy_error, "rate limit exceeded");
    }
    return do_read();
  }
  if (!ws_.got_text()) {
    buffer_.consume(buffer_.size());
    hub_->frames_refused.add();
    send_text(error_frame("", "bad_request", "binary frames are not supported; send JSON text frames"));
    return do_read();
  }
  ProtocolError error;
  auto frame = parse_client_frame(
      std::string_view(static_cast<const char*>(buffer_.data().data()), buffer_.size()), error);
  buffer_.consume(buffer_.size());
  if (!frame) {
    hub_->frames_refused.add();
    send_text(error_frame(error.ref, error.code, error.message));
    return do_read();
  }
  handle(std::move(*frame));
}

void WsSession::handle(ClientFrame frame) {
  switch (frame.type) {
    case ClientFrame::Type::hello:
      name_ = std::move(frame.name);
      return do_read();
    case ClientFrame::Type::join:
      if (rooms_.insert(frame.room).second) hub_->join(this, frame.room);
      return do_read();
    case ClientFrame::Type::leave:
      if (rooms_.erase(frame.room)) hub_->leave(this, frame.room);
      return do_read();
    case ClientFrame::Type::send: break;
  }
  if (!rooms_.contains(frame.room)) {
    hub_->frames_refused.add();
    send_text(error_frame(frame.ref, "not_joined", "join room '" + frame.room + "' before sending to it"));
    return do_read();
  }
  if (!hub_->ingress || !hub_->intake_open) {
    send_text(error_frame(frame.ref, "unavailable", "the server is shutting down; send again after reconnecting"));
    return;
  }
  auto message = std::make_shared<Message>();
  message->id = MessageId::generate();
  message->room = std::move(frame.room);
  message->sender = name_;
  message->payload = std::move(frame.text);
  message->timestamp_ms = now_ms();
  message->origin = hub_->instance_id;
  const MessageId id = message->id;
  std::weak_ptr<WsSession> weak = weak_from_this();
  hub_->ingress->publish(std::move(message), [weak, ref = std::move(frame.ref), id](Status status) {
    auto self = weak.lock();
    if (!self) return;
    if (status.ok()) self->send_text(ack_frame(ref, id));
    else self->send_text(error_frame(ref, error_code_for(status.code()), status.message()));
  });
  // Backpressure: the next frame is read only when the pipeline has room.
  // The waiter owns the session: no read is pending to keep it alive meanwhile.
  hub_->ingress->when_ready([self = shared_from_this()] { self->do_read(); });
}

void WsSession::send_text(std::string text) { send(std::make_shared<const std::string>(std::move(text))); }

void WsSession::send(std::shared_ptr<const std::string> frame) {
  if (closing_) return;
  if (queue_.size() >= static_cast<std::size_t>(hub_->config.max_send_queue)) {
    hub_->slow_clients_dropped.add();
    hub_->logger.debug("dropping a client whose send queue is full (", queue_.size(), " frames)");
    return drop(ws::close_code::policy_error, "send queue full: client too slow");
  }
  queue_.push_back(std::move(frame));
  if (!writing_) do_write();
}

void WsSession::do_write() {
  writing_ = true;
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(*queue_.front()),
                  beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
}

void WsSession::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  if (ec) return fail(ec, "write");
  if (!queue_.empty()) queue_.pop_front();
  if (!queue_.empty()) return do_write();
  if (closing_) finish_close();
}

void WsSession::shutdown() { close_after_queue(ws::close_code::going_away, "server shutting down"); }

void WsSession::close_after_queue(ws::close_code code, std::string reason) {
  if (closing_) return;
  closing_ = true;
  close_code_ = code;
  close_reason_ = std::move(reason);
  if (!writing_ && queue_.empty()) finish_close();
}

void WsSession::drop(ws::close_code code, std::string reason) {
  closing_ = true;
  close_code_ = code;
  close_reason_ = std::move(reason);
  // The frame being written must outlive its write; everything behind it goes.
  if (writing_) queue_.erase(std::next(queue_.begin()), queue_.end());
  else {
    queue_.clear();
    finish_close();
  }
}

void WsSession::finish_close() {
  if (closed_) return;
  closed_ = true;
  hub_->remove(this);
  ws_.async_close(ws::close_reason(close_code_, close_reason_), [self = shared_from_this()](beast::error_code) {
    beast::error_code ignored;
    beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
  });
}

void WsSession::fail(beast::error_code ec, const char* what) {
  closed_ = true;
  hub_->remove(this);
  if (ec == ws::error::closed || ec == boost::asio::error::operation_aborted || ec == boost::asio::error::eof ||
      ec == boost::asio::error::connection_reset)
    return;
  hub_->logger.debug("connection closed on ", what, ": ", ec.message());
}

// -------------------------------------------------------------- HttpSession

HttpSession::HttpSession(std::shared_ptr<Hub> hub, tcp::socket&& socket)
    : hub_(std::move(hub)), stream_(std::move(socket)) {}

void HttpSession::run() {
  boost::asio::dispatch(stream_.get_executor(), beast::bind_front_handler(&HttpSession::do_read, shared_from_this()));
}

void HttpSession::do_read() {
  parser_.emplace();
  parser_->header_limit(16 * 1024);
  parser_->body_limit(64 * 1024);
  // The whole request must arrive in time: a client trickling bytes holds nothing for long.
  stream_.expires_after(std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
  http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
}

bool HttpSession::origin_allowed() const {
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

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == boost::asio::error::eof) {
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    return;
  }
  if (ec == beast::error::timeout || ec == boost::asio::error::operation_aborted) return;
  if (ec) return respond_text(http::status::bad_request, "bad request: " + ec.message() + "\n");

  const auto& req = parser_->get();
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  if (ws::is_upgrade(req)) {
    if (path != hub_->config.path) return respond_text(http::status::not_found, "no WebSocket endpoint here\n");
    return upgrade();
  }
  if (req.method() != http::verb::get && req.method() != http::verb::head)
    return respond_text(http::status::method_not_allowed, "only GET and HEAD are served\n");
  if (path == hub_->config.path)
    return respond_text(http::status::upgrade_required, "this is a WebSocket endpoint\n");

  const auto file = resolve_static_path(hub_->config.static_dir, target);
  if (!file) return respond_text(http::status::not_found, "not found\n");
  http::file_body::value_type body;
  body.open(file->c_str(), beast::file_mode::scan, ec);
  if (ec) return respond_text(http::status::not_found, "not found\n");
  const auto size = body.size();
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::server, kServer);
    res.set(http::field::content_type, content_type_for(*file));
    res.content_length(size);
    res.keep_alive(req.keep_alive());
    return respond(std::move(res));
  }
  http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(body)),
                                      std::make_tuple(http::status::ok, req.version())};
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, content_type_for(*file));
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  res.content_length(size);
  res.keep_alive(req.keep_alive());
  respond(std::move(res));
}

void HttpSession::upgrade() {
  if (!hub_->intake_open) {
    hub_->connections_refused.add();
    return respond_text(http::status::service_unavailable, "shutting down\n");
  }
  if (!origin_allowed()) {
    hub_->connections_refused.add();
    hub_->logger.warn("refused a WebSocket from origin '", std::string(parser_->get()[http::field::origin]),
                      "' (not in allowed_origins)");
    return respond_text(http::status::forbidden, "origin not allowed\n");
  }
  if (hub_->sessions.size() >= static_cast<std::size_t>(hub_->config.max_connections)) {
    hub_->connections_refused.add();
    return respond_text(http::status::service_unavailable, "too many connections\n");
  }
  beast::error_code ec;
  const auto remote = stream_.socket().remote_endpoint(ec);
  std::string address = ec ? std::string() : remote.address().to_string();
  const auto per_address = hub_->config.max_connections_per_address;
  if (per_address > 0) {
    const auto it = hub_->connections_by_address.find(address);
    if (it != hub_->connections_by_address.end() && it->second >= static_cast<std::size_t>(per_address)) {
      hub_->connections_refused.add();
      hub_->logger.debug("refused a WebSocket from '", address, "': ", it->second, " connections already open");
      return respond_text(http::status::service_unavailable, "too many connections from this address\n");
    }
  }
  auto session = std::make_shared<WsSession>(hub_, stream_.release_socket(), std::move(address));
  session->run(parser_->release());
}

template <class Response>
void HttpSession::respond(Response&& response) {
  auto res = std::make_shared<std::decay_t<Response>>(std::forward<Response>(response));
  const bool keep_alive = res->keep_alive();
  http::async_write(stream_, *res, [self = shared_from_this(), res, keep_alive](beast::error_code ec, std::size_t) {
    if (ec || !keep_alive) {
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    self->do_read();
  });
}

void HttpSession::respond_text(http::status status, std::string body) {
  http::response<http::string_body> res{status, parser_ ? parser_->get().version() : 11};
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  respond(std::move(res));
}

}  // namespace nudge::plugins::websocket
