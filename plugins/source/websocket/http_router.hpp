#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "hub.hpp"
#include "jwt.hpp"

namespace nudge::plugins::websocket {

namespace detail {
/// The Server header of every answer.
inline constexpr const char* kServer = "nudge";
}  // namespace detail

/// One HTTP connection, whatever its stream: what each request read is
/// answered with — a static file, a 4xx/5xx refusal, Engine.IO long-polling —
/// or the WebSocket it upgrades to, after the origin, token and connection
/// limits allow it.
///
/// Compiled once: reading a request, writing an answer and handing the
/// stream to a WebSocket are HttpSession's (the stream's), a virtual call
/// per request.
class HttpRouter : public std::enable_shared_from_this<HttpRouter> {
 public:
  virtual ~HttpRouter() = default;
  HttpRouter(const HttpRouter&) = delete;
  HttpRouter& operator=(const HttpRouter&) = delete;

 protected:
  using StringResponse = boost::beast::http::response<boost::beast::http::string_body>;
  using EmptyResponse = boost::beast::http::response<boost::beast::http::empty_body>;
  using FileResponse = boost::beast::http::response<boost::beast::http::file_body>;

  /// `socket_address` is the socket's peer (none once it is closed); `slot`
  /// names its peer key (empty: a trusted proxy). `buffer` holds bytes
  /// already read from the stream (TLS detection).
  HttpRouter(std::shared_ptr<Hub> hub, SocketSlot slot, std::optional<boost::asio::ip::address> socket_address,
             boost::beast::flat_buffer buffer);

  // What the stream provides (HttpSession).
  /// Writes `response`, then reads the next request (keep-alive) or closes.
  virtual void respond(StringResponse&& response) = 0;
  virtual void respond(EmptyResponse&& response) = 0;
  virtual void respond(FileResponse&& response) = 0;
  /// The deadline of what the connection waits for now; none: it may wait.
  virtual void expires_after(std::optional<std::chrono::milliseconds> timeout) = 0;
  /// Hands the stream to a WebSocket session that writes `response` (its
  /// 101) first; `early` holds what the client sent behind its request.
  virtual void hand_over(std::string response, std::string early, std::optional<JwtIdentity> identity,
                         std::shared_ptr<SioSession> sio, bool probe) = 0;
  /// Ends the connection after the last response (TLS: close_notify first).
  virtual void close() = 0;

  // For the stream.
  /// A new request is to be read: a parser with this source's limits.
  void prepare_request();
  /// A request was read (or not: `ec`): answers it.
  void on_read(boost::beast::error_code ec);

  std::shared_ptr<Hub> hub_;
  SocketSlot slot_;
  /// The client the request being served came from, and its peer_key: the
  /// socket's peer, or through a trusted proxy the X-Forwarded-For's
  /// (`forwarded_`; an empty peer when the proxy named none).
  std::string address_;
  std::string peer_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;

 private:
  void upgrade();
  /// A static file (GET or HEAD).
  void serve_file(std::string_view target);
  /// A request at socketio_path: Engine.IO long-polling, or the upgrade to WebSocket.
  void serve_socketio();
  /// A Socket.IO upgrade to WebSocket: of `session` (from long-polling), or of a new one.
  void upgrade_socketio(std::shared_ptr<SioSession> session);
  /// A long-polling GET: the handshake of a new session (none given), or a poll of `session`.
  void poll_socketio(std::shared_ptr<SioSession> session);
  /// A long-polling POST of packets for `session`.
  void post_socketio(std::shared_ptr<SioSession> session);
  /// A 200 answer to a long-polling request: a GET gets what the session has
  /// queued (`body`), a POST gets "ok" as text/html (as the reference server).
  void answer_socketio(std::string body, std::string_view content_type = "text/plain; charset=UTF-8");
  /// The CORS headers for an allowed cross-origin request.
  template <class Response>
  void add_cors(Response& response) const;
  void respond_socketio_error(boost::beast::http::status status, int code, std::string_view message);
  /// Checks the token (authentication on) and the connection limits; answers
  /// the refusal itself and returns false when the client may not connect.
  /// When true, the client is counted (Hub::open_client).
  bool admit(std::optional<JwtIdentity>& identity);
  /// Writes the 101 and hands the stream to a WsStreamSession.
  void accept_websocket(std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio, bool probe);
  void respond_text(boost::beast::http::status status, std::string body, std::string www_authenticate = {});
  bool origin_allowed() const;
  /// Sets address_ and peer_ for the request just read.
  void identify_client();
  /// Logs (at most every 10 s) a refused origin with the key that allows it.
  void note_refused_origin();

  std::optional<boost::asio::ip::address> socket_address_;
  /// The socket's peer is a trusted proxy.
  bool from_proxy_ = false;
  bool forwarded_ = false;
  /// The request being served is Socket.IO's (its token may come later, in CONNECT).
  bool sio_request_ = false;
};

}  // namespace nudge::plugins::websocket
