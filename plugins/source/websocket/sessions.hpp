#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "config.hpp"
#include "frame_queue.hpp"
#include "jwt.hpp"
#include "nudge/sdk.hpp"
#include "protocol.hpp"
#include "resend_cache.hpp"
#include "token_bucket.hpp"
#include "wire.hpp"

namespace nudge::plugins::websocket {

/// The two transports a session runs over. Sessions are templates over the
/// stream, so the plain path has no TLS branch and no indirection per read or
/// write.
using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

/// What a WebSocket runs over once upgraded from an HTTP stream. Plain
/// connections drop Beast's tcp_stream for the bare socket: its timer state
/// (about 0.5 KiB a connection) serves the HTTP phase only; the source's
/// sweep keeps the WebSocket timeouts.
template <class Stream>
struct WsLayer {
  using type = Stream;
  static Stream&& from(Stream&& stream) noexcept { return std::move(stream); }
};
template <>
struct WsLayer<PlainStream> {
  using type = boost::asio::ip::tcp::socket;
  static type from(PlainStream&& stream) { return stream.release_socket(); }
};

class WsSession;
class SioSession;

/// One delivered message in each form a client may need, each made once on
/// first use and shared by every recipient (serialise once, frame once).
class Outbound {
 public:
  explicit Outbound(MessagePtr message, bool history = false) : message_(std::move(message)), history_(history) {}
  const MessagePtr& message() const noexcept { return message_; }
  /// The native protocol's text frame, encoded for the wire; null when the
  /// payload is not valid UTF-8.
  const std::shared_ptr<const std::string>& native_frame();
  /// The Socket.IO `message` event as an Engine.IO packet (long-polling);
  /// null when the payload is not valid UTF-8.
  const std::shared_ptr<const std::string>& socketio_packet();
  /// The same packet as a WebSocket text frame.
  const std::shared_ptr<const std::string>& socketio_frame();
  /// A form was asked for and could not be made: the payload is not valid UTF-8.
  bool undeliverable() const noexcept {
    return (native_made_ && !native_frame_) || (socketio_made_ && !socketio_packet_);
  }

 private:
  MessagePtr message_;
  bool history_ = false;
  bool native_made_ = false;
  bool socketio_made_ = false;
  std::shared_ptr<const std::string> native_frame_;
  std::shared_ptr<const std::string> socketio_packet_;
  std::shared_ptr<const std::string> socketio_frame_;
};

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
  /// Set at start when authentication is on; null otherwise.
  std::unique_ptr<JwtVerifier> verifier;
  /// Set at start when TLS is on; null otherwise.
  std::unique_ptr<boost::asio::ssl::context> tls;

  std::unordered_set<WsSession*> sessions;
  /// Socket.IO sessions by Engine.IO sid: long-polling requests and the
  /// upgrade to WebSocket find theirs here. Each is also in `sessions`.
  std::unordered_map<std::string, std::shared_ptr<SioSession>> sio_sessions;
  std::unordered_map<std::string, std::unordered_set<WsSession*>> rooms;
  /// Clients connected (max_connections): native WebSockets and Socket.IO
  /// sessions, not the WebSocket carrying a Socket.IO session as well.
  std::size_t connections = 0;
  /// Open sessions per remote IP address (max_connections_per_address).
  std::unordered_map<std::string, std::size_t> connections_by_address;
  std::function<void()> on_last_session_closed;
  /// Outcomes of recent sends by ref, so resends make no second message.
  ResendCache resends;
  /// Numbers anonymous connections: their refs are theirs alone.
  std::uint64_t next_connection_serial = 0;

  Counter& connections_accepted;
  Counter& connections_refused;
  Gauge& connections_open;
  /// Rooms with at least one local client.
  Gauge& rooms_open;
  Counter& frames_in;
  Counter& frames_refused;
  Counter& frames_rate_limited;
  Counter& messages_delivered;
  Counter& slow_clients_dropped;
  Counter& auth_refused;
  Counter& auth_expired;
  Counter& tls_handshakes_failed;
  Counter& tls_plaintext_refused;
  Counter& resends_recognised;
  Counter& ref_conflicts;
  Counter& protocol_errors;
  Counter& idle_closed;
  Counter& socketio_sessions;
  Counter& socketio_upgrades;
  Counter& socketio_refused;
  Counter& history_sent;
  Counter& history_failures;

  /// Where plain connections read: one buffer for the whole event loop, as
  /// a read completes before the next starts. An idle connection holds none.
  static constexpr std::size_t kReadBufferSize = 64 * 1024;
  std::unique_ptr<std::uint8_t[]> read_buffer{new std::uint8_t[kReadBufferSize]};
  /// The keep-alive ping, the same bytes for everyone.
  std::shared_ptr<const std::string> ping_frame = std::make_shared<const std::string>(encode_frame(Opcode::ping, ""));

  void join(WsSession* session, const std::string& room);
  void leave(WsSession* session, const std::string& room);
  void remove(WsSession* session);
  /// Takes the live keys of `next` (a reload) and has every open session
  /// apply the new limits from now on.
  void reconfigure(const WebSocketConfig& next);

  /// Counts an upgrade refused for its token; logs it at debug, or at warn
  /// at most once per 10 s with the number held back.
  void note_auth_refused(JwtError error, const std::string& address);
  /// Counts a failed TLS handshake (`plaintext`: the client did not speak
  /// TLS at all); logged like note_auth_refused.
  void note_tls_failure(const std::string& address, std::string_view what, bool plaintext);

 private:
  LogLimiter auth_log_{std::chrono::seconds(10)};
  LogLimiter tls_log_{std::chrono::seconds(10)};
};

/// One client as the hub and the source see it, whatever its protocol
/// (native JSON frames or Socket.IO) and transport: a member of rooms that
/// messages are delivered to. Joining a room sends its history first, live
/// messages of the room held back meanwhile, so the client sees each message
/// once and in order.
class WsSession {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~WsSession() = default;
  WsSession(const WsSession&) = delete;
  WsSession& operator=(const WsSession&) = delete;

  /// Delivers a message of one of the client's rooms: held back while that
  /// room's history is being sent, else sent at once (deliver_live).
  void deliver(Outbound& message);
  /// Queues a WebSocket frame already encoded for the wire (encode_frame),
  /// shared by every recipient. A client whose queue is full is dropped (close 1008).
  virtual void send(std::shared_ptr<const std::string> frame) = 0;
  /// Closes with 1001 (going away) once queued frames are written.
  virtual void shutdown() = 0;
  /// Closes with `code` once queued frames are written.
  virtual void close(CloseCode code, std::string_view reason) = 0;
  /// Called by the source's sweep: pings a client silent for half the idle
  /// timeout, cuts one silent for all of it, and ends close handshakes that
  /// ran past their deadline.
  virtual void check_timeouts(Clock::time_point now) = 0;
  /// Applies the hub's limits after a reload (largest frame, rate limit);
  /// limits read from the hub on each use need nothing here.
  virtual void apply_limits() = 0;

  const std::set<std::string>& rooms() const noexcept { return rooms_; }
  /// The client's IP address, counted against max_connections_per_address.
  const std::string& address() const noexcept { return address_; }
  /// Counted as a connection (open gauge, per-address limit): false for the
  /// WebSocket carrying a Socket.IO session, which is counted instead.
  bool counted() const noexcept { return counted_; }

 protected:
  WsSession(std::shared_ptr<Hub> hub, std::string address) : hub_(std::move(hub)), address_(std::move(address)) {}

  /// Sends a live message to the client.
  virtual void deliver_live(Outbound& message) = 0;
  /// Sends one message of a room's history (oldest first).
  virtual void send_history(Outbound& message) = 0;
  /// A room's history is sent (`count` messages), or could not be read
  /// (`status`); live messages of the room flow from here on.
  virtual void history_done(const std::string& room, std::size_t count, const Status& status) = 0;
  virtual std::weak_ptr<WsSession> weak_self() = 0;

  /// Joins `room` and sends its last history_messages, or with `after` what
  /// came after that message (catching up after a reconnect). Already in
  /// the room: history_done(room, 0) at once.
  void join_room(const std::string& room, std::optional<MessageId> after);
  /// Leaves `room`; false when the client was not in it.
  bool leave_room(const std::string& room);

  std::shared_ptr<Hub> hub_;
  std::set<std::string> rooms_;
  std::string address_;
  bool counted_ = true;

 private:
  struct CatchUp {
    std::vector<MessagePtr> held;  ///< live messages of the room, delivered once the history is out
    std::set<MessageId> sent;      ///< ids sent from history: a held copy is not sent again
    bool after = false;            ///< catching up after an id (paged) rather than the last N
  };
  void read_history(const std::string& room, std::optional<MessageId> after);
  void on_history(const std::string& room, const Status& status, std::vector<MessagePtr> messages);
  void finish_catch_up(const std::string& room, const Status& status);

  /// Only while some room's history is being sent.
  std::unique_ptr<std::unordered_map<std::string, CatchUp>> catching_up_;
};

/// A WsSession over `Stream` (PlainStream or TlsStream): the WebSocket
/// protocol (wire.hpp) over the stream, and the chat protocol over that.
template <class Stream>
class WsStreamSession final : public WsSession, public std::enable_shared_from_this<WsStreamSession<Stream>> {
 public:
  /// `identity` is the verified token's holder when authentication is on:
  /// it names the connection, and `hello` cannot change it.
  /// With `sio`, the connection carries that Socket.IO session (Engine.IO
  /// packets in text frames) instead of the native protocol; `probe`: it is
  /// an upgrade from long-polling, which the client completes with a probe.
  WsStreamSession(std::shared_ptr<Hub> hub, Stream&& stream, std::string address,
                  std::optional<JwtIdentity> identity, std::shared_ptr<SioSession> sio = nullptr, bool probe = false);
  ~WsStreamSession() override;

  /// Writes `response` (the 101 that completes the upgrade), then serves the
  /// client; `early` holds bytes it sent after its request, if any.
  void run(std::string response, std::string early);

  // WsSession
  void send(std::shared_ptr<const std::string> frame) override;
  void shutdown() override;
  void close(CloseCode code, std::string_view reason) override;
  void check_timeouts(Clock::time_point now) override;
  void apply_limits() override;
  /// Goes on reading: bytes held back first, then the socket.
  void do_read();

 private:
  using Socket = typename WsLayer<Stream>::type;
  /// What a handled message lets the session do next.
  enum class Next {
    read,   ///< go on reading
    pause,  ///< wait: something will call do_read() (pipeline backpressure)
    stop,   ///< the connection is closing
  };

  // WsSession
  void deliver_live(Outbound& message) override;
  void send_history(Outbound& message) override;
  void history_done(const std::string& room, std::size_t count, const Status& status) override;
  std::weak_ptr<WsSession> weak_self() override { return this->weak_from_this(); }

  void on_upgraded(boost::beast::error_code ec);
  /// A text or binary message of a Socket.IO connection.
  Next on_socketio_message(std::string_view data, bool text);
  void start_socket_read();
  void on_readable(boost::beast::error_code ec);
  void on_tls_read(boost::beast::error_code ec, std::size_t bytes);
  /// Runs the frames in `input` through the protocol. False when reading
  /// stops here: the rest of `input` is kept in pending_input_ if paused.
  bool consume(std::span<std::uint8_t> input);
  Next on_message(std::string_view data, bool text);
  Next handle(ClientFrame frame);
  /// Publishes `frame` as message `id`; the outcome settles the resend cache
  /// entry (when `resend_scope` is set) and is answered with an ack or error.
  Next publish(ClientFrame frame, const MessageId& id, std::optional<std::string> resend_scope);
  /// Whose refs these are: the token's holder, the hello name, or (anonymous)
  /// this connection alone.
  std::string resend_scope() const;
  void send_text(std::string_view json);
  /// Queues a frame whatever the queue's length (control frames).
  void enqueue(std::shared_ptr<const std::string> frame);
  /// Writes the queue: at once while the socket takes it (plain TCP), else
  /// through an asynchronous write.
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  /// A write of frames_in_flight_ frames is done: true when more is to be written.
  bool after_write();
  /// Closes with `code` at once: what is queued and not yet being written
  /// is dropped. The socket is closed when the client answers, or `grace`
  /// later at the latest.
  void begin_close(CloseCode code, std::string_view reason, Clock::duration grace);
  /// Closes with `code` once the queued frames are written (within
  /// handshake_timeout_ms).
  void close_after_queue(CloseCode code, std::string_view reason);
  /// Queues the close frame, the last frame this session writes.
  void queue_close(CloseCode code, std::string_view reason, Clock::time_point deadline);
  /// Leaves every room: nothing more is delivered to this client.
  void leave_rooms();
  /// Closes the socket: the end of the session.
  void close_socket();
  void fail(boost::beast::error_code ec, const char* what);
  /// Closes the connection (1008) when its token expires.
  void arm_token_expiry();

  Socket stream_;
  FrameReader reader_;
  /// Socket.IO connections only: the session this connection carries.
  std::shared_ptr<SioSession> sio_;
  bool probing_ = false;  ///< an upgrade from long-polling, not yet completed
  /// Bytes read but not yet run through the reader: reading paused for
  /// backpressure in the middle of what one read returned.
  std::string pending_input_;
  /// TLS only: what the TLS stream decrypts into (plain sockets read into
  /// the hub's shared buffer).
  std::unique_ptr<std::uint8_t[]> tls_input_;
  /// Only while a token's expiry is watched.
  std::unique_ptr<boost::asio::steady_timer> expiry_timer_;
  FrameQueue queue_;
  std::size_t frames_in_flight_ = 0;
  bool writing_ = false;  ///< do_write runs or its asynchronous write is pending
  Clock::time_point last_heard_;
  Clock::time_point close_deadline_;
  /// Set by close_after_queue until the queue drains.
  std::string pending_close_reason_;
  CloseCode pending_close_code_ = CloseCode::normal;
  bool upgraded_ = false;  ///< the 101 response is written
  bool read_pending_ = false;
  bool ping_sent_ = false;
  bool closing_ = false;        ///< closing: nothing more is delivered or read as a message
  bool close_queued_ = false;   ///< our close frame is queued, the last frame
  bool close_written_ = false;  ///< our close frame is out
  bool close_received_ = false;  ///< the client's close frame arrived
  bool closed_ = false;          ///< the socket is closed
  bool named_ = false;           ///< a hello set name_
  std::string name_ = "anonymous";
  std::uint64_t serial_ = 0;
  std::optional<JwtIdentity> identity_;
  TokenBucket bucket_;
  std::int64_t rate_strikes_ = 0;
};

/// One HTTP connection over `Stream`: serves the static files and hands
/// WebSocket upgrade requests on the endpoint's path to a WsStreamSession,
/// after the origin, token and connection limits allow it.
template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  /// `buffer` holds bytes already read from the stream (TLS detection).
  HttpSession(std::shared_ptr<Hub> hub, Stream&& stream, boost::beast::flat_buffer buffer = {});
  void run();

 private:
  /// TLS only: the handshake done (`used`: bytes of `buffer_` it consumed).
  void on_handshake(boost::beast::error_code ec, std::size_t used);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void upgrade();
  /// A request at socketio_path: Engine.IO long-polling, or the upgrade to WebSocket.
  void serve_socketio();
  /// A 200 answer to a long-polling request: a GET gets what the session has
  /// queued (`body`), a POST gets "ok" as text/html (as the reference server).
  void answer_socketio(std::string body, std::string_view content_type = "text/plain; charset=UTF-8");
  /// The CORS headers for an allowed cross-origin request.
  template <class Response>
  void add_cors(Response& response) const;
  void respond_socketio_error(boost::beast::http::status status, int code, std::string_view message);
  /// Checks the token (authentication on) and the connection limits; answers
  /// the refusal itself and returns false when the client may not connect.
  bool admit(std::optional<JwtIdentity>& identity, const std::string& address);
  /// Writes the 101 and hands the stream to a WsStreamSession.
  void accept_websocket(std::optional<JwtIdentity> identity, std::string address,
                        std::shared_ptr<SioSession> sio, bool probe);
  template <class Response>
  void respond(Response&& response);
  void respond_text(boost::beast::http::status status, std::string body, std::string www_authenticate = {});
  bool origin_allowed() const;
  /// Ends the connection after the last response (TLS: close_notify first).
  void close();

  std::shared_ptr<Hub> hub_;
  Stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  /// The request being served is Socket.IO's (its token may come later, in CONNECT).
  bool sio_request_ = false;
};

/// First step of a connection to a TLS listener: tells a TLS ClientHello from
/// plaintext. TLS goes on to an HttpSession<TlsStream>; a plaintext client
/// gets a short HTTP 400 saying to use https:// or wss://, and is closed.
class TlsDetector : public std::enable_shared_from_this<TlsDetector> {
 public:
  TlsDetector(std::shared_ptr<Hub> hub, boost::asio::ip::tcp::socket&& socket);
  void run();

 private:
  void on_detect(boost::beast::error_code ec, bool is_tls);
  void drain();

  std::shared_ptr<Hub> hub_;
  PlainStream stream_;
  boost::beast::flat_buffer buffer_;
};

extern template class WsStreamSession<PlainStream>;
extern template class WsStreamSession<TlsStream>;
extern template class HttpSession<PlainStream>;
extern template class HttpSession<TlsStream>;

}  // namespace nudge::plugins::websocket
