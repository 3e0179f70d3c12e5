#pragma once

// The layers of a client connection, bottom up:
//   hub.hpp            the source's shared state (Hub) and a client as the hub sees it (WsSession)
//   ws_connection.hpp  RFC 6455 over a stream (WsConnection), and the stream itself (WsStreamSession)
//   http_router.hpp    an HTTP connection: static files, refusals, long-polling, the upgrade (HttpRouter)
//   sessions.hpp       the same over a stream (HttpSession), and the TLS detector
// The chat protocol (chat_protocol.hpp) and the Socket.IO bridge (socketio_session.hpp) sit on a WsConnection.

#include <memory>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "http_router.hpp"
#include "hub.hpp"
#include "ws_connection.hpp"

namespace nudge::plugins::websocket {

/// An HttpRouter over `Stream` (PlainStream or TlsStream): only what depends
/// on the stream — the TLS handshake, reading a request, writing an answer,
/// handing the stream to a WsStreamSession.
template <class Stream>
class HttpSession final : public HttpRouter {
 public:
  /// `buffer` holds bytes already read from the stream (TLS detection).
  HttpSession(std::shared_ptr<Hub> hub, Stream&& stream, SocketSlot slot, boost::beast::flat_buffer buffer = {});
  void run();

 private:
  // HttpRouter
  void respond(StringResponse&& response) override { write(std::move(response)); }
  void respond(EmptyResponse&& response) override { write(std::move(response)); }
  void respond(FileResponse&& response) override { write(std::move(response)); }
  void expires_after(std::optional<std::chrono::milliseconds> timeout) override;
  void hand_over(std::string response, std::string early, std::optional<JwtIdentity> identity,
                 std::shared_ptr<SioSession> sio, bool probe) override;
  void close() override;

  std::shared_ptr<HttpSession> self() { return std::static_pointer_cast<HttpSession>(shared_from_this()); }
  /// TLS only: the handshake done (`used`: bytes of `buffer_` it consumed).
  void on_handshake(boost::beast::error_code ec, std::size_t used);
  void do_read();
  template <class Response>
  void write(Response&& response);

  Stream stream_;
};

/// First step of a connection to a TLS listener: tells a TLS ClientHello from
/// plaintext. TLS goes on to an HttpSession<TlsStream>; a plaintext client
/// gets a short HTTP 400 saying to use https:// or wss://, and is closed.
class TlsDetector : public std::enable_shared_from_this<TlsDetector> {
 public:
  TlsDetector(std::shared_ptr<Hub> hub, LoopSocket&& socket, SocketSlot slot);
  void run();

 private:
  void on_detect(boost::beast::error_code ec, bool is_tls);
  void drain();

  std::shared_ptr<Hub> hub_;
  PlainStream stream_;
  SocketSlot slot_;
  boost::beast::flat_buffer buffer_;
};

extern template class WsStreamSession<PlainStream>;
extern template class WsStreamSession<TlsStream>;
extern template class HttpSession<PlainStream>;
extern template class HttpSession<TlsStream>;

}  // namespace nudge::plugins::websocket
