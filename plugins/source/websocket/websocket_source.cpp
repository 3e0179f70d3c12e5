#include "websocket_source.hpp"

#include <boost/asio/ip/address.hpp>

namespace nudge::plugins::websocket {

using tcp = boost::asio::ip::tcp;

WebSocketSource::WebSocketSource(const Config& config, Context& context)
    : context_(context),
      hub_(std::make_shared<Hub>(WebSocketConfig::from(config), context)),
      acceptor_(context.executor()),
      stop_timer_(context.executor()),
      undeliverable_(context.metrics().counter("undeliverable", "Messages whose payload is not valid UTF-8")) {}

WebSocketSource::~WebSocketSource() {
  hub_->ingress = nullptr;
  hub_->on_last_session_closed = nullptr;
}

Status WebSocketSource::start(Ingress& ingress) {
  const auto& cfg = hub_->config;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(cfg.host == "localhost" ? "127.0.0.1" : cfg.host, ec);
  if (ec) return Status::error(StatusCode::invalid_argument, "listen: '" + cfg.host + "' is not an IP address");
  const tcp::endpoint endpoint(address, cfg.port);
  const std::string where = cfg.host + ":" + std::to_string(cfg.port);
  if (acceptor_.open(endpoint.protocol(), ec); ec) return Status::error(StatusCode::unavailable, "cannot open a socket for " + where + ": " + ec.message());
  acceptor_.set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (acceptor_.bind(endpoint, ec); ec) {
    const std::string hint = ec == boost::asio::error::address_in_use
                                 ? " (another process listens there; stop it or change source.websocket.listen)"
                                 : "";
    return Status::error(StatusCode::unavailable, "cannot listen on " + where + ": " + ec.message() + hint);
  }
  if (acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec); ec)
    return Status::error(StatusCode::unavailable, "cannot listen on " + where + ": " + ec.message());
  bound_port_ = acceptor_.local_endpoint().port();
  hub_->ingress = &ingress;
  do_accept();
  const std::string url_host = address.is_v6() ? "[" + cfg.host + "]" : cfg.host;
  if (cfg.static_dir.empty())
    context_.logger().info("listening on ws://", url_host, ":", bound_port_, cfg.path, " (no static_dir: no page served)");
  else
    context_.logger().info("serving the chat at http://", url_host, ":", bound_port_, "/ (WebSocket at ",
                           cfg.path, ")");
  return Status::success();
}

void WebSocketSource::do_accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Running out of file descriptors must not end the accept loop.
      context_.logger().warn("accept failed: ", ec.message());
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<HttpSession>(hub_, std::move(socket))->run();
    }
    do_accept();
  });
}

void WebSocketSource::deliver(const MessagePtr& message) {
  const auto room = hub_->rooms.find(message->room);
  if (room == hub_->rooms.end()) return;
  // Serialised once and shared by every recipient's send queue.
  auto frame = std::make_shared<const std::string>(message_frame(*message));
  if (frame->empty()) {
    undeliverable_.add();
    return;
  }
  // A send may drop a slow client, which removes it from the room: iterate a copy.
  std::vector<WsSession*> members(room->second.begin(), room->second.end());
  for (WsSession* session : members) session->send(frame);
  hub_->messages_delivered.add(members.size());
}

void WebSocketSource::stop_intake() {
  hub_->intake_open = false;
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void WebSocketSource::stop(std::function<void()> done) {
  stop_intake();
  if (hub_->sessions.empty()) return done();
  auto finished = std::make_shared<std::function<void()>>(std::move(done));
  auto finish_once = [finished] {
    if (*finished) std::exchange(*finished, nullptr)();
  };
  hub_->on_last_session_closed = finish_once;
  // Clients that do not answer the close handshake are not waited for long.
  stop_timer_.expires_after(std::chrono::seconds(2));
  stop_timer_.async_wait([finish_once](boost::system::error_code) { finish_once(); });
  context_.logger().info("closing ", hub_->sessions.size(), " connections");
  std::vector<WsSession*> sessions(hub_->sessions.begin(), hub_->sessions.end());
  for (WsSession* session : sessions) session->shutdown();
}

}  // namespace nudge::plugins::websocket
