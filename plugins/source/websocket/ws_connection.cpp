#include "ws_connection.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include "socketio_session.hpp"

namespace nudge::plugins::websocket {

namespace {

/// How long a dropped client's write in flight may take before its socket is
/// closed outright (a client too slow for its queue rarely reads a close frame).
constexpr std::chrono::seconds kDropGrace{1};
/// What a closing connection may still send besides one message before the
/// socket is closed without waiting for its close frame.
constexpr std::size_t kReadWhileClosing = 64 * 1024;

/// Bytes the kernel holds for the socket that the peer has not acknowledged (SIOCOUTQ); 0 when unknown.
int unsent_bytes(LoopSocket& socket) {
  int unsent = 0;
  if (::ioctl(socket.native_handle(), SIOCOUTQ, &unsent) != 0) return 0;
  return unsent;
}

}  // namespace

WsConnection::WsConnection(std::shared_ptr<Hub> hub, SocketSlot slot, std::string address, std::string peer,
                           std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio, bool probe)
    : WsSession(std::move(hub), std::move(address), std::move(peer), std::move(identity)),
      slot_(std::move(slot)),
      sio_(sio ? std::make_unique<SioBridge>(*this, std::move(sio), probe) : nullptr) {
  if (sio_) counted_ = Counted::nothing;  // the Socket.IO session is the client counted
}

WsConnection::~WsConnection() { hub_->remove(this); }

void WsConnection::begin(std::string early) {
  hub_->sessions.insert(this);
  last_heard_ = Clock::now();
  if (!early.empty()) busy().pending_input = std::move(early);
}

void WsConnection::on_upgraded(boost::beast::error_code ec) {
  if (ec) return fail(ec, "handshake");
  upgraded_ = true;
  do_read();
  if (queued_frames() > 0 && !writing_) do_write();
}

void WsConnection::do_read() {
  if (state_ == ConnectionState::closed) return;
  if (!closing() && !hub_->intake_open) return;
  if (busy_ && !busy_->pending_input.empty()) {
    std::string held = std::move(busy_->pending_input);
    busy_->pending_input.clear();
    if (!consume({reinterpret_cast<std::uint8_t*>(held.data()), held.size()})) return;
  }
  start_socket_read();
}

void WsConnection::start_socket_read() {
  if (read_pending_ || state_ == ConnectionState::closed) return;
  read_pending_ = true;
  read_socket();
}

bool WsConnection::on_bytes(std::span<std::uint8_t> input) {
  last_heard_ = Clock::now();
  ping_sent_ = false;
  return consume(input);
}

bool WsConnection::consume(std::span<std::uint8_t> input) {
  // Only the sweep lets the busy part go: it outlives this call.
  Busy& b = busy();
  if (closing()) {
    // The client's close frame is read for, the rest thrown away: a client
    // that keeps sending instead (one closed for flooding) would have its
    // flood read until the close deadline, a core's worth.
    b.read_while_closing += input.size();
    if (b.read_while_closing > kReadWhileClosing + static_cast<std::size_t>(hub_->config.max_message_bytes)) {
      close_socket();
      return false;
    }
  }
  while (true) {
    if (state_ == ConnectionState::closed) return false;
    const auto event = b.reader.next(input);
    Next next = Next::read;
    switch (event) {
      case FrameReader::Event::need_more:
        return true;
      case FrameReader::Event::message:
        if (closing()) break;  // after a close frame, data is ignored (RFC 6455 section 5.5.1)
        next = on_message(b.reader.message(), b.reader.is_text());
        break;
      case FrameReader::Event::ping:
        if (closing()) break;
        next = on_ping(b.reader.payload());
        break;
      case FrameReader::Event::pong:
        break;
      case FrameReader::Event::close:
        b.close_received = true;
        if (state_ == ConnectionState::close_sent) {
          close_socket();
          return false;
        }
        if (may_queue_close(state_)) {
          // Echo the client's code (RFC 6455 section 5.5.1).
          const auto code = b.reader.close_code();
          begin_close(code == 1005 ? CloseCode::normal : static_cast<CloseCode>(code), "",
                      std::chrono::milliseconds(hub_->config.handshake_timeout_ms));
        }
        return false;
      case FrameReader::Event::failure:
        hub_->protocol_errors.add();
        hub_->logger.debug("closing a connection from '", address_, "': ", b.reader.failure_reason());
        begin_close(b.reader.failure_code(), b.reader.failure_reason(), kDropGrace);
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

WsConnection::Next WsConnection::on_ping(std::string_view payload) {
  // A ping costs a pong: pings are frames like any other for the rate limit.
  switch (rate_check()) {
    case RateVerdict::allowed:
      break;
    case RateVerdict::refused:
      return Next::read;  // not answered
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

void WsConnection::apply_limits() {
  WsSession::apply_limits();
  if (!busy_) return;  // one made later reads the limits then
  busy_->reader.set_max_message_bytes(static_cast<std::size_t>(hub_->config.max_message_bytes));
  busy_->bucket.reconfigure(hub_->config.rate_limit_per_second, static_cast<double>(hub_->config.rate_limit_burst),
                            TokenBucket::Clock::now());
}

WsConnection::Next WsConnection::on_message(std::string_view data, bool text) {
  if (sio_) return sio_->on_message(data, text);
  return chat_.on_message(data, text);
}

void WsConnection::close(CloseCode code, std::string_view reason) { close_after_queue(code, reason); }

void WsConnection::send_text(std::string_view text) {
  send(std::make_shared<const std::string>(encode_frame(Opcode::text, text)));
}

void WsConnection::send(std::shared_ptr<const std::string> frame) {
  if (closing()) return;
  const auto& cfg = hub_->config;
  auto& queue = busy().queue;
  if (queue.size() >= static_cast<std::size_t>(cfg.max_send_queue) ||
      queue.bytes() + frame->size() > static_cast<std::size_t>(cfg.max_send_queue_bytes))
    return drop_slow("its send queue is full");
  queue.push_back(std::move(frame));
  write_at_turn_end();
}

void WsConnection::enqueue(std::shared_ptr<const std::string> frame) {
  busy().queue.push_back(std::move(frame));
  write_at_turn_end();
}

void WsConnection::write_queued() {
  if (upgraded_ && !writing_ && queued_frames() > 0 && state_ != ConnectionState::closed) do_write();
}

void WsConnection::drop_slow(const char* why) {
  hub_->slow_clients_dropped.add();
  hub_->logger.debug("dropping a client from '", address_, "': ", why, " (", queued_frames(), " frames, ",
                     queued_bytes(), " bytes queued)");
  // A client this far behind is rarely reading: if the frames in flight
  // and the close frame are not through within the grace, the socket is
  // closed outright (else a stuck close would hold it for handshake_timeout_ms).
  begin_close(CloseCode::policy_error, "send queue full: client too slow", kDropGrace);
}

bool WsConnection::after_write() {
  Busy& b = busy();
  for (std::size_t i = std::exchange(b.frames_in_flight, 0); i > 0; --i) b.queue.pop_front();
  if (b.pong_queued && !b.queue.holds(b.pong_sequence)) b.pong_queued = false;
  if (state_ == ConnectionState::open) {
    // Written: history waiting for room in the queue may go on (this
    // session's, or the Socket.IO session's this connection carries); it
    // checks how much room there is itself.
    if (sio_) sio_->on_written();
    else on_queue_drained();
  }
  if (!b.queue.empty()) return true;
  switch (state_) {
    case ConnectionState::open:
      return false;
    case ConnectionState::closing_after_queue:
      // The queue ran dry behind close_after_queue: the close frame is next.
      queue_close(b.pending_close_code, b.pending_close_reason, b.close_deadline);
      return !b.queue.empty();
    case ConnectionState::close_queued:
      state_ = after_queue_drained(state_);
      if (b.close_received) close_socket();
      return false;
    case ConnectionState::close_sent:
    case ConnectionState::closed:
      return false;
  }
  return false;
}

void WsConnection::shutdown() { close_after_queue(CloseCode::going_away, "server shutting down"); }

void WsConnection::close_after_queue(CloseCode code, std::string_view reason) {
  if (closing()) return;
  state_ = ConnectionState::closing_after_queue;
  leave_rooms();  // no more deliveries: the client is on its way out
  const auto deadline = Clock::now() + std::chrono::milliseconds(hub_->config.handshake_timeout_ms);
  if (!writing_ && queued_frames() == 0) return queue_close(code, reason, deadline);
  Busy& b = busy();
  b.pending_close_code = code;
  b.pending_close_reason = std::string(reason);
  b.close_deadline = deadline;
}

void WsConnection::begin_close(CloseCode code, std::string_view reason, Clock::duration grace) {
  if (!may_queue_close(state_)) return;
  state_ = ConnectionState::closing_after_queue;
  leave_rooms();
  // The frames being written must outlive their write; the rest go.
  Busy& b = busy();
  b.queue.keep_front(b.frames_in_flight);
  b.pong_queued = false;
  queue_close(code, reason, Clock::now() + grace);
}

void WsConnection::queue_close(CloseCode code, std::string_view reason, Clock::time_point deadline) {
  if (!may_queue_close(state_)) return;
  state_ = ConnectionState::close_queued;
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

WsConnection::Busy& WsConnection::busy() {
  if (!busy_) busy_ = std::make_unique<Busy>(hub_->config, Clock::now());
  return *busy_;
}

void WsConnection::release_if_at_rest(Clock::time_point now) {
  if (!busy_ || state_ != ConnectionState::open || writing_) return;
  const Busy& b = *busy_;
  if (!b.queue.empty() || !b.pending_input.empty() || !b.reader.at_rest() || !b.bucket.full(now)) return;
  frames_released_ += b.queue.popped();
  busy_.reset();
}

void WsConnection::check_timeouts(Clock::time_point now) {
  check_deadlines(now);
  release_if_at_rest(now);
}

void WsConnection::check_deadlines(Clock::time_point now) {
  if (state_ == ConnectionState::closed) return;
  if (closing()) {
    // The client did not take the close in time: whatever it left unread goes with a reset.
    if (now >= busy().close_deadline) close_socket(SocketEnd::reset_if_unsent);
    return;
  }
  if (writing_ && now - busy().last_written >= std::chrono::milliseconds(hub_->config.write_timeout_ms))
    return drop_slow("its queued frames made no progress for write_timeout_ms");
  if (sio_ && sio_->carrying()) return;  // the Socket.IO session's heartbeat and token watch it
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

void WsConnection::close_socket(SocketEnd end) {
  if (state_ == ConnectionState::closed) return;
  state_ = ConnectionState::closed;
  leave_rooms();
  hub_->remove(this);
  boost::beast::error_code ignored;
  auto& socket = tcp_socket();
  if (end == SocketEnd::reset_if_unsent && unsent_bytes(socket) > 0) {
    hub_->connections_reset.add();
    socket.set_option(boost::asio::socket_base::linger(true, 0), ignored);  // close() sends a reset
  } else {
    socket.shutdown(LoopSocket::shutdown_both, ignored);
  }
  socket.close(ignored);
  slot_.release();
  if (sio_) sio_->on_closed();
}

void WsConnection::fail(boost::beast::error_code ec, const char* what) {
  const bool expected = state_ == ConnectionState::closed || ec == boost::asio::error::operation_aborted ||
                        ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset ||
                        ec == boost::asio::error::broken_pipe || ec == boost::asio::ssl::error::stream_truncated;
  close_socket();
  if (!expected) hub_->logger.debug("connection from '", address_, "' closed on ", what, ": ", ec.message());
}

}  // namespace nudge::plugins::websocket
