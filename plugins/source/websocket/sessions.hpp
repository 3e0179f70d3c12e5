#pragma once

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "config.hpp"
#include "nudge/sdk.hpp"
#include "protocol.hpp"
#include "token_bucket.hpp"

namespace nudge::plugins::websocket {

class WsSession;

/// State shared by the source and its sessions. Sessions hold it by
/// shared_ptr, so a session finishing after the source stopped (its last
/// handler destroyed with the event loop) still finds it alive; `ingress` is
/// null from then on.
struct Hub {
  Hub(const WebSocketConfig& cfg, Context& ctx);

  WebSocketConfig config;
  Logger& logger;
  Ingress* ingress = nullptr;
  bool intake_open = true;
  std::string instance_id;

  std::unordered_set<WsSession*> sessions;
  std::unordered_map<std::string, std::unordered_set<WsSession*>> rooms;
  /// Open sessions per remote IP address (max_connections_per_address).
  std::unordered_map<std::string, std::size_t> connections_by_address;
  std::function<void()> on_last_session_closed;

  Counter& connections_accepted;
  Counter& connections_refused;
  Gauge& connections_open;
  Counter& frames_in;
  Counter& frames_refused;
  Counter& frames_rate_limited;
  Counter& messages_delivered;
  Counter& slow_clients_dropped;

  void join(WsSession* session, const std::string& room);
  void leave(WsSession* session, const std::string& room);
  void remove(WsSession* session);
};

/// One WebSocket client speaking the chat protocol.
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  /// `address` is the client's IP address, counted against max_connections_per_address.
  WsSession(std::shared_ptr<Hub> hub, boost::asio::ip::tcp::socket&& socket, std::string address);
  ~WsSession();

  /// Completes the upgrade that `request` asked for, then serves the client.
  void run(boost::beast::http::request<boost::beast::http::string_body> request);
  /// Queues a frame. A client whose queue is full is dropped (close 1008).
  void send(std::shared_ptr<const std::string> frame);
  /// Closes with 1001 (going away) once queued frames are written.
  void shutdown();

  const std::set<std::string>& rooms() const noexcept { return rooms_; }
  const std::string& address() const noexcept { return address_; }

 private:
  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void handle(ClientFrame frame);
  void send_text(std::string text);
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  /// Drops what is queued and closes with `code`.
  void drop(boost::beast::websocket::close_code code, std::string reason);
  /// Stops reading and closes with `code` once queued frames are written.
  void close_after_queue(boost::beast::websocket::close_code code, std::string reason);
  void finish_close();
  void fail(boost::beast::error_code ec, const char* what);

  std::shared_ptr<Hub> hub_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
  boost::beast::websocket::close_code close_code_ = boost::beast::websocket::close_code::going_away;
  std::string close_reason_;
  std::string name_ = "anonymous";
  std::set<std::string> rooms_;
  std::string address_;
  TokenBucket bucket_;
  std::int64_t rate_strikes_ = 0;
};

/// One HTTP connection: serves the static files and hands WebSocket upgrade
/// requests on the endpoint's path to a WsSession.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(std::shared_ptr<Hub> hub, boost::asio::ip::tcp::socket&& socket);
  void run();

 private:
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void upgrade();
  template <class Response>
  void respond(Response&& response);
  void respond_text(boost::beast::http::status status, std::string body);
  bool origin_allowed() const;

  std::shared_ptr<Hub> hub_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
};

}  // namespace nudge::plugins::websocket
