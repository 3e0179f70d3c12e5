// The definitions of the session templates, included by the translation units
// that instantiate them: sessions_plain.cpp and sessions_tls.cpp. Beast's
// templates make each instantiation take minutes to compile; one per file
// lets a parallel build do them at once.
#pragma once

#include "sessions.hpp"

#include <algorithm>
#include <chrono>

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "json_writer.hpp"
#include "socketio_session.hpp"
#include "static_files.hpp"

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

inline constexpr const char* kServer = "nudge";
/// How long a dropped client's write in flight may take before its socket is
/// closed outright (a client too slow for its queue rarely reads a close frame).
inline constexpr std::chrono::seconds kDropGrace{1};
/// Reads of the shared buffer one readable connection gets before others
/// have their turn.
inline constexpr int kReadsPerWakeup = 4;
/// What a closing connection may still send besides one message before the
/// socket is closed without waiting for its close frame.
inline constexpr std::size_t kReadWhileClosing = 64 * 1024;
/// What one TLS read decrypts into (TLS connections hold it while open).
inline constexpr std::size_t kTlsReadSize = 4096;
/// Queued frames written by one system call at most.
inline constexpr std::size_t kFramesPerWrite = 16;
/// Largest request header (request line and fields) read.
inline constexpr std::size_t kMaxHeaderBytes = 16 * 1024;

template <class Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

/// The TCP socket under a WebSocket stream, whatever layers are between.
template <class WebSocket>
LoopSocket& tcp_socket(WebSocket& ws) {
  auto& lowest = beast::get_lowest_layer(ws);
  if constexpr (requires { lowest.socket(); }) return lowest.socket();
  else return lowest;
}

/// Bytes the kernel holds for the socket that the peer has not acknowledged (SIOCOUTQ); 0 when unknown.
inline int unsent_bytes(LoopSocket& socket) {
  int unsent = 0;
  if (::ioctl(socket.native_handle(), SIOCOUTQ, &unsent) != 0) return 0;
  return unsent;
}

inline std::string_view view(boost::beast::string_view s) noexcept { return {s.data(), s.size()}; }

/// The raw value of `name` in a request target's query ("" when absent);
/// Engine.IO's parameters need no percent-decoding.
inline std::string_view query_parameter(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}
}  // namespace detail

/// The peer's IP address, or "" once the socket is closed.
template <class Stream>
std::string remote_address(Stream& stream) {
  beast::error_code ec;
  const auto remote = beast::get_lowest_layer(stream).socket().remote_endpoint(ec);
  return ec ? std::string() : remote.address().to_string();
}

// ---------------------------------------------------------- WsStreamSession

template <class Stream>
WsStreamSession<Stream>::WsStreamSession(std::shared_ptr<Hub> hub, Stream&& stream, SocketSlot slot,
                                         std::string address, std::string peer, std::optional<JwtIdentity> identity,
                                         std::shared_ptr<SioSession> sio, bool probe)
    : WsSession(std::move(hub), std::move(address), std::move(peer), std::move(identity)),
      stream_(WsLayer<Stream>::from(std::move(stream))),
      slot_(std::move(slot)),
      sio_(std::move(sio)),
      probing_(probe) {
  if (sio_) counted_ = Counted::nothing;  // the Socket.IO session is the client counted
}

template <class Stream>
WsStreamSession<Stream>::~WsStreamSession() {
  hub_->remove(this);
}

template <class Stream>
void WsStreamSession<Stream>::run(std::string response, std::string early) {
  hub_->sessions.insert(this);
  last_heard_ = Clock::now();
  if (!early.empty()) busy().pending_input = std::move(early);
  beast::error_code ec;
  if constexpr (detail::kIsTls<Stream>) {
    beast::get_lowest_layer(stream_).expires_never();
  } else {
    stream_.non_blocking(true, ec);  // read_some returns would_block instead of waiting
  }
  auto bytes = std::make_shared<const std::string>(std::move(response));
  boost::asio::async_write(stream_, boost::asio::buffer(*bytes),
                           [self = this->shared_from_this(), bytes](beast::error_code ec, std::size_t) {
                             self->on_upgraded(ec);
                           });
}

template <class Stream>
void WsStreamSession<Stream>::on_upgraded(beast::error_code ec) {
  if (ec) return fail(ec, "handshake");
  upgraded_ = true;
  do_read();
  if (queued_frames() > 0 && !writing_) do_write();
}

template <class Stream>
void WsStreamSession<Stream>::do_read() {
  if (closing_ == Closing::closed) return;
  if (!closing() && !hub_->intake_open) return;
  if (busy_ && !busy_->pending_input.empty()) {
    std::string held = std::move(busy_->pending_input);
    busy_->pending_input.clear();
    if (!consume({reinterpret_cast<std::uint8_t*>(held.data()), held.size()})) return;
  }
  start_socket_read();
}

template <class Stream>
void WsStreamSession<Stream>::start_socket_read() {
  if (read_pending_ || closing_ == Closing::closed) return;
  read_pending_ = true;
  if constexpr (detail::kIsTls<Stream>) {
    if (!tls_input_) tls_input_.reset(new std::uint8_t[detail::kTlsReadSize]);
    stream_.async_read_some(boost::asio::buffer(tls_input_.get(), detail::kTlsReadSize),
                            beast::bind_front_handler(&WsStreamSession::on_tls_read, this->shared_from_this()));
  } else {
    // No buffer is held while the client is silent: the socket is waited on,
    // then read into the hub's buffer.
    // The wait holds a block of its own size while the client is silent
    // (detail::ExactAllocator).
    // A lambda holding the session alone: 16 bytes of handler, where
    // bind_front_handler's member pointer makes 32.
    stream_.async_wait(Socket::wait_read,
                       boost::asio::bind_allocator(detail::ExactAllocator<void>(),
                                                   [self = this->shared_from_this()](beast::error_code ec) {
                                                     self->on_readable(ec);
                                                   }));
  }
}

template <class Stream>
void WsStreamSession<Stream>::on_readable(beast::error_code ec) {
  read_pending_ = false;
  if (ec) return fail(ec, "read");
  if (closing_ == Closing::closed) return;
  std::uint8_t* buffer = hub_->read_buffer.get();
  for (int reads = 0; reads < detail::kReadsPerWakeup; ++reads) {
    const std::size_t bytes = stream_.read_some(boost::asio::buffer(buffer, Hub::kReadBufferSize), ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) break;
    if (ec) return fail(ec, "read");
    last_heard_ = Clock::now();
    ping_sent_ = false;
    if (!consume({buffer, bytes})) return;
    if (bytes < Hub::kReadBufferSize) break;  // drained: the next wait sees new bytes
  }
  start_socket_read();
}

template <class Stream>
void WsStreamSession<Stream>::on_tls_read(beast::error_code ec, std::size_t bytes) {
  read_pending_ = false;
  if (ec) return fail(ec, "read");
  if (closing_ == Closing::closed) return;
  last_heard_ = Clock::now();
  ping_sent_ = false;
  if (!consume({tls_input_.get(), bytes})) return;
  start_socket_read();
}

template <class Stream>
bool WsStreamSession<Stream>::consume(std::span<std::uint8_t> input) {
  // Only the sweep lets the busy part go: it outlives this call.
  Busy& b = busy();
  if (closing()) {
    // The client's close frame is read for, the rest thrown away: a client
    // that keeps sending instead (one closed for flooding) would have its
    // flood read until the close deadline, a core's worth.
    b.read_while_closing += input.size();
    if (b.read_while_closing > detail::kReadWhileClosing + static_cast<std::size_t>(hub_->config.max_message_bytes)) {
      close_socket();
      return false;
    }
  }
  while (true) {
    if (closing_ == Closing::closed) return false;
    const auto event = b.reader.next(input);
    Next next = Next::read;
    switch (event) {
      case FrameReader::Event::need_more: return true;
      case FrameReader::Event::message:
        if (closing()) break;  // after a close frame, data is ignored (RFC 6455 section 5.5.1)
        next = on_message(b.reader.message(), b.reader.is_text());
        break;
      case FrameReader::Event::ping:
        if (closing()) break;
        next = on_ping(b.reader.payload());
        break;
      case FrameReader::Event::pong: break;
      case FrameReader::Event::close:
        b.close_received = true;
        if (closing_ == Closing::close_sent) {
          close_socket();
          return false;
        }
        if (closing_ == Closing::open || closing_ == Closing::after_queue) {
          // Echo the client's code (RFC 6455 section 5.5.1).
          const auto code = b.reader.close_code();
          begin_close(code == 1005 ? CloseCode::normal : static_cast<CloseCode>(code), "",
                      std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
        }
        return false;
      case FrameReader::Event::failure:
        hub_->protocol_errors.add();
        hub_->logger.debug("closing a connection from '", address_, "': ", b.reader.failure_reason());
        begin_close(b.reader.failure_code(), b.reader.failure_reason(), detail::kDropGrace);
        return false;
    }
    // Closing, the rest is still read for the client's close frame (data is ignored).
    if (next == Next::stop && !closing()) return false;
    if (next == Next::pause) {
      b.pending_input.assign(reinterpret_cast<const char*>(input.data()), input.size());
      return false;
    }
  }
}

template <class Stream>
typename WsStreamSession<Stream>::Next WsStreamSession<Stream>::on_ping(std::string_view payload) {
  // A ping costs a pong: pings are frames like any other for the rate limit.
  switch (rate_check()) {
    case RateVerdict::allowed: break;
    case RateVerdict::refused: return Next::read;  // not answered
    case RateVerdict::refused_to_close:
      close_after_queue(CloseCode::policy_error, "rate limit exceeded");
      return Next::stop;
  }
  auto pong = std::make_shared<const std::string>(encode_frame(Opcode::pong, payload));
  // RFC 6455 section 5.5.3: a pong may answer only the most recent ping, so
  // a client that pings and never reads holds one pong, not one per ping.
  Busy& b = busy();
  if (b.pong_queued && b.queue.replace(b.pong_sequence, b.frames_in_flight, pong)) return Next::read;
  b.pong_sequence = b.queue.push_back(std::move(pong));
  b.pong_queued = true;
  write_at_turn_end();
  return Next::read;
}

template <class Stream>
void WsStreamSession<Stream>::apply_limits() {
  WsSession::apply_limits();
  if (!busy_) return;  // one made later reads the limits then
  busy_->reader.set_max_message_bytes(static_cast<std::size_t>(hub_->config.max_message_bytes));
  busy_->bucket.reconfigure(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
                            TokenBucket::Clock::now());
}

template <class Stream>
typename WsStreamSession<Stream>::Next WsStreamSession<Stream>::on_message(std::string_view data, bool text) {
  if (sio_) return on_socketio_message(data, text);
  hub_->frames_in.add();
  switch (rate_check()) {
    case RateVerdict::allowed: break;
    case RateVerdict::refused:
      // Refused unread: parsing is work the limit is there to spare.
      send_text(error_frame("", "rate_limited", "too many frames; slow down"));
      return Next::read;
    case RateVerdict::refused_to_close:
      send_text(error_frame("", "rate_limited", "too many frames; slow down"));
      close_after_queue(CloseCode::policy_error, "rate limit exceeded");
      return Next::stop;
  }
  if (!text) {
    hub_->frames_refused.add();
    send_text(error_frame("", "bad_request", "binary frames are not supported; send JSON text frames"));
    return Next::read;
  }
  ProtocolError error;
  auto frame = parse_client_frame(data, error);
  if (!frame) {
    hub_->frames_refused.add();
    send_text(error_frame(error.ref, error.code, error.message));
    return Next::read;
  }
  return handle(std::move(*frame));
}

template <class Stream>
typename WsStreamSession<Stream>::Next WsStreamSession<Stream>::handle(ClientFrame frame) {
  switch (frame.type) {
    case ClientFrame::Type::hello:
      // An authenticated connection is named by its token, never by its frames.
      if (identity_ && frame.name != identity_->name) {
        hub_->frames_refused.add();
        send_text(error_frame(frame.ref, "forbidden",
                              "this connection is authenticated as '" + identity_->name +
                                  "'; its name comes from the token"));
        return Next::read;
      }
      name_ = std::move(frame.name);
      named_ = true;
      return Next::read;
    case ClientFrame::Type::join:
      switch (join_room(frame.room, frame.after)) {
        case Hub::JoinRefusal::none: break;
        case Hub::JoinRefusal::too_many_rooms_here:
          send_text(error_frame(frame.ref, "too_many_rooms",
                                "this connection is in " + std::to_string(rooms_.size()) +
                                    " rooms already (max_rooms_per_connection); leave one first"));
          break;
        case Hub::JoinRefusal::too_many_rooms_from_address:
          send_text(error_frame(frame.ref, "too_many_rooms",
                                "the clients of this address are in as many rooms as they may (max_rooms_per_address)"));
          break;
        case Hub::JoinRefusal::too_many_rooms:
          send_text(error_frame(frame.ref, "too_many_rooms", "the server holds as many rooms as it may (max_rooms)"));
          break;
      }
      return Next::read;
    case ClientFrame::Type::leave:
      leave_room(frame.room);
      return Next::read;
    case ClientFrame::Type::send: break;
  }
  if (!rooms_.contains(frame.room)) {
    hub_->frames_refused.add();
    send_text(error_frame(frame.ref, "not_joined", not_joined_message(frame.room)));
    return Next::read;
  }
  if (!hub_->ingress || !hub_->intake_open) {
    send_text(error_frame(frame.ref, "unavailable", "the server is shutting down; send again after reconnecting"));
    return Next::stop;
  }
  const std::string ref = frame.ref;
  const auto submitted = submit(std::move(frame.room), std::move(frame.text), frame.ref,
                                [ref](WsSession& session, const SendOutcome& outcome) {
                                  auto& self = static_cast<WsStreamSession&>(session);
                                  // Without a ref there is nothing to correlate an ack with (docs/protocol.md).
                                  if (outcome.status.ok()) {
                                    if (!ref.empty()) self.send_text(ack_frame(ref, outcome.id));
                                  } else {
                                    self.send_text(error_frame(ref, outcome.error_code(), outcome.status.message()));
                                  }
                                });
  return submitted == Submitted::published ? Next::pause : Next::read;
}

template <class Stream>
typename WsStreamSession<Stream>::Next WsStreamSession<Stream>::on_socketio_message(std::string_view data, bool text) {
  if (!text) {
    sio_->on_binary();
    return Next::read;
  }
  if (probing_) {
    // The upgrade from long-polling (Engine.IO v4): "2probe" is answered
    // "3probe", and "5" moves the session onto this connection.
    if (data == "2probe") {
      send_text("3probe");
      sio_->on_probe();
      return Next::read;
    }
    if (data == "5") {
      probing_ = false;
      sio_->attach_websocket(this->shared_from_this());
      return Next::read;
    }
    hub_->protocol_errors.add();
    close_after_queue(CloseCode::protocol_error, "expected the upgrade probe");
    return Next::stop;
  }
  sio_->on_packet(data);
  if (closing()) return Next::stop;
  if (!sio_->waiting_for_pipeline()) return Next::read;
  // The session waits for the pipeline: it resumes this connection's reading.
  sio_->pause_transport(this->shared_from_this());
  return Next::pause;
}

template <class Stream>
void WsStreamSession<Stream>::deliver_live(Outbound& message) {
  if (const auto& frame = message.native_frame()) send(frame);
}

template <class Stream>
void WsStreamSession<Stream>::send_history(Outbound& message) {
  if (const auto& frame = message.native_frame()) send(frame);
}

template <class Stream>
void WsStreamSession<Stream>::history_done(const std::string& room, std::size_t count, const Status& status) {
  if (!status.ok()) {
    hub_->history_failures.add();
    send_text(error_frame("", "history_unavailable",
                          "the history of room '" + room + "' could not be read: " + std::string(status.message())));
  }
  send_text(joined_frame(room, count));
}

template <class Stream>
void WsStreamSession<Stream>::close(CloseCode code, std::string_view reason) {
  close_after_queue(code, reason);
}

template <class Stream>
void WsStreamSession<Stream>::send_text(std::string_view json) {
  send(std::make_shared<const std::string>(encode_frame(Opcode::text, json)));
}

template <class Stream>
void WsStreamSession<Stream>::send(std::shared_ptr<const std::string> frame) {
  if (closing()) return;
  const auto& cfg = hub_->config;
  auto& queue = busy().queue;
  if (queue.size() >= static_cast<std::size_t>(cfg.max_send_queue) ||
      queue.bytes() + frame->size() > static_cast<std::size_t>(cfg.max_send_queue_bytes))
    return drop_slow("its send queue is full");
  queue.push_back(std::move(frame));
  write_at_turn_end();
}

template <class Stream>
void WsStreamSession<Stream>::enqueue(std::shared_ptr<const std::string> frame) {
  busy().queue.push_back(std::move(frame));
  write_at_turn_end();
}

template <class Stream>
void WsStreamSession<Stream>::write_queued() {
  if (upgraded_ && !writing_ && queued_frames() > 0 && closing_ != Closing::closed) do_write();
}

template <class Stream>
void WsStreamSession<Stream>::drop_slow(const char* why) {
  hub_->slow_clients_dropped.add();
  hub_->logger.debug("dropping a client from '", address_, "': ", why, " (", queued_frames(), " frames, ",
                     queued_bytes(), " bytes queued)");
  // A client this far behind is rarely reading: if the frames in flight
  // and the close frame are not through within the grace, the socket is
  // closed outright (else a stuck close would hold it for handshake_timeout_ms).
  begin_close(CloseCode::policy_error, "send queue full: client too slow", detail::kDropGrace);
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
    boost::asio::async_write(stream_, rest,
                             beast::bind_front_handler(&WsStreamSession::on_write, this->shared_from_this()));
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
  if (closing_ == Closing::closed) return;
  if (after_write()) return do_write();
  writing_ = false;
}

template <class Stream>
bool WsStreamSession<Stream>::after_write() {
  Busy& b = busy();
  for (std::size_t i = std::exchange(b.frames_in_flight, 0); i > 0; --i) b.queue.pop_front();
  if (b.pong_queued && !b.queue.holds(b.pong_sequence)) b.pong_queued = false;
  if (closing_ == Closing::open) {
    // Written: history waiting for room in the queue may go on (this
    // session's, or the Socket.IO session's this connection carries); it
    // checks how much room there is itself.
    if (sio_) sio_->on_queue_drained();
    else on_queue_drained();
  }
  if (!b.queue.empty()) return true;
  switch (closing_) {
    case Closing::open: return false;
    case Closing::after_queue:
      // The queue ran dry behind close_after_queue: the close frame is next.
      queue_close(b.pending_close_code, b.pending_close_reason, b.close_deadline);
      return !b.queue.empty();
    case Closing::close_queued:
      // Nothing is queued behind a close frame: it is out.
      closing_ = Closing::close_sent;
      if (b.close_received) close_socket();
      return false;
    case Closing::close_sent:
    case Closing::closed: return false;
  }
  return false;
}

template <class Stream>
void WsStreamSession<Stream>::shutdown() {
  close_after_queue(CloseCode::going_away, "server shutting down");
}

template <class Stream>
void WsStreamSession<Stream>::close_after_queue(CloseCode code, std::string_view reason) {
  if (closing()) return;
  closing_ = Closing::after_queue;
  leave_rooms();  // no more deliveries: the client is on its way out
  const auto deadline = Clock::now() + std::chrono::milliseconds(hub_->config.handshake_timeout_ms);
  if (!writing_ && queued_frames() == 0) return queue_close(code, reason, deadline);
  Busy& b = busy();
  b.pending_close_code = code;
  b.pending_close_reason = std::string(reason);
  b.close_deadline = deadline;
}

template <class Stream>
void WsStreamSession<Stream>::begin_close(CloseCode code, std::string_view reason, Clock::duration grace) {
  if (closing_ != Closing::open && closing_ != Closing::after_queue) return;
  closing_ = Closing::after_queue;
  leave_rooms();
  // The frames being written must outlive their write; the rest go.
  Busy& b = busy();
  b.queue.keep_front(b.frames_in_flight);
  b.pong_queued = false;
  queue_close(code, reason, Clock::now() + grace);
}

template <class Stream>
void WsStreamSession<Stream>::queue_close(CloseCode code, std::string_view reason, Clock::time_point deadline) {
  if (closing_ != Closing::open && closing_ != Closing::after_queue) return;
  closing_ = Closing::close_queued;
  Busy& b = busy();
  b.close_deadline = deadline;
  b.queue.push_back(std::make_shared<const std::string>(encode_close_frame(code, reason)));
  b.pending_close_reason.clear();
  // At once, with whatever is queued before it: a close is rare, and its
  // deadline counts from now.
  if (upgraded_ && !writing_) do_write();
  // The client's close frame is read as long as the socket is open.
  if (upgraded_ && !read_pending_ && b.pending_input.empty()) start_socket_read();
}

template <class Stream>
typename WsStreamSession<Stream>::Busy& WsStreamSession<Stream>::busy() {
  if (!busy_) busy_ = std::make_unique<Busy>(hub_->config, Clock::now());
  return *busy_;
}

template <class Stream>
void WsStreamSession<Stream>::release_if_at_rest(Clock::time_point now) {
  if (!busy_ || closing_ != Closing::open || writing_) return;
  const Busy& b = *busy_;
  if (!b.queue.empty() || !b.pending_input.empty() || !b.reader.at_rest() || !b.bucket.full(now)) return;
  frames_released_ += b.queue.popped();
  busy_.reset();
}

template <class Stream>
void WsStreamSession<Stream>::check_timeouts(Clock::time_point now) {
  check_deadlines(now);
  release_if_at_rest(now);
}

template <class Stream>
void WsStreamSession<Stream>::check_deadlines(Clock::time_point now) {
  if (closing_ == Closing::closed) return;
  if (closing()) {
    // The client did not take the close in time: whatever it left unread goes with a reset.
    if (now >= busy().close_deadline) close_socket(SocketEnd::reset_if_unsent);
    return;
  }
  if (writing_ && now - busy().last_written >= std::chrono::milliseconds(hub_->config.write_timeout_ms))
    return drop_slow("its queued frames made no progress for write_timeout_ms");
  if (sio_ && !probing_) return;  // the Socket.IO session's heartbeat and token watch it
  if (token_expired()) return close_after_queue(CloseCode::policy_error, "token expired");
  if (waiting_for_pipeline_) {
    // Reading is paused for the pipeline: the silence is ours.
    last_heard_ = now;
    return;
  }
  const auto idle = std::chrono::milliseconds(hub_->config.idle_timeout_ms);
  const auto silent = now - last_heard_;
  if (silent >= idle) {
    hub_->idle_closed.add();
    hub_->logger.debug("cutting the connection from '", address_, "': silent for ", hub_->config.idle_timeout_ms,
                       " ms");
    return close_socket(SocketEnd::reset_if_unsent);
  }
  if (silent >= idle / 2 && !ping_sent_ && upgraded_) {
    ping_sent_ = true;
    enqueue(hub_->ping_frame);
  }
}

template <class Stream>
void WsStreamSession<Stream>::close_socket(SocketEnd end) {
  if (closing_ == Closing::closed) return;
  closing_ = Closing::closed;
  leave_rooms();
  hub_->remove(this);
  beast::error_code ignored;
  auto& socket = detail::tcp_socket(stream_);
  if (end == SocketEnd::reset_if_unsent && detail::unsent_bytes(socket) > 0) {
    hub_->connections_reset.add();
    socket.set_option(boost::asio::socket_base::linger(true, 0), ignored);  // close() sends a reset
  } else {
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }
  socket.close(ignored);
  slot_.release();
  if (sio_) sio_->websocket_closed(this);
}

template <class Stream>
void WsStreamSession<Stream>::fail(beast::error_code ec, const char* what) {
  const bool expected = closing_ == Closing::closed || ec == boost::asio::error::operation_aborted ||
                        ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset ||
                        ec == boost::asio::error::broken_pipe || ec == ssl::error::stream_truncated;
  close_socket();
  if (!expected) hub_->logger.debug("connection from '", address_, "' closed on ", what, ": ", ec.message());
}

// -------------------------------------------------------------- HttpSession

template <class Stream>
HttpSession<Stream>::HttpSession(std::shared_ptr<Hub> hub, Stream&& stream, SocketSlot slot,
                                 beast::flat_buffer buffer)
    : hub_(std::move(hub)),
      stream_(std::move(stream)),
      slot_(std::move(slot)),
      from_proxy_(slot_.peer().empty()),
      address_(remote_address(stream_)),
      peer_(slot_.peer()),
      buffer_(std::move(buffer)) {}

template <class Stream>
void HttpSession<Stream>::identify_client() {
  if (!from_proxy_) return;  // the socket's address, as set at the start
  // A proxy's keep-alive connection carries requests of many clients: each
  // request says whose it is. One that names nobody counts under the
  // proxy's own address: a proxy that sends no X-Forwarded-For makes every
  // client one (the limits bite, visibly) rather than none (no limits at all).
  beast::error_code ec;
  const auto proxy = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec).address();
  address_ = ec ? std::string() : proxy.to_string();
  peer_ = ec ? std::string() : peer_key(proxy);
  forwarded_ = false;
  const auto& req = parser_->get();
  std::vector<std::string_view> lines;
  for (auto [line, end] = req.equal_range("X-Forwarded-For"); line != end; ++line)
    lines.push_back(detail::view(line->value()));
  if (lines.empty()) return;
  if (const auto client = hub_->proxies.client_of(lines)) {
    address_ = client->to_string();
    peer_ = peer_key(*client);
    forwarded_ = true;
  }
}

template <class Stream>
void HttpSession<Stream>::run() {
  if constexpr (detail::kIsTls<Stream>) {
    // The TLS handshake counts against the same deadline as the request.
    beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
    stream_.async_handshake(ssl::stream_base::server, buffer_.data(),
                            beast::bind_front_handler(&HttpSession::on_handshake, this->shared_from_this()));
  } else {
    boost::asio::dispatch(stream_.get_executor(),
                          beast::bind_front_handler(&HttpSession::do_read, this->shared_from_this()));
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
  parser_.emplace();
  sio_request_ = false;
  parser_->header_limit(detail::kMaxHeaderBytes);
  // A long-polling POST carries up to maxPayload (max_message_bytes) of packets.
  const auto body_limit = static_cast<std::size_t>(hub_->config.max_message_bytes);
  parser_->body_limit(body_limit);
  // What a request may make the connection hold: its header and body, and
  // the start of the next one pipelined behind it.
  buffer_.max_size(detail::kMaxHeaderBytes + body_limit + 4096);
  // The whole request must arrive in time: a client trickling bytes holds nothing for long.
  beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::on_read, this->shared_from_this()));
}

template <class Stream>
bool HttpSession<Stream>::origin_allowed() const {
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

template <class Stream>
void HttpSession<Stream>::note_refused_origin() {
  hub_->connections_refused.add();
  hub_->note_refused_origin(std::string(parser_->get()[http::field::origin]), address_);
}

template <class Stream>
void HttpSession<Stream>::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == boost::asio::error::eof) return close();
  if (ec == beast::error::timeout || ec == boost::asio::error::operation_aborted ||
      ec == ssl::error::stream_truncated || ec == boost::asio::error::connection_reset)
    return;
  const auto& req = parser_->get();
  const std::string_view target = detail::view(req.target());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool socketio = hub_->config.socketio && (path == hub_->config.socketio_path ||
                                                  std::string(path) + "/" == hub_->config.socketio_path);
  if (ec == http::error::body_limit && socketio) {
    // A long-polling POST over maxPayload: the session ends (Engine.IO v4).
    hub_->socketio_refused.add();
    const auto sid = detail::query_parameter(target, "sid");
    if (auto it = hub_->sio_sessions.find(std::string(sid)); it != hub_->sio_sessions.end())
      it->second->close(CloseCode::too_big, "payload too large");
    return respond_socketio_error(http::status::payload_too_large, 3, "Payload too large");
  }
  if (ec == http::error::header_limit) return respond_text(http::status::request_header_fields_too_large, "request header too large\n");
  if (ec == http::error::body_limit) return respond_text(http::status::payload_too_large, "request body too large\n");
  if (ec) return respond_text(http::status::bad_request, "bad request: " + ec.message() + "\n");
  identify_client();
  // Every request is work, and a keep-alive connection carries any number:
  // they are counted per address, over all its connections.
  if (!peer_.empty() && !hub_->peers.allow_request(peer_, PeerTable::Clock::now())) {
    hub_->requests_rate_limited.add();
    hub_->logger.debug("refused an HTTP request from '", address_, "': http_request_rate_per_address spent");
    return respond_text(http::status::too_many_requests, "too many requests from this address; slow down\n");
  }
  if (socketio) return serve_socketio();
  if (beast::websocket::is_upgrade(req)) {
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
    res.set(http::field::server, detail::kServer);
    res.set(http::field::content_type, content_type_for(*file));
    res.content_length(size);
    res.keep_alive(req.keep_alive());
    return respond(std::move(res));
  }
  http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(body)),
                                      std::make_tuple(http::status::ok, req.version())};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, content_type_for(*file));
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  // The chat page is not to be framed by another site (clickjacking).
  res.set("Content-Security-Policy", "frame-ancestors 'self'");
  res.set("X-Frame-Options", "SAMEORIGIN");
  res.content_length(size);
  res.keep_alive(req.keep_alive());
  // A file as big as the client likes to read slowly: the write must end
  // within write_timeout_ms like any other.
  beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(hub_->config.write_timeout_ms));
  respond(std::move(res));
}

template <class Stream>
bool HttpSession<Stream>::admit(std::optional<JwtIdentity>& identity) {
  if (!hub_->intake_open) {
    hub_->connections_refused.add();
    respond_text(http::status::service_unavailable, "shutting down\n");
    return false;
  }
  if (!origin_allowed()) {
    note_refused_origin();
    respond_text(http::status::forbidden, "origin not allowed\n");
    return false;
  }
  // The token is checked before the limits: a client without one learns nothing about the load.
  if (hub_->verifier) {
    const auto& req = parser_->get();
    const std::string token =
        token_from_request(detail::view(req[http::field::authorization]), detail::view(req.target()));
    // A Socket.IO client may bring its token in CONNECT's auth data instead.
    const bool later = token.empty() && sio_request_;
    if (!later) {
      auto result = hub_->verifier->verify(token, now_ms());
      if (!result) {
        hub_->note_auth_refused(result.error(), address_);
        // RFC 6750 section 3: no error code when the request carried no token.
        const std::string challenge =
            result.error() == JwtError::missing
                ? std::string("Bearer realm=\"nudge\"")
                : "Bearer realm=\"nudge\", error=\"invalid_token\", error_description=\"" +
                      std::string(to_string(result.error())) + "\"";
        respond_text(http::status::unauthorized, "unauthorized: " + std::string(to_string(result.error())) + "\n",
                     challenge);
        return false;
      }
      identity = std::move(result.identity());
    }
  }
  return true;
}

template <class Stream>
void HttpSession<Stream>::upgrade() {
  std::optional<JwtIdentity> identity;
  if (!admit(identity)) return;
  accept_websocket(std::move(identity), nullptr, false);
}

template <class Stream>
void HttpSession<Stream>::accept_websocket(std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio,
                                           bool probe) {
  const auto& req = parser_->get();
  if (req[http::field::sec_websocket_version] != "13") {
    if (probe) sio->probe_ended();
    http::response<http::string_body> res{http::status::upgrade_required, req.version()};
    res.set(http::field::server, detail::kServer);
    res.set(http::field::sec_websocket_version, "13");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "this server speaks WebSocket version 13\n";
    res.prepare_payload();
    return respond(std::move(res));
  }
  const std::string_view key = detail::view(req[http::field::sec_websocket_key]);
  if (!valid_websocket_key(key)) {
    if (probe) sio->probe_ended();
    return respond_text(http::status::bad_request, "missing or malformed Sec-WebSocket-Key\n");
  }
  if (!probe) {
    // The client counted: a native WebSocket, or a Socket.IO session that
    // starts on this connection (the probe of a session counted already is not).
    std::string why;
    const bool opened = sio ? hub_->open_socketio_session(peer_, sio->counted(), why)
                            : hub_->open_client(peer_, forwarded_, WsSession::Counted::client, why);
    if (!opened) {
      hub_->connections_refused.add();
      hub_->logger.debug("refused a WebSocket from '", address_, "': ", why);
      return respond_text(http::status::service_unavailable, why + "\n");
    }
  }
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
      websocket_accept_key(key) + "\r\nServer: " + detail::kServer + "\r\n\r\n";
  // A client may send its first frames right behind the request.
  std::string early(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  auto session = std::make_shared<WsStreamSession<Stream>>(hub_, std::move(stream_), std::move(slot_), address_, peer_,
                                                           sio ? std::nullopt : std::move(identity), sio, probe);
  if (sio && !probe) {
    // A WebSocket-only Socket.IO client: its session starts on this connection.
    sio->attach_websocket(session);
    sio->start();
  }
  session->run(std::move(response), std::move(early));
}

template <class Stream>
void HttpSession<Stream>::serve_socketio() {
  sio_request_ = true;
  const auto& req = parser_->get();
  const std::string_view target = detail::view(req.target());
  if (!origin_allowed()) {
    hub_->socketio_refused.add();
    note_refused_origin();
    return respond_socketio_error(http::status::forbidden, 4, "Forbidden");
  }
  if (req.method() == http::verb::options) {
    // The CORS preflight of a cross-origin POST (Content-Type: text/plain is
    // simple, but clients that set extraHeaders preflight every request).
    http::response<http::empty_body> res{http::status::no_content, req.version()};
    res.set(http::field::server, detail::kServer);
    add_cors(res);
    res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
    const auto asked = req[http::field::access_control_request_headers];
    res.set(http::field::access_control_allow_headers, asked.empty() ? "content-type" : asked);
    res.set(http::field::access_control_max_age, "86400");
    res.keep_alive(req.keep_alive());
    return respond(std::move(res));
  }
  if (detail::query_parameter(target, "EIO") != "4")
    return respond_socketio_error(http::status::bad_request, 5, "Unsupported protocol version");
  const auto transport = detail::query_parameter(target, "transport");
  if (transport != "polling" && transport != "websocket")
    return respond_socketio_error(http::status::bad_request, 0, "Transport unknown");
  const std::string sid(detail::query_parameter(target, "sid"));
  std::shared_ptr<SioSession> session;
  if (!sid.empty()) {
    const auto it = hub_->sio_sessions.find(sid);
    if (it == hub_->sio_sessions.end()) return respond_socketio_error(http::status::bad_request, 1, "Session ID unknown");
    session = it->second;
  }
  if (beast::websocket::is_upgrade(req)) {
    if (transport != "websocket") return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    if (session) {
      // One upgrade per session, from polling: a second probe, or one for a
      // session on a WebSocket already, is refused.
      if (!session->begin_probe()) {
        hub_->socketio_refused.add();
        return respond_socketio_error(http::status::bad_request, 3, "Bad request");
      }
      return accept_websocket(std::nullopt, std::move(session), true);
    }
    std::optional<JwtIdentity> identity;
    if (!admit(identity)) return;
    auto created = std::make_shared<SioSession>(hub_, address_, peer_, identity, false);
    return accept_websocket(std::move(identity), std::move(created), false);
  }
  if (transport != "polling") return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  if (req.method() == http::verb::get) {
    if (!session) {
      std::optional<JwtIdentity> identity;
      if (!admit(identity)) return;
      auto created = std::make_shared<SioSession>(hub_, address_, peer_, std::move(identity), true);
      std::string why;
      if (!hub_->open_socketio_session(peer_, created->counted(), why)) {
        hub_->connections_refused.add();
        return respond_socketio_error(http::status::service_unavailable, 3, why);
      }
      return answer_socketio(created->start());
    }
    if (!session->polling()) return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    // A long poll: answered when the session has something to send (a ping
    // at the latest), so it must not time out meanwhile.
    beast::get_lowest_layer(stream_).expires_never();
    const bool parked = session->poll([self = this->shared_from_this()](std::string body) {
      self->answer_socketio(std::move(body));
    });
    if (!parked) {
      // Two polls at once break the protocol: the session ends.
      hub_->socketio_refused.add();
      session->close(CloseCode::protocol_error, "overlapping polls");
      return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    }
    return;
  }
  if (req.method() == http::verb::post) {
    if (!session) return respond_socketio_error(http::status::bad_request, 1, "Session ID unknown");
    if (!session->polling()) return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    // Answered once every packet is taken: while the pipeline is full that
    // waits, and the client sends nothing more meanwhile (backpressure).
    beast::get_lowest_layer(stream_).expires_never();
    const bool taken = session->on_post(std::move(parser_->get().body()), [self = this->shared_from_this()] {
      self->answer_socketio("ok", "text/html");
    });
    if (!taken) {
      // Two POSTs at once break the protocol as two polls do.
      hub_->socketio_refused.add();
      session->close(CloseCode::protocol_error, "overlapping POST requests");
      return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    }
    return;
  }
  respond_socketio_error(http::status::bad_request, 2, "Bad handshake method");
}

template <class Stream>
void HttpSession<Stream>::answer_socketio(std::string body, std::string_view content_type) {
  const auto& req = parser_->get();
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  add_cors(res);
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  // Whatever waited (a long poll, a POST held for the pipeline), the answer
  // must get through in time.
  beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(hub_->config.write_timeout_ms));
  respond(std::move(res));
}

template <class Stream>
template <class Response>
void HttpSession<Stream>::add_cors(Response& res) const {
  const auto& req = parser_->get();
  const auto origin = req.find(http::field::origin);
  if (origin == req.end()) return;
  // Only reached for allowed origins (origin_allowed checked first).
  res.set(http::field::access_control_allow_origin, origin->value());
  res.set(http::field::access_control_allow_credentials, "true");
  res.set(http::field::vary, "Origin");
}

template <class Stream>
void HttpSession<Stream>::respond_socketio_error(http::status status, int code, std::string_view message) {
  http::response<http::string_body> res{status, parser_ ? parser_->get().version() : 11};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, "application/json");
  if (parser_ && status != http::status::forbidden) add_cors(res);
  res.keep_alive(false);
  res.body() = "{\"code\":" + std::to_string(code) + ",\"message\":" + json_string(message) + "}";
  res.prepare_payload();
  respond(std::move(res));
}

template <class Stream>
template <class Response>
void HttpSession<Stream>::respond(Response&& response) {
  auto res = std::make_shared<std::decay_t<Response>>(std::forward<Response>(response));
  const bool keep_alive = res->keep_alive();
  http::async_write(stream_, *res,
                    [self = this->shared_from_this(), res, keep_alive](beast::error_code ec, std::size_t) {
                      if (ec || !keep_alive) return self->close();
                      self->do_read();
                    });
}

template <class Stream>
void HttpSession<Stream>::respond_text(http::status status, std::string body, std::string www_authenticate) {
  http::response<http::string_body> res{status, parser_ ? parser_->get().version() : 11};
  res.set(http::field::server, detail::kServer);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (!www_authenticate.empty()) res.set(http::field::www_authenticate, www_authenticate);
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  respond(std::move(res));
}

template <class Stream>
void HttpSession<Stream>::close() {
  if constexpr (detail::kIsTls<Stream>) {
    // close_notify, bounded: a peer that never answers it is not waited for.
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
      beast::get_lowest_layer(self->stream_).close();
    });
  } else {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
}

}  // namespace nudge::plugins::websocket
