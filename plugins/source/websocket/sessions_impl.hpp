// The definitions of the session templates, included by the translation units
// that instantiate them: sessions_plain.cpp and sessions_tls.cpp. Beast's
// templates make each instantiation take minutes to compile; one per file
// lets a parallel build do them at once.
#pragma once

#include "sessions.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/detect_ssl.hpp>

#include "socketio_session.hpp"

namespace nudge::plugins::websocket {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

namespace detail {

/// Allocates an operation at its own size. Asio's default recycles blocks
/// between operations, so the wait of an idle client would hold the block
/// of whatever operation finished before it (the accept: about 0.5 KiB);
/// std::allocator would be replaced by that same recycling.
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
  friend bool operator==(ExactAllocator, ExactAllocator) noexcept { return true; }
};

/// Reads of the shared buffer one readable connection gets before others
/// have their turn.
inline constexpr int kReadsPerWakeup = 4;
/// What one TLS read decrypts into (TLS connections hold it while open).
inline constexpr std::size_t kTlsReadSize = 4096;
/// Queued frames written by one system call at most.
inline constexpr std::size_t kFramesPerWrite = 16;

template <class Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

/// The TCP socket under a WebSocket stream, whatever layers are between.
template <class WebSocket>
LoopSocket& tcp_socket(WebSocket& ws) {
  auto& lowest = beast::get_lowest_layer(ws);
  if constexpr (requires { lowest.socket(); }) return lowest.socket();
  else return lowest;
}

}  // namespace detail

/// The peer's address, or none once the socket is closed.
template <class Stream>
std::optional<boost::asio::ip::address> remote_ip(Stream& stream) {
  beast::error_code ec;
  const auto remote = beast::get_lowest_layer(stream).socket().remote_endpoint(ec);
  if (ec) return std::nullopt;
  return remote.address();
}

/// The peer's IP address, or "" once the socket is closed.
template <class Stream>
std::string remote_address(Stream& stream) {
  const auto ip = remote_ip(stream);
  return ip ? ip->to_string() : std::string();
}

// ---------------------------------------------------------- WsStreamSession

template <class Stream>
WsStreamSession<Stream>::WsStreamSession(std::shared_ptr<Hub> hub, Stream&& stream, SocketSlot slot,
                                         std::string address, std::string peer, std::optional<JwtIdentity> identity,
                                         std::shared_ptr<SioSession> sio, bool probe)
    : WsConnection(std::move(hub), std::move(slot), std::move(address), std::move(peer), std::move(identity),
                   std::move(sio), probe),
      stream_(WsLayer<Stream>::from(std::move(stream))) {}

template <class Stream>
void WsStreamSession<Stream>::run(std::string response, std::string early) {
  begin(std::move(early));
  beast::error_code ec;
  if constexpr (detail::kIsTls<Stream>) {
    beast::get_lowest_layer(stream_).expires_never();
  } else {
    stream_.non_blocking(true, ec);  // read_some returns would_block instead of waiting
  }
  auto bytes = std::make_shared<const std::string>(std::move(response));
  boost::asio::async_write(stream_, boost::asio::buffer(*bytes),
                           [self = self(), bytes](beast::error_code ec, std::size_t) { self->on_upgraded(ec); });
}

template <class Stream>
LoopSocket& WsStreamSession<Stream>::tcp_socket() noexcept {
  return detail::tcp_socket(stream_);
}

template <class Stream>
void WsStreamSession<Stream>::read_socket() {
  if constexpr (detail::kIsTls<Stream>) {
    if (!tls_input_) tls_input_.reset(new std::uint8_t[detail::kTlsReadSize]);
    stream_.async_read_some(boost::asio::buffer(tls_input_.get(), detail::kTlsReadSize),
                            beast::bind_front_handler(&WsStreamSession::on_tls_read, self()));
  } else {
    // No buffer is held while the client is silent: the socket is waited on,
    // then read into the hub's buffer.
    // The wait holds a block of its own size while the client is silent
    // (detail::ExactAllocator).
    // A lambda holding the session alone: 16 bytes of handler, where
    // bind_front_handler's member pointer makes 32.
    stream_.async_wait(Socket::wait_read,
                       boost::asio::bind_allocator(detail::ExactAllocator<void>(),
                                                   [self = self()](beast::error_code ec) { self->on_readable(ec); }));
  }
}

template <class Stream>
void WsStreamSession<Stream>::on_readable(beast::error_code ec) {
  read_pending_ = false;
  if (ec) return fail(ec, "read");
  if (state() == ConnectionState::closed) return;
  std::uint8_t* buffer = hub_->read_buffer.get();
  for (int reads = 0; reads < detail::kReadsPerWakeup; ++reads) {
    const std::size_t bytes = stream_.read_some(boost::asio::buffer(buffer, Hub::kReadBufferSize), ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) break;
    if (ec) return fail(ec, "read");
    if (!on_bytes({buffer, bytes})) return;
    if (bytes < Hub::kReadBufferSize) break;  // drained: the next wait sees new bytes
  }
  start_socket_read();
}

template <class Stream>
void WsStreamSession<Stream>::on_tls_read(beast::error_code ec, std::size_t bytes) {
  read_pending_ = false;
  if (ec) return fail(ec, "read");
  if (state() == ConnectionState::closed) return;
  if (!on_bytes({tls_input_.get(), bytes})) return;
  start_socket_read();
}

template <class Stream>
void WsStreamSession<Stream>::do_write() {
  Busy& b = busy();
  writing_ = true;
  while (true) {
    // Everything queued goes in one write, up to a bound: a client behind by
    // many frames costs one system call, not one each.
    std::array<boost::asio::const_buffer, detail::kFramesPerWrite> buffers;
    b.frames_in_flight = b.queue.gather(buffers);
    std::size_t written = 0;
    if constexpr (!detail::kIsTls<Stream>) {
      // The socket is non-blocking and a client that keeps up has room in
      // its socket buffer: write at once, with no asynchronous operation (and
      // no allocation or completion handler) per delivery. Only what does not
      // fit waits for the socket to be writable.
      beast::error_code ec;
      written = stream_.write_some(buffers, ec);
      if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
        written = 0;
      } else if (ec) {
        writing_ = false;
        return fail(ec, "write");
      } else if (written == boost::asio::buffer_size(buffers)) {
        if (!after_write()) {
          writing_ = false;
          return;
        }
        continue;
      }
    }
    // The write waits for the client: write_timeout_ms counts from here.
    b.last_written = Clock::now();
    beast::buffers_suffix<std::array<boost::asio::const_buffer, detail::kFramesPerWrite>> rest(buffers);
    rest.consume(written);
    boost::asio::async_write(stream_, rest, beast::bind_front_handler(&WsStreamSession::on_write, self()));
    return;
  }
}

template <class Stream>
void WsStreamSession<Stream>::on_write(beast::error_code ec, std::size_t) {
  if (ec) {
    writing_ = false;
    busy().frames_in_flight = 0;
    return fail(ec, "write");
  }
  if (state() == ConnectionState::closed) return;
  if (after_write()) return do_write();
  writing_ = false;
}

// -------------------------------------------------------------- HttpSession

template <class Stream>
HttpSession<Stream>::HttpSession(std::shared_ptr<Hub> hub, Stream&& stream, SocketSlot slot, beast::flat_buffer buffer)
    : HttpRouter(std::move(hub), std::move(slot), remote_ip(stream), std::move(buffer)), stream_(std::move(stream)) {}

template <class Stream>
void HttpSession<Stream>::run() {
  if constexpr (detail::kIsTls<Stream>) {
    // The TLS handshake counts against the same deadline as the request.
    beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
    stream_.async_handshake(ssl::stream_base::server, buffer_.data(),
                            beast::bind_front_handler(&HttpSession::on_handshake, self()));
  } else {
    boost::asio::dispatch(stream_.get_executor(), beast::bind_front_handler(&HttpSession::do_read, self()));
  }
}

template <class Stream>
void HttpSession<Stream>::on_handshake(beast::error_code ec, std::size_t used) {
  if (ec) return hub_->note_tls_failure(address_, ec.message(), false);
  buffer_.consume(used);
  do_read();
}

template <class Stream>
void HttpSession<Stream>::do_read() {
  prepare_request();
  http::async_read(stream_, buffer_, *parser_,
                   [self = self()](beast::error_code ec, std::size_t) { self->on_read(ec); });
}

template <class Stream>
template <class Response>
void HttpSession<Stream>::write(Response&& response) {
  auto res = std::make_shared<std::decay_t<Response>>(std::forward<Response>(response));
  const bool keep_alive = res->keep_alive();
  http::async_write(stream_, *res, [self = self(), res, keep_alive](beast::error_code ec, std::size_t) {
    if (ec || !keep_alive) return self->close();
    self->do_read();
  });
}

template <class Stream>
void HttpSession<Stream>::expires_after(std::optional<std::chrono::milliseconds> timeout) {
  if (timeout) beast::get_lowest_layer(stream_).expires_after(*timeout);
  else beast::get_lowest_layer(stream_).expires_never();
}

template <class Stream>
void HttpSession<Stream>::hand_over(std::string response, std::string early, std::optional<JwtIdentity> identity,
                                    std::shared_ptr<SioSession> sio, bool probe) {
  auto session = std::make_shared<WsStreamSession<Stream>>(hub_, std::move(stream_), std::move(slot_), address_, peer_,
                                                           std::move(identity), sio, probe);
  if (sio && !probe) {
    // A WebSocket-only Socket.IO client: its session starts on this connection.
    sio->attach_websocket(session);
    sio->start();
  }
  session->run(std::move(response), std::move(early));
}

template <class Stream>
void HttpSession<Stream>::close() {
  if constexpr (detail::kIsTls<Stream>) {
    // close_notify, bounded: a peer that never answers it is not waited for.
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = self()](beast::error_code) { beast::get_lowest_layer(self->stream_).close(); });
  } else {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
}

}  // namespace nudge::plugins::websocket
