// The definitions of the session templates, included by the translation units
// that instantiate them: sessions_plain.cpp and sessions_tls.cpp. Beast's
// templates make each instantiation take minutes to compile; one per file
// lets a parallel build do them at once.
#pragma once

#include "sessions.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/detect_ssl.hpp>

#include "socketio_session.hpp"
#include "static_files.hpp"

namespace nudge::plugins::websocket {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ws = beast::websocket;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

namespace {
constexpr const char* kServer = "nudge";
/// How long a dropped client's write in flight may take before its socket is
/// closed outright (a client too slow for its queue rarely reads a close frame).
constexpr std::chrono::seconds kDropGrace{1};
/// Longest wait armed for a token's expiry; later expiries are not watched.
constexpr std::int64_t kMaxExpiryWatchMs = std::int64_t{366} * 24 * 3600 * 1000;

/// Reads of the shared buffer one readable connection gets before others
/// have their turn.
constexpr int kReadsPerWakeup = 4;
/// What one TLS read decrypts into (TLS connections hold it while open).
constexpr std::size_t kTlsReadSize = 4096;
/// Queued frames written by one system call at most.
constexpr std::size_t kFramesPerWrite = 16;

template <class Stream>
constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

/// The TCP socket under a WebSocket stream, whatever layers are between.
template <class WebSocket>
boost::asio::ip::tcp::socket& tcp_socket(WebSocket& ws) {
  auto& lowest = beast::get_lowest_layer(ws);
  if constexpr (requires { lowest.socket(); }) return lowest.socket();
  else return lowest;
}

/// The peer's IP address, or "" once the socket is closed.
template <class Stream>
std::string remote_address(Stream& stream) {
  beast::error_code ec;
  const auto remote = beast::get_lowest_layer(stream).socket().remote_endpoint(ec);
  return ec ? std::string() : remote.address().to_string();
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


}  // namespace

// ---------------------------------------------------------- WsStreamSession

template <class Stream>
WsStreamSession<Stream>::WsStreamSession(std::shared_ptr<Hub> hub, Stream&& stream, std::string address,
                                         std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio,
                                         bool probe)
    : WsSession(std::move(hub), std::move(address)),
      stream_(WsLayer<Stream>::from(std::move(stream))),
      reader_(static_cast<std::size_t>(hub_->config.max_message_bytes)),
      sio_(std::move(sio)),
      probing_(probe),
      identity_(std::move(identity)),
      bucket_(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
              TokenBucket::Clock::now()) {
  if (identity_) name_ = identity_->name;
  serial_ = ++hub_->next_connection_serial;
  counted_ = !sio_;  // the Socket.IO session is the connection counted
}

template <class Stream>
WsStreamSession<Stream>::~WsStreamSession() {
  hub_->remove(this);
}

template <class Stream>
void WsStreamSession<Stream>::run(std::string response, std::string early) {
  hub_->sessions.insert(this);
  if (counted_) {
    ++hub_->connections_by_address[address_];
    ++hub_->connections;
    hub_->connections_open.add(1);
    hub_->connections_accepted.add();
  }
  last_heard_ = Clock::now();
  pending_input_ = std::move(early);
  beast::error_code ec;
  if constexpr (kIsTls<Stream>) {
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
  arm_token_expiry();
  do_read();
  if (!queue_.empty() && !writing_) do_write();
}

template <class Stream>
void WsStreamSession<Stream>::arm_token_expiry() {
  if (!identity_ || !hub_->config.auth_close_on_expiry) return;
  const std::int64_t remaining = identity_->expires_at_ms + hub_->config.auth_leeway_ms - now_ms();
  if (remaining > kMaxExpiryWatchMs) return;
  expiry_timer_ = std::make_unique<boost::asio::steady_timer>(stream_.get_executor());
  expiry_timer_->expires_after(std::chrono::milliseconds(std::max<std::int64_t>(remaining, 0)));
  expiry_timer_->async_wait([weak = this->weak_from_this()](beast::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closing_) return;
    self->hub_->auth_expired.add();
    self->hub_->logger.debug("closing the connection of '", self->name_, "' from '", self->address_,
                             "': its token expired");
    self->close_after_queue(CloseCode::policy_error, "token expired");
  });
}

template <class Stream>
void WsStreamSession<Stream>::do_read() {
  if (closed_) return;
  if (!closing_ && !hub_->intake_open) return;
  if (!pending_input_.empty()) {
    std::string held = std::move(pending_input_);
    pending_input_.clear();
    if (!consume({reinterpret_cast<std::uint8_t*>(held.data()), held.size()})) return;
  }
  start_socket_read();
}

template <class Stream>
void WsStreamSession<Stream>::start_socket_read() {
  if (read_pending_ || closed_) return;
  read_pending_ = true;
  if constexpr (kIsTls<Stream>) {
    if (!tls_input_) tls_input_.reset(new std::uint8_t[kTlsReadSize]);
    stream_.async_read_some(boost::asio::buffer(tls_input_.get(), kTlsReadSize),
                            beast::bind_front_handler(&WsStreamSession::on_tls_read, this->shared_from_this()));
  } else {
    // No buffer is held while the client is silent: the socket is waited on,
    // then read into the hub's buffer.
    stream_.async_wait(Socket::wait_read,
                       beast::bind_front_handler(&WsStreamSession::on_readable, this->shared_from_this()));
  }
}

template <class Stream>
void WsStreamSession<Stream>::on_readable(beast::error_code ec) {
  read_pending_ = false;
  if (ec) return fail(ec, "read");
  if (closed_) return;
  std::uint8_t* buffer = hub_->read_buffer.get();
  for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
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
  if (closed_) return;
  last_heard_ = Clock::now();
  ping_sent_ = false;
  if (!consume({tls_input_.get(), bytes})) return;
  start_socket_read();
}

template <class Stream>
bool WsStreamSession<Stream>::consume(std::span<std::uint8_t> input) {
  while (true) {
    if (closed_) return false;
    const auto event = reader_.next(input);
    Next next = Next::read;
    switch (event) {
      case FrameReader::Event::need_more: return true;
      case FrameReader::Event::message:
        if (closing_) break;  // after a close frame, data is ignored (RFC 6455 section 5.5.1)
        next = on_message(reader_.message(), reader_.is_text());
        break;
      case FrameReader::Event::ping:
        if (!closing_) enqueue(std::make_shared<const std::string>(encode_frame(Opcode::pong, reader_.payload())));
        break;
      case FrameReader::Event::pong: break;
      case FrameReader::Event::close:
        close_received_ = true;
        if (close_written_) {
          close_socket();
          return false;
        }
        if (!close_queued_) {
          // Echo the client's code (RFC 6455 section 5.5.1).
          const auto code = reader_.close_code();
          begin_close(code == 1005 ? CloseCode::normal : static_cast<CloseCode>(code), "",
                      std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
        }
        return false;
      case FrameReader::Event::failure:
        hub_->protocol_errors.add();
        hub_->logger.debug("closing a connection from '", address_, "': ", reader_.failure_reason());
        begin_close(reader_.failure_code(), reader_.failure_reason(), kDropGrace);
        return false;
    }
    // Closing, the rest is still read for the client's close frame (data is ignored).
    if (next == Next::stop && !closing_) return false;
    if (next == Next::pause) {
      pending_input_.assign(reinterpret_cast<const char*>(input.data()), input.size());
      return false;
    }
  }
}

template <class Stream>
void WsStreamSession<Stream>::apply_limits() {
  reader_.set_max_message_bytes(static_cast<std::size_t>(hub_->config.max_message_bytes));
  bucket_.reconfigure(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
                      TokenBucket::Clock::now());
}

template <class Stream>
typename WsStreamSession<Stream>::Next WsStreamSession<Stream>::on_message(std::string_view data, bool text) {
  if (sio_) return on_socketio_message(data, text);
  hub_->frames_in.add();
  if (!bucket_.allow(TokenBucket::Clock::now())) {
    // Refused unread: parsing is work the limit is there to spare.
    hub_->frames_rate_limited.add();
    send_text(error_frame("", "rate_limited", "too many frames; slow down"));
    if (++rate_strikes_ >= hub_->config.rate_limit_strikes) {
      hub_->logger.debug("closing a connection from '", address_, "' after ", rate_strikes_,
                         " frames refused for the rate limit");
      close_after_queue(CloseCode::policy_error, "rate limit exceeded");
      return Next::stop;
    }
    return Next::read;
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
      join_room(frame.room, frame.after);
      return Next::read;
    case ClientFrame::Type::leave:
      leave_room(frame.room);
      return Next::read;
    case ClientFrame::Type::send: break;
  }
  if (!rooms_.contains(frame.room)) {
    hub_->frames_refused.add();
    send_text(error_frame(frame.ref, "not_joined", "join room '" + frame.room + "' before sending to it"));
    return Next::read;
  }
  if (!hub_->ingress || !hub_->intake_open) {
    send_text(error_frame(frame.ref, "unavailable", "the server is shutting down; send again after reconnecting"));
    return Next::stop;
  }
  if (frame.ref.empty() || hub_->config.resend_window_ms == 0)
    return publish(std::move(frame), MessageId::generate(), std::nullopt);
  std::string scope = resend_scope();
  std::weak_ptr<WsStreamSession> weak = this->weak_from_this();
  auto claim = hub_->resends.claim(
      scope, frame.ref, ResendCache::content_of(frame.room, frame.text), MessageId::generate(),
      ResendCache::Clock::now(), [weak, ref = frame.ref](const Status& status, const MessageId& id) {
        auto self = weak.lock();
        if (!self) return;
        if (status.ok()) self->send_text(ack_frame(ref, id));
        else self->send_text(error_frame(ref, error_code_for(status.code()), status.message()));
      });
  switch (claim.outcome) {
    case ResendCache::Outcome::publish: return publish(std::move(frame), claim.id, std::move(scope));
    case ResendCache::Outcome::already_acked:
      hub_->resends_recognised.add();
      send_text(ack_frame(frame.ref, claim.id));
      return Next::read;
    case ResendCache::Outcome::waiting:
      hub_->resends_recognised.add();  // answered when the first attempt is
      return Next::read;
    case ResendCache::Outcome::conflict:
      hub_->ref_conflicts.add();
      hub_->frames_refused.add();
      send_text(error_frame(frame.ref, "ref_conflict",
                            "ref '" + frame.ref + "' was already used for a different message; use a new ref"));
      return Next::read;
  }
  return Next::read;
}

template <class Stream>
std::string WsStreamSession<Stream>::resend_scope() const {
  // Prefixes keep a name from ever matching a token subject or a connection.
  if (identity_) return "t:" + identity_->name;
  if (named_) return "n:" + name_;
  return "c:" + std::to_string(serial_);
}

template <class Stream>
typename WsStreamSession<Stream>::Next WsStreamSession<Stream>::publish(ClientFrame frame, const MessageId& id,
                                                                        std::optional<std::string> resend_scope) {
  auto message = std::make_shared<Message>();
  message->id = id;
  message->room = std::move(frame.room);
  message->sender = name_;
  message->payload = std::move(frame.text);
  message->timestamp_ms = now_ms();
  message->origin = hub_->instance_id;
  std::weak_ptr<WsStreamSession> weak = this->weak_from_this();
  // The hub is held, not the session: the cache entry is settled (and other
  // connections waiting on it answered) even after this client is gone.
  hub_->ingress->publish(std::move(message), [weak, hub = hub_, scope = std::move(resend_scope),
                                              ref = std::move(frame.ref), id](Status status) {
    if (scope) hub->resends.settle(*scope, ref, status, ResendCache::Clock::now());
    auto self = weak.lock();
    if (!self) return;
    if (status.ok()) self->send_text(ack_frame(ref, id));
    else self->send_text(error_frame(ref, error_code_for(status.code()), status.message()));
  });
  // Backpressure: the next frame is read only when the pipeline has room.
  // The waiter owns the session: no read is pending to keep it alive meanwhile.
  hub_->ingress->when_ready([self = this->shared_from_this()] { self->do_read(); });
  return Next::pause;
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
  return closing_ ? Next::stop : Next::read;
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
  if (closing_) return;
  if (queue_.size() >= static_cast<std::size_t>(hub_->config.max_send_queue)) {
    hub_->slow_clients_dropped.add();
    hub_->logger.debug("dropping a client from '", address_, "' whose send queue is full (", queue_.size(),
                       " frames)");
    // A client this far behind is rarely reading: if the frames in flight
    // and the close frame are not through within the grace, the socket is
    // closed outright (else a stuck close would hold it for handshake_timeout_ms).
    return begin_close(CloseCode::policy_error, "send queue full: client too slow", kDropGrace);
  }
  enqueue(std::move(frame));
}

template <class Stream>
void WsStreamSession<Stream>::enqueue(std::shared_ptr<const std::string> frame) {
  queue_.push_back(std::move(frame));
  if (upgraded_ && !writing_) do_write();
}

template <class Stream>
void WsStreamSession<Stream>::do_write() {
  writing_ = true;
  while (true) {
    // Everything queued goes in one write, up to a bound: a client behind by
    // many frames costs one system call, not one each.
    std::array<boost::asio::const_buffer, kFramesPerWrite> buffers;
    frames_in_flight_ = queue_.gather(buffers);
    std::size_t written = 0;
    if constexpr (!kIsTls<Stream>) {
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
    beast::buffers_suffix<std::array<boost::asio::const_buffer, kFramesPerWrite>> rest(buffers);
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
    frames_in_flight_ = 0;
    return fail(ec, "write");
  }
  if (closed_) return;
  if (after_write()) return do_write();
  writing_ = false;
}

template <class Stream>
bool WsStreamSession<Stream>::after_write() {
  for (std::size_t i = std::exchange(frames_in_flight_, 0); i > 0; --i) queue_.pop_front();
  if (!queue_.empty()) return true;
  if (!closing_) return false;
  if (!close_queued_) {
    // The queue ran dry behind close_after_queue: the close frame is next.
    queue_close(pending_close_code_, pending_close_reason_, close_deadline_);
    return !queue_.empty();
  }
  // Nothing is queued behind a close frame: it is out.
  close_written_ = true;
  if (close_received_) close_socket();
  return false;
}

template <class Stream>
void WsStreamSession<Stream>::shutdown() {
  close_after_queue(CloseCode::going_away, "server shutting down");
}

template <class Stream>
void WsStreamSession<Stream>::close_after_queue(CloseCode code, std::string_view reason) {
  if (closing_ || closed_) return;
  closing_ = true;
  leave_rooms();  // no more deliveries: the client is on its way out
  const auto deadline = Clock::now() + std::chrono::milliseconds(hub_->config.handshake_timeout_ms);
  if (!writing_ && queue_.empty()) return queue_close(code, reason, deadline);
  pending_close_code_ = code;
  pending_close_reason_ = std::string(reason);
  close_deadline_ = deadline;
}

template <class Stream>
void WsStreamSession<Stream>::begin_close(CloseCode code, std::string_view reason, Clock::duration grace) {
  if (closed_ || close_queued_) return;
  closing_ = true;
  leave_rooms();
  // The frames being written must outlive their write; the rest go.
  queue_.keep_front(frames_in_flight_);
  queue_close(code, reason, Clock::now() + grace);
}

template <class Stream>
void WsStreamSession<Stream>::queue_close(CloseCode code, std::string_view reason, Clock::time_point deadline) {
  if (close_queued_ || closed_) return;
  close_queued_ = true;
  close_deadline_ = deadline;
  queue_.push_back(std::make_shared<const std::string>(encode_close_frame(code, reason)));
  pending_close_reason_.clear();
  if (upgraded_ && !writing_) do_write();
  // The client's close frame is read as long as the socket is open.
  if (upgraded_ && !read_pending_ && pending_input_.empty()) start_socket_read();
}

template <class Stream>
void WsStreamSession<Stream>::check_timeouts(Clock::time_point now) {
  if (closed_) return;
  if (closing_) {
    if (now >= close_deadline_) close_socket();
    return;
  }
  if (sio_ && !probing_) return;  // the Socket.IO session's heartbeat watches it
  const auto idle = std::chrono::milliseconds(hub_->config.idle_timeout_ms);
  const auto silent = now - last_heard_;
  if (silent >= idle) {
    hub_->idle_closed.add();
    hub_->logger.debug("cutting the connection from '", address_, "': silent for ", hub_->config.idle_timeout_ms,
                       " ms");
    return close_socket();
  }
  if (silent >= idle / 2 && !ping_sent_ && upgraded_) {
    ping_sent_ = true;
    enqueue(hub_->ping_frame);
  }
}

template <class Stream>
void WsStreamSession<Stream>::leave_rooms() {
  for (const auto& room : rooms_) hub_->leave(this, room);
  rooms_.clear();
}

template <class Stream>
void WsStreamSession<Stream>::close_socket() {
  if (closed_) return;
  closed_ = true;
  hub_->remove(this);
  if (expiry_timer_) expiry_timer_->cancel();
  beast::error_code ignored;
  auto& socket = tcp_socket(stream_);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
  if (sio_) sio_->websocket_closed(this);
}

template <class Stream>
void WsStreamSession<Stream>::fail(beast::error_code ec, const char* what) {
  const bool expected = closed_ || ec == boost::asio::error::operation_aborted || ec == boost::asio::error::eof ||
                        ec == boost::asio::error::connection_reset || ec == boost::asio::error::broken_pipe ||
                        ec == ssl::error::stream_truncated;
  close_socket();
  if (!expected) hub_->logger.debug("connection from '", address_, "' closed on ", what, ": ", ec.message());
}

// -------------------------------------------------------------- HttpSession

template <class Stream>
HttpSession<Stream>::HttpSession(std::shared_ptr<Hub> hub, Stream&& stream, beast::flat_buffer buffer)
    : hub_(std::move(hub)), stream_(std::move(stream)), buffer_(std::move(buffer)) {}

template <class Stream>
void HttpSession<Stream>::run() {
  if constexpr (kIsTls<Stream>) {
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
  if (ec) return hub_->note_tls_failure(remote_address(stream_), ec.message(), false);
  buffer_.consume(used);
  do_read();
}

template <class Stream>
void HttpSession<Stream>::do_read() {
  parser_.emplace();
  sio_request_ = false;
  parser_->header_limit(16 * 1024);
  // A long-polling POST carries up to maxPayload (max_message_bytes) of packets.
  parser_->body_limit(static_cast<std::uint64_t>(hub_->config.max_message_bytes));
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
void HttpSession<Stream>::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == boost::asio::error::eof) return close();
  if (ec == beast::error::timeout || ec == boost::asio::error::operation_aborted ||
      ec == ssl::error::stream_truncated || ec == boost::asio::error::connection_reset)
    return;
  const auto& req = parser_->get();
  const std::string_view target = view(req.target());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool socketio = hub_->config.socketio && (path == hub_->config.socketio_path ||
                                                  std::string(path) + "/" == hub_->config.socketio_path);
  if (ec == http::error::body_limit && socketio) {
    // A long-polling POST over maxPayload: the session ends (Engine.IO v4).
    hub_->socketio_refused.add();
    const auto sid = query_parameter(target, "sid");
    if (auto it = hub_->sio_sessions.find(std::string(sid)); it != hub_->sio_sessions.end())
      it->second->close(CloseCode::too_big, "payload too large");
    return respond_socketio_error(http::status::payload_too_large, 3, "Payload too large");
  }
  if (ec) return respond_text(http::status::bad_request, "bad request: " + ec.message() + "\n");
  if (socketio) return serve_socketio();
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

template <class Stream>
bool HttpSession<Stream>::admit(std::optional<JwtIdentity>& identity, const std::string& address) {
  if (!hub_->intake_open) {
    hub_->connections_refused.add();
    respond_text(http::status::service_unavailable, "shutting down\n");
    return false;
  }
  if (!origin_allowed()) {
    hub_->connections_refused.add();
    hub_->logger.warn("refused a connection from origin '", std::string(parser_->get()[http::field::origin]),
                      "' (not in allowed_origins)");
    respond_text(http::status::forbidden, "origin not allowed\n");
    return false;
  }
  // The token is checked before the limits: a client without one learns nothing about the load.
  if (hub_->verifier) {
    const auto& req = parser_->get();
    const std::string token = token_from_request(view(req[http::field::authorization]), view(req.target()));
    // A Socket.IO client may bring its token in CONNECT's auth data instead.
    const bool later = token.empty() && identity.has_value() == false && sio_request_;
    if (!later) {
      auto result = hub_->verifier->verify(token, now_ms());
      if (!result) {
        hub_->note_auth_refused(result.error(), address);
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
  if (hub_->connections >= static_cast<std::size_t>(hub_->config.max_connections)) {
    hub_->connections_refused.add();
    respond_text(http::status::service_unavailable, "too many connections\n");
    return false;
  }
  const auto per_address = hub_->config.max_connections_per_address;
  if (per_address > 0) {
    const auto it = hub_->connections_by_address.find(address);
    if (it != hub_->connections_by_address.end() && it->second >= static_cast<std::size_t>(per_address)) {
      hub_->connections_refused.add();
      hub_->logger.debug("refused a connection from '", address, "': ", it->second, " connections already open");
      respond_text(http::status::service_unavailable, "too many connections from this address\n");
      return false;
    }
  }
  return true;
}

template <class Stream>
void HttpSession<Stream>::upgrade() {
  std::string address = remote_address(stream_);
  std::optional<JwtIdentity> identity;
  if (!admit(identity, address)) return;
  accept_websocket(std::move(identity), std::move(address), nullptr, false);
}

template <class Stream>
void HttpSession<Stream>::accept_websocket(std::optional<JwtIdentity> identity, std::string address,
                                           std::shared_ptr<SioSession> sio, bool probe) {
  const auto& req = parser_->get();
  if (req[http::field::sec_websocket_version] != "13") {
    http::response<http::string_body> res{http::status::upgrade_required, req.version()};
    res.set(http::field::server, kServer);
    res.set(http::field::sec_websocket_version, "13");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "this server speaks WebSocket version 13\n";
    res.prepare_payload();
    return respond(std::move(res));
  }
  const std::string_view key = view(req[http::field::sec_websocket_key]);
  if (!valid_websocket_key(key)) return respond_text(http::status::bad_request, "missing or malformed Sec-WebSocket-Key\n");
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
      websocket_accept_key(key) + "\r\nServer: " + kServer + "\r\n\r\n";
  // A client may send its first frames right behind the request.
  std::string early(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  auto session = std::make_shared<WsStreamSession<Stream>>(hub_, std::move(stream_), std::move(address),
                                                           std::move(identity), sio, probe);
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
  const std::string_view target = view(req.target());
  if (!origin_allowed()) {
    hub_->socketio_refused.add();
    hub_->logger.warn("refused a Socket.IO request from origin '", std::string(req[http::field::origin]),
                      "' (not in allowed_origins)");
    return respond_socketio_error(http::status::forbidden, 4, "Forbidden");
  }
  if (req.method() == http::verb::options) {
    // The CORS preflight of a cross-origin POST (Content-Type: text/plain is
    // simple, but clients that set extraHeaders preflight every request).
    http::response<http::empty_body> res{http::status::no_content, req.version()};
    res.set(http::field::server, kServer);
    add_cors(res);
    res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
    const auto asked = req[http::field::access_control_request_headers];
    res.set(http::field::access_control_allow_headers, asked.empty() ? "content-type" : asked);
    res.set(http::field::access_control_max_age, "86400");
    res.keep_alive(req.keep_alive());
    return respond(std::move(res));
  }
  if (query_parameter(target, "EIO") != "4")
    return respond_socketio_error(http::status::bad_request, 5, "Unsupported protocol version");
  const auto transport = query_parameter(target, "transport");
  if (transport != "polling" && transport != "websocket")
    return respond_socketio_error(http::status::bad_request, 0, "Transport unknown");
  const std::string sid(query_parameter(target, "sid"));
  std::shared_ptr<SioSession> session;
  if (!sid.empty()) {
    const auto it = hub_->sio_sessions.find(sid);
    if (it == hub_->sio_sessions.end()) return respond_socketio_error(http::status::bad_request, 1, "Session ID unknown");
    session = it->second;
  }
  if (ws::is_upgrade(req)) {
    if (transport != "websocket") return respond_socketio_error(http::status::bad_request, 3, "Bad request");
    if (session) {
      if (!session->polling()) return respond_socketio_error(http::status::bad_request, 3, "Bad request");
      return accept_websocket(std::nullopt, remote_address(stream_), std::move(session), true);
    }
    std::string address = remote_address(stream_);
    std::optional<JwtIdentity> identity;
    if (!admit(identity, address)) return;
    auto created = std::make_shared<SioSession>(hub_, address, identity, false);
    return accept_websocket(std::move(identity), std::move(address), std::move(created), false);
  }
  if (transport != "polling") return respond_socketio_error(http::status::bad_request, 3, "Bad request");
  if (req.method() == http::verb::get) {
    if (!session) {
      std::string address = remote_address(stream_);
      std::optional<JwtIdentity> identity;
      if (!admit(identity, address)) return;
      auto created = std::make_shared<SioSession>(hub_, std::move(address), std::move(identity), true);
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
    session->on_post(req.body());
    return answer_socketio("ok", "text/html");
  }
  respond_socketio_error(http::status::bad_request, 2, "Bad handshake method");
}

template <class Stream>
void HttpSession<Stream>::answer_socketio(std::string body, std::string_view content_type) {
  const auto& req = parser_->get();
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  add_cors(res);
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
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
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, "application/json");
  if (parser_ && status != http::status::forbidden) add_cors(res);
  res.keep_alive(false);
  res.body() = "{\"code\":" + std::to_string(code) + ",\"message\":\"" + std::string(message) + "\"}";
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
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (!www_authenticate.empty()) res.set(http::field::www_authenticate, www_authenticate);
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  respond(std::move(res));
}

template <class Stream>
void HttpSession<Stream>::close() {
  if constexpr (kIsTls<Stream>) {
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
