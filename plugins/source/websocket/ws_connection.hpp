#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <boost/beast/core/error.hpp>

#include "chat_protocol.hpp"
#include "frame_queue.hpp"
#include "hub.hpp"
#include "token_bucket.hpp"
#include "wire.hpp"
#include "ws_protocol.hpp"

namespace nudge::plugins::websocket {

class SioBridge;

/// How far a WebSocket connection is on its way out (RFC 6455 section 7).
/// It only moves forward: open, closing_after_queue, close_queued,
/// close_sent, closed (steps may be skipped, never taken back).
enum class ConnectionState : std::uint8_t {
  open,                 ///< not closing
  closing_after_queue,  ///< closing: the close frame follows the frames queued
  close_queued,         ///< our close frame is queued, the last frame
  close_sent,           ///< our close frame is out: waiting for the client's
  closed,               ///< the socket is closed
};

/// The states a close may still be queued from: the connection's close
/// frame is not queued yet.
constexpr bool may_queue_close(ConnectionState state) noexcept {
  switch (state) {
    case ConnectionState::open:
    case ConnectionState::closing_after_queue:
      return true;
    case ConnectionState::close_queued:
    case ConnectionState::close_sent:
    case ConnectionState::closed:
      return false;
  }
  return false;
}

/// The state after a write that emptied the queue, with `close_received`
/// (the client's close frame arrived): whether the socket is now to be
/// closed is the caller's (close_sent with close_received).
constexpr ConnectionState after_queue_drained(ConnectionState state) noexcept {
  switch (state) {
    case ConnectionState::close_queued:
      return ConnectionState::close_sent;  // nothing is queued behind a close frame
    case ConnectionState::open:
    case ConnectionState::closing_after_queue:
    case ConnectionState::close_sent:
    case ConnectionState::closed:
      return state;
  }
  return state;
}

/// How the socket ends.
enum class SocketEnd {
  /// A FIN after what is queued in the kernel: the client reads to the end.
  orderly,
  /// A reset when the kernel still holds bytes the client has not taken: a
  /// client that stopped reading would otherwise leave them (up to a send
  /// buffer, megabytes) in a FIN-WAIT-1 socket for minutes after the close.
  reset_if_unsent,
};

/// A client over one WebSocket connection: RFC 6455 (wire.hpp) — reading
/// frames, ping and pong, the send queue and its bounds, the close
/// handshake, the idle and write timeouts — whatever the stream. Each
/// complete message goes to the protocol above, chosen at the upgrade: the
/// native chat (ChatProtocol, chat_protocol.hpp) or the Socket.IO bridge
/// (SioBridge, socketio_session.hpp), which send through send_text, send
/// and close_after_queue.
///
/// Compiled once: what depends on the stream (plain TCP or TLS) is
/// WsStreamSession's, behind a virtual call per read and per write.
class WsConnection : public WsSession, public std::enable_shared_from_this<WsConnection> {
 public:
  ~WsConnection() override;

  // WsSession
  void send(std::shared_ptr<const std::string> frame) override;
  void shutdown() override;
  void close(CloseCode code, std::string_view reason) override;
  void check_timeouts(Clock::time_point now) override;
  void apply_limits() override;
  void resume_reading() override { do_read(); }
  void deliver_notice(Notice& notice) override {
    if (const auto& frame = notice.native_frame()) send(frame);
  }
  std::size_t queued_frames() const noexcept override { return busy_ ? busy_->queue.size() : 0; }
  std::size_t queued_bytes() const noexcept override { return busy_ ? busy_->queue.bytes() : 0; }
  std::uint64_t frames_queued_ever() const noexcept override {
    return frames_released_ + (busy_ ? busy_->queue.pushed() : 0);
  }
  std::uint64_t frames_written_ever() const noexcept override {
    return frames_released_ + (busy_ ? busy_->queue.popped() : 0);
  }

  /// Whether the connection holds its busy part (tests: an idle one does not).
  bool holds_busy_state() const noexcept { return busy_ != nullptr; }
  ConnectionState state() const noexcept { return state_; }
  /// Goes on reading: bytes held back first, then the socket.
  void do_read();

  // For the protocol above.
  /// Queues a text message (a frame of its own, not shared).
  void send_text(std::string_view text);
  /// Closes with `code` once the queued frames are written (within
  /// handshake_timeout_ms).
  void close_after_queue(CloseCode code, std::string_view reason);
  bool closing() const noexcept { return state_ != ConnectionState::open; }
  Hub& hub() const noexcept { return *hub_; }

 protected:
  /// `identity` is the verified token's holder when authentication is on:
  /// it names the connection, and `hello` cannot change it.
  /// With `sio`, the connection carries that Socket.IO session (Engine.IO
  /// packets in text frames) instead of the native protocol; `probe`: it is
  /// an upgrade from long-polling, which the client completes with a probe.
  /// `address` and `peer` are the client's (X-Forwarded-For's, through a
  /// trusted proxy), not necessarily the socket's.
  WsConnection(std::shared_ptr<Hub> hub, SocketSlot slot, std::string address, std::string peer,
               std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio, bool probe);

  /// What only a connection with something under way needs: a frame part
  /// read, frames queued or being written, input held back for the
  /// pipeline, the token bucket off its burst, a close in progress. Made on
  /// first use and let go by the sweep once the connection is at rest
  /// again (release_if_at_rest), so an idle connection holds none of it:
  /// about 300 bytes of each idle connection's budget (footprint_test.cpp).
  struct Busy {
    Busy(const WebSocketConfig& config, Clock::time_point now)
        : reader(static_cast<std::size_t>(config.max_message_bytes)),
          bucket(config.rate_limit_per_second, static_cast<double>(config.rate_limit_burst), now) {}
    FrameReader reader;
    FrameQueue queue;
    /// The connection's own rate limit (a full one is what a new one is).
    TokenBucket bucket;
    /// Bytes read but not yet run through the reader: reading paused for
    /// backpressure in the middle of what one read returned.
    std::string pending_input;
    std::size_t frames_in_flight = 0;
    // Two facts, not steps of one lifecycle: a pong comes and goes with
    // each ping whatever the close handshake's state, and the client's close
    // frame may arrive before or after ours is sent (ConnectionState).
    /// A pong is queued (as pong_sequence): a newer ping's replaces it.
    bool pong_queued = false;
    bool close_received = false;  ///< the client's close frame arrived
    std::uint64_t pong_sequence = 0;
    /// Bytes read since closing began, looking for the client's close frame.
    std::size_t read_while_closing = 0;
    /// When the queue last made progress (or became non-empty).
    Clock::time_point last_written;
    Clock::time_point close_deadline;
    /// Set by close_after_queue until the queue drains.
    std::string pending_close_reason;
    CloseCode pending_close_code = CloseCode::normal;
  };
  /// The busy part, made now if the connection holds none.
  Busy& busy();

  // What the stream provides (WsStreamSession).
  /// Starts one read of the socket; its completion calls on_bytes (or fail).
  virtual void read_socket() = 0;
  /// Writes the queue: at once while the socket takes it (plain TCP), else
  /// through an asynchronous write; after_write says when to go on.
  virtual void do_write() = 0;
  /// The TCP socket under the stream.
  virtual LoopSocket& tcp_socket() noexcept = 0;

  // For the stream.
  /// The connection is served from now (its 101 is on its way); `early`
  /// holds bytes the client sent after its request, if any.
  void begin(std::string early);
  /// The 101 response is written: the connection is open both ways.
  void on_upgraded(boost::beast::error_code ec);
  /// `input` was read from the socket: runs it through the protocol, and
  /// reads on unless that stops here. False when reading stops.
  bool on_bytes(std::span<std::uint8_t> input);
  /// A write of frames_in_flight frames is done: true when more is to be written.
  bool after_write();
  void fail(boost::beast::error_code ec, const char* what);
  /// Starts a read of the socket unless one is pending or the socket is closed.
  void start_socket_read();

 private:
  using Next = AfterMessage;

  // WsSession
  // Only the native chat joins rooms on a connection (a Socket.IO session
  // joins them itself).
  void deliver_live(Outbound& message) override { chat_.deliver(message); }
  void send_history(Outbound& message) override { chat_.deliver(message); }
  void history_done(const std::string& room, std::size_t count, const Status& status) override {
    chat_.history_done(room, count, status);
  }
  std::weak_ptr<WsSession> weak_self() override { return weak_from_this(); }
  void on_pipeline_ready() override { do_read(); }
  TokenBucket& connection_bucket() override { return busy().bucket; }
  void write_queued() override;

  /// Runs the frames in `input` through the protocol. False when reading
  /// stops here: the rest of `input` is kept in pending_input if paused.
  bool consume(std::span<std::uint8_t> input);
  /// A ping: answered with a pong, unless a pong not yet written takes its
  /// place; refused like a data frame past the rate limit.
  Next on_ping(std::string_view payload);
  /// A complete message: to the protocol above.
  Next on_message(std::string_view data, bool text);
  /// Queues a control frame (ping, pong): they bypass max_send_queue (each
  /// kind is queued once at most) but count in its bytes.
  void enqueue(std::shared_ptr<const std::string> frame);
  /// Drops a client whose queue is full or makes no progress (close 1008).
  void drop_slow(const char* why);
  /// Closes with `code` at once: what is queued and not yet being written
  /// is dropped. The socket is closed when the client answers, or `grace`
  /// later at the latest.
  void begin_close(CloseCode code, std::string_view reason, Clock::duration grace);
  /// Queues the close frame, the last frame this session writes.
  void queue_close(CloseCode code, std::string_view reason, Clock::time_point deadline);
  /// Closes the socket: the end of the session.
  void close_socket(SocketEnd end = SocketEnd::orderly);
  /// Lets the busy part go when nothing is under way (the sweep calls it).
  void release_if_at_rest(Clock::time_point now);
  /// The sweep's checks (check_timeouts), before the busy part may go.
  void check_deadlines(Clock::time_point now);

  SocketSlot slot_;
  /// Socket.IO connections only: the bridge to the session this connection
  /// carries, which takes its messages instead of chat_.
  std::unique_ptr<SioBridge> sio_;
  ChatProtocol chat_{*this};
  std::unique_ptr<Busy> busy_;
  /// Frames written by the queues of busy parts let go: the count of
  /// frames ever queued and written goes on from there.
  std::uint64_t frames_released_ = 0;
  Clock::time_point last_heard_;
  ConnectionState state_ = ConnectionState::open;
  // The flags below are independent facts, not steps of one lifecycle (the
  // probe of a Socket.IO upgrade is SioBridge's State; the close handshake
  // is state_): a close may be queued before the 101 is written, a read and
  // a write are in flight at once, and a keep-alive ping is owed whatever
  // else goes on.
  bool upgraded_ = false;   ///< the 101 response is written
  bool ping_sent_ = false;  ///< a keep-alive ping is out and nothing was heard since

 protected:
  // Last, beside the other flags: no padding between them.
  /// Only while the socket's read is pending.
  bool read_pending_ = false;
  /// do_write runs or its asynchronous write is pending.
  bool writing_ = false;
};

/// A WsConnection over `Stream` (PlainStream or TlsStream): only what
/// depends on the stream — reading, writing, the upgrade's response.
template <class Stream>
class WsStreamSession final : public WsConnection {
 public:
  WsStreamSession(std::shared_ptr<Hub> hub, Stream&& stream, SocketSlot slot, std::string address, std::string peer,
                  std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio = nullptr, bool probe = false);

  /// Writes `response` (the 101 that completes the upgrade), then serves the
  /// client; `early` holds bytes it sent after its request, if any.
  void run(std::string response, std::string early);

 private:
  using Socket = typename WsLayer<Stream>::type;

  // WsConnection
  void read_socket() override;
  void do_write() override;
  LoopSocket& tcp_socket() noexcept override;

  std::shared_ptr<WsStreamSession> self() { return std::static_pointer_cast<WsStreamSession>(shared_from_this()); }
  void on_readable(boost::beast::error_code ec);
  void on_tls_read(boost::beast::error_code ec, std::size_t bytes);
  void on_write(boost::beast::error_code ec, std::size_t bytes);

  Socket stream_;
  /// TLS only: what the TLS stream decrypts into (plain sockets read into
  /// the hub's shared buffer).
  std::unique_ptr<std::uint8_t[]> tls_input_;
};

}  // namespace nudge::plugins::websocket
