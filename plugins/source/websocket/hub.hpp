#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "config.hpp"
#include "frame_queue.hpp"
#include "jwt.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"
#include "peer_limits.hpp"
#include "protocol.hpp"
#include "resend_cache.hpp"
#include "token_bucket.hpp"
#include "trusted_proxies.hpp"
#include "wire.hpp"

namespace nudge::plugins::websocket {

/// The two transports a session runs over. Sessions are templates over the
/// stream, so the plain path has no TLS branch and no indirection per read or
/// write.
///
/// On any_io_executor, not the io_context's own executor type, although that
/// would make an idle connection 48 bytes smaller (its socket) and its read
/// wait 104: an operation completing on an io_context executor calls into
/// Asio's per-thread scheduler state, and a plugin (hidden visibility) has
/// its own copy of it, never set by the runtime's io_context::run(): the
/// plugin crashed (reload_test).
using LoopSocket = boost::asio::ip::tcp::socket;
using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<PlainStream>;

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
  using type = LoopSocket;
  static type from(PlainStream&& stream) { return stream.release_socket(); }
};

class WsSession;
class SioSession;
struct Hub;

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

/// A frame for every local client of a room that is not a message (a
/// presence change), in each protocol's form, each made once on first use
/// and shared by every recipient.
class Notice {
 public:
  /// `native_json`: the native text frame's JSON (empty: none can be made);
  /// `event` and `args_json`: the Socket.IO event and its arguments array.
  Notice(std::string native_json, std::string_view event, std::string args_json)
      : native_json_(std::move(native_json)), event_(event), args_json_(std::move(args_json)) {}
  /// Null when nothing can be sent (a string was not valid UTF-8).
  const std::shared_ptr<const std::string>& native_frame();
  const std::shared_ptr<const std::string>& socketio_packet();
  const std::shared_ptr<const std::string>& socketio_frame();

 private:
  std::string native_json_;
  std::string_view event_;
  std::string args_json_;
  std::shared_ptr<const std::string> native_frame_;
  std::shared_ptr<const std::string> socketio_packet_;
  std::shared_ptr<const std::string> socketio_frame_;
};

/// What the hub counts a session as.
enum class Counted {
  client,           ///< against max_connections and max_connections_per_address
  unauthenticated,  ///< a Socket.IO session yet to show its token: against max_connections_per_address and
                    ///< a pool of its own as large as max_connections, so it takes no authenticated client's place
  nothing,          ///< the WebSocket carrying a Socket.IO session (the session is counted instead)
};

/// One accepted TCP connection counted against its peer's limits and the
/// source's total, from accept until its socket closes; moves with the
/// socket from the TLS detector to the HTTP session to the WebSocket.
class SocketSlot {
 public:
  SocketSlot() = default;
  SocketSlot(Hub& hub, std::string peer) : hub_(&hub), peer_(std::move(peer)) {}
  SocketSlot(SocketSlot&& other) noexcept : hub_(std::exchange(other.hub_, nullptr)), peer_(std::move(other.peer_)) {}
  SocketSlot& operator=(SocketSlot&& other) noexcept;
  SocketSlot(const SocketSlot&) = delete;
  SocketSlot& operator=(const SocketSlot&) = delete;
  ~SocketSlot() { release(); }

  /// Gives the connection's place back (its socket is closed); once.
  void release() noexcept;
  /// The key the connection is counted under (peer_key of its address).
  const std::string& peer() const noexcept { return peer_; }

 private:
  Hub* hub_ = nullptr;
  std::string peer_;
};

/// State shared by the source and its sessions. Sessions hold it by
/// shared_ptr, so a session finishing after the source stopped (its last
/// handler destroyed with the event loop) still finds it alive; `ingress` is
/// null from then on.
struct Hub {
  using Clock = std::chrono::steady_clock;

  Hub(const WebSocketConfig& cfg, Context& ctx);

  WebSocketConfig config;
  Logger& logger;
  /// The event loop: what must outlive the call that ends it is let go here.
  boost::asio::any_io_executor executor;
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
  /// Socket.IO sessions yet to authenticate (authentication on): a pool of
  /// their own (as large as max_connections), so clients without a token
  /// take no authenticated client's place.
  std::size_t unauthenticated = 0;
  /// The sessions counted in `unauthenticated`, by address, oldest first
  /// (entries of sessions since ended or authenticated are skipped, and
  /// dropped when a line grows past twice its count). When the pool is full,
  /// the address holding the most gives up its oldest (when none holds more
  /// than one, the oldest of all goes): squatters churning the pool from a
  /// hundred addresses then displace each other, not a client that holds
  /// one session and takes a round trip to CONNECT.
  std::unordered_map<std::string, std::deque<std::weak_ptr<WsSession>>> unauthenticated_lines;
  /// The same sessions in one line, oldest first: when no address holds more
  /// than one, the one waiting longest makes way.
  std::deque<std::weak_ptr<WsSession>> unauthenticated_line;
  /// Live sessions yet to authenticate per address, and the same ranked.
  std::unordered_map<std::string, std::size_t> unauthenticated_per_peer;
  std::set<std::pair<std::size_t, std::string>> unauthenticated_ranking;
  /// TCP connections open, whatever their state (max_sockets).
  std::size_t sockets_open = 0;
  /// Most TCP connections open at once: max_sockets, or what the process's
  /// open-file limit leaves (set at start).
  std::size_t max_sockets = 0;
  /// Per address: sockets, clients, connection and message rates.
  PeerTable peers;
  /// trusted_proxies, parsed.
  TrustedProxies proxies;
  std::function<void()> on_last_session_closed;
  /// Outcomes of recent sends by ref, so resends make no second message.
  ResendCache resends;
  /// Numbers anonymous connections: their refs are theirs alone.
  std::uint64_t next_connection_serial = 0;
  /// Random per hub: a connection's presence id (client_id) is its serial
  /// mixed with these, so it names neither this host nor how many
  /// connections came before, and differs from every other instance's.
  std::uint64_t client_keys[2] = {0, 0};
  /// The id presence gives the connection numbered `serial`: 16 hex digits,
  /// unique on this instance (the mix is a bijection).
  std::string client_id(std::uint64_t serial) const;
  /// Sends a presence change of `room` (Source::deliver_presence) to its
  /// local clients through their send queues, unless presence_events is off
  /// or the room has more than presence_events_max_room of them.
  void deliver_presence(std::string_view room, const PresenceEvent& event);

  // History of every client shares one budget: at most max_history_reads
  // reads in flight, and history_buffer_bytes of history reserved for
  // reads in flight or queued to clients and not yet written. Each client
  // holds at most WsSession::kHistoryBytesPerClient of it.
  std::size_t history_reads_in_flight = 0;

  // Presence reads of every client: at most max_presence_reads unanswered
  // (more are refused busy), each answered unavailable once its
  // presence_read_timeout_ms pass, so a hung fanout costs a client one
  // timeout, not its presence requests for good.
  struct PresenceRead {
    /// Answers the client (which holds it weakly).
    std::function<void(const Status& status, const PresenceList& list)> answer;
    Clock::time_point deadline;
  };
  /// By the number the read was given: the fanout's answer names it, so an
  /// answer after the timeout finds nothing and is dropped.
  std::map<std::uint64_t, PresenceRead> presence_reads_pending;
  std::uint64_t next_presence_read = 0;
  /// Answers read `number` from the fanout, unless it timed out already.
  void presence_read_done(std::uint64_t number, const Status& status, const PresenceList& list);
  /// Answers the reads past their deadline unavailable (the sweep's part).
  void expire_presence_reads(Clock::time_point now);
  LogLimiter presence_timeout_log_{std::chrono::seconds(10)};
  std::size_t history_bytes_held = 0;
  /// A client waiting for its turn to read a room's history; `ticket` names
  /// the join it is for, so an entry left by a join since undone is known.
  struct HistoryTurn {
    std::weak_ptr<WsSession> session;
    std::string room;
    std::uint64_t ticket = 0;
  };
  /// Clients waiting for their turn to read, first come first served.
  std::deque<HistoryTurn> history_waiting;
  std::uint64_t next_history_ticket = 0;
  /// start_history_reads is running (what it starts may call it again).
  bool starting_history_reads_ = false;
  /// Past this many waiting, entries nobody waits on any more are dropped.
  static constexpr std::size_t kHistoryWaitingCompactAt = 4096;

  Counter& connections_accepted;
  Counter& connections_refused;
  Counter& requests_rate_limited;
  Counter& sockets_refused;
  Gauge& connections_open;
  Gauge& sockets_gauge;
  Gauge& peers_tracked;
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
  Counter& connections_reset;
  Counter& socketio_sessions;
  Counter& socketio_upgrades;
  Counter& socketio_refused;
  Counter& unauthenticated_displaced;
  Counter& history_sent;
  Counter& history_failures;
  Counter& joins_refused;
  Counter& presence_events_sent;
  Counter& presence_reads;
  Counter& presence_reads_refused;
  Counter& presence_read_timeouts;
  Counter& ephemeral_sent;
  Gauge& history_bytes_gauge;

  /// Clients with frames queued in this turn of the event loop: each writes
  /// all of its own at the turn's end (flush_writes), so what one client is
  /// sent in one turn — a log's batch released at once, several rooms'
  /// messages, a message and an ack — leaves in one system call, not one a
  /// frame. Weak: a client gone meanwhile is skipped.
  std::vector<std::weak_ptr<WsSession>> writes_due;
  /// flush_writes is posted and has not run yet.
  bool flush_posted = false;
  /// Writes what every client in writes_due queued; posted once per turn.
  void flush_writes();

  /// Where plain connections read: one buffer for the whole event loop, as
  /// a read completes before the next starts. An idle connection holds none.
  static constexpr std::size_t kReadBufferSize = 64 * 1024;
  std::unique_ptr<std::uint8_t[]> read_buffer{new std::uint8_t[kReadBufferSize]};
  /// The keep-alive ping, the same bytes for everyone.
  std::shared_ptr<const std::string> ping_frame = std::make_shared<const std::string>(encode_frame(Opcode::ping, ""));

  /// Why a client may not join a room.
  enum class JoinRefusal { none, too_many_rooms_here, too_many_rooms_from_address, too_many_rooms };
  /// Adds `session` to `room`, or says why not (max_rooms_per_connection is
  /// the session's own to check; this checks max_rooms).
  JoinRefusal join(WsSession* session, const std::string& room);
  /// Takes `session` out of `room`; a member leaves the room's presence.
  void leave(WsSession* session, const std::string& room);
  void remove(WsSession* session);
  /// Takes the live keys of `next` (a reload) and has every open session
  /// apply the new limits from now on.
  void reconfigure(const WebSocketConfig& next);
  /// The per-address limits of `config`, for the peer table.
  PeerTable::Limits peer_limits() const;

  /// Counts a new TCP connection from `peer` (empty: a trusted proxy,
  /// counted in the total alone); false (and counted, logged at most every
  /// 10 s) when a limit refuses it.
  bool open_socket(const std::string& peer, const std::string& address);
  void close_socket(const std::string& peer) noexcept;
  /// Counts a client (max_connections, max_connections_per_address) of
  /// `peer` (empty: none known, the total alone) `as` a client, or as a
  /// Socket.IO session yet to authenticate (a pool of its own); `forwarded`:
  /// it came through a trusted proxy, so it also spends a connection of its
  /// rate. When refused, `why` says so for the client.
  bool open_client(const std::string& peer, bool forwarded, Counted as, std::string& why);
  /// The same for a Socket.IO session opened by a handshake: a session, not
  /// only a connection, spends a token of the address's connection rate (a
  /// keep-alive connection can carry any number of handshakes).
  bool open_socketio_session(const std::string& peer, Counted as, std::string& why);
  void close_client(const std::string& peer, Counted as) noexcept;
  /// A Socket.IO session just counted as yet to authenticate, in line.
  void line_up_unauthenticated(const std::string& peer, std::weak_ptr<WsSession> session);
  /// A session of `peer` yet to authenticate did: it takes a client's place (false: none is free).
  bool authenticate(const std::string& peer, std::string& why);

  /// Queues `session`'s next history read of `room` for the join `ticket`;
  /// it starts when the budget allows (WsSession::start_history_read).
  void request_history_read(std::weak_ptr<WsSession> session, std::string room, std::uint64_t ticket);
  /// Counts `bytes` of history held by a client of `peer` (reserved or queued).
  void hold_history_bytes(const std::string& peer, std::size_t bytes);
  /// A read ended: its slot is free.
  void history_read_done();
  /// History bytes a client of `peer` held were written, dropped, or not
  /// needed (what a read reserved and did not return).
  void release_history_bytes(const std::string& peer, std::size_t bytes);
  /// What one address may hold of the history budget, so a few clients that
  /// never read cannot take all of it.
  std::size_t history_share_per_peer() const noexcept {
    return static_cast<std::size_t>(config.history_buffer_bytes) / kHistorySharesPerBudget;
  }
  static constexpr std::size_t kHistorySharesPerBudget = 8;
  /// Starts waiting reads while the budget allows.
  void start_history_reads();

  /// Counts an upgrade refused for its token; logs it at debug, or at warn
  /// at most once per 10 s with the number held back.
  void note_auth_refused(JwtError error, const std::string& address);
  /// Logs a request refused for its Origin (at most every 10 s), naming
  /// the key that would allow it.
  void note_refused_origin(const std::string& origin, const std::string& address);
  /// Counts a failed TLS handshake (`plaintext`: the client did not speak
  /// TLS at all); logged like note_auth_refused.
  void note_tls_failure(const std::string& address, std::string_view what, bool plaintext);

 private:
  void count_client();
  /// Moves `peer` by `delta` in the count and ranking of sessions yet to authenticate.
  void rank_unauthenticated(const std::string& peer, int delta);
  /// Ends the oldest session yet to authenticate of the address holding the most; false if none.
  bool displace_unauthenticated();

  LogLimiter auth_log_{std::chrono::seconds(10)};
  LogLimiter tls_log_{std::chrono::seconds(10)};
  LogLimiter refusal_log_{std::chrono::seconds(10)};
  LogLimiter origin_log_{std::chrono::seconds(10)};
};

/// One client as the hub and the source see it, whatever its protocol
/// (native JSON frames or Socket.IO) and transport: a member of rooms that
/// messages are delivered to, with what both protocols share — rate limits,
/// the send path (resend cache, backpressure), joining with history, the
/// token's expiry.
///
/// Joining a room sends its history first, live messages of the room held
/// back meanwhile, so the client sees each message once and in order.
/// History is paced by the client: a page is read only when the budget of
/// all clients allows (Hub), and its messages are queued only as the
/// client's send queue drains, so a client that does not read holds at most
/// one page and its queue.
class WsSession {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~WsSession();
  WsSession(const WsSession&) = delete;
  WsSession& operator=(const WsSession&) = delete;

  /// Delivers a message of one of the client's rooms: held back while that
  /// room's history is being sent, else sent at once (deliver_live).
  void deliver(Outbound& message);
  /// Queues a WebSocket frame already encoded for the wire (encode_frame),
  /// shared by every recipient. A client whose queue is full is dropped (close 1008).
  virtual void send(std::shared_ptr<const std::string> frame) = 0;
  /// Writes the frames queued since the last call: the hub calls it at the
  /// end of the event loop's turn (write_at_turn_end).
  void write_due() {
    write_due_ = false;
    write_queued();
  }
  /// Closes with 1001 (going away) once queued frames are written.
  virtual void shutdown() = 0;
  /// Closes with `code` once queued frames are written.
  virtual void close(CloseCode code, std::string_view reason) = 0;
  /// Called by the source's sweep: pings a client silent for half the idle
  /// timeout, cuts one silent for all of it, drops one whose queue made no
  /// progress for write_timeout_ms, closes one whose token expired, and ends
  /// close handshakes that ran past their deadline.
  virtual void check_timeouts(Clock::time_point now) = 0;
  /// Applies the hub's limits after a reload (largest frame, rate limit);
  /// limits read from the hub on each use need nothing here.
  virtual void apply_limits();
  /// Reading goes on after a pause for the pipeline (backpressure) or for a
  /// Socket.IO session carried by this connection.
  virtual void resume_reading() {}
  /// Starts the read `request_history_read` asked for; the hub calls it
  /// when the budget allows. False when nothing was read (the client left
  /// the room or went away): the slot is free for another.
  /// What became of a client's turn to read.
  enum class Turn {
    started,   ///< the read is in flight
    passed,    ///< not wanted any more, or the client must drain first (it asks again)
    deferred,  ///< its address holds its share of the budget: the turn stays in line
  };
  Turn start_history_read(const std::string& room, std::uint64_t ticket);
  /// Whether this client waits for its turn to read `room`'s history for the join `ticket`.
  bool wants_history_read(const std::string& room, std::uint64_t ticket) const;

  const std::set<std::string>& rooms() const noexcept { return rooms_; }
  /// Who the client is (its messages' sender, its presence's user).
  const std::string& name() const noexcept { return name_; }
  /// Its presence id (Hub::client_id), stable for the connection's life.
  std::string client_id() const { return hub_->client_id(serial_); }
  /// A presence change of one of the client's rooms, through its send queue.
  virtual void deliver_notice(Notice& notice) = 0;
  /// The client's IP address, for logs.
  const std::string& address() const noexcept { return address_; }
  /// The key its limits are counted under (peer_key of the address).
  const std::string& peer() const noexcept { return peer_; }
  using Counted = websocket::Counted;
  Counted counted() const noexcept { return counted_; }
  /// Frames and bytes queued for the client and not yet written.
  virtual std::size_t queued_frames() const noexcept = 0;
  virtual std::size_t queued_bytes() const noexcept = 0;
  /// Frames (packets) ever queued to the client, and ever written: one
  /// queued when the first read Q is written once the second reaches Q.
  virtual std::uint64_t frames_queued_ever() const noexcept = 0;
  virtual std::uint64_t frames_written_ever() const noexcept = 0;
  /// History one client holds at most: reserved for its read in flight,
  /// and queued to it and not yet written (its own frames, not shared).
  static constexpr std::size_t kHistoryBytesPerClient = 1024 * 1024;
  /// What this client holds of it (for tests and invariants).
  std::size_t history_held() const noexcept { return history_reserved_ + history_queued_; }
  /// The client's queue drained: history waiting for room goes on. Called by
  /// the transport after a write.
  void on_queue_drained();
  /// Waiting for the pipeline to have room after a send (backpressure).
  bool waiting_for_pipeline() const noexcept { return waiting_for_pipeline_; }

 protected:
  WsSession(std::shared_ptr<Hub> hub, std::string address, std::string peer, std::optional<JwtIdentity> identity);

  // What the protocol and transport of a session provide.
  /// Sends a live message to the client.
  virtual void deliver_live(Outbound& message) = 0;
  /// Sends one message of a room's history (oldest first).
  virtual void send_history(Outbound& message) = 0;
  /// A room's history is sent (`count` messages), or could not be read
  /// (`status`); live messages of the room flow from here on.
  virtual void history_done(const std::string& room, std::size_t count, const Status& status) = 0;
  virtual std::weak_ptr<WsSession> weak_self() = 0;
  /// What the rate limits say of one more message (data frame or event).
  enum class RateVerdict {
    allowed,
    refused,           ///< answer rate_limited and go on
    refused_to_close,  ///< answer, then close: rate_limit_strikes reached
  };
  /// Takes a token from the connection's bucket and from its sender's
  /// (the token's subject, else its address) over all its connections.
  RateVerdict rate_check();
  /// The connection's own token bucket (the transport keeps it).
  virtual TokenBucket& connection_bucket() = 0;

  /// Joins `room` and sends its last history_messages, or with `after` what
  /// came after that message (catching up after a reconnect). Already in
  /// the room: history_done(room, 0) at once. Refused (room limits): nothing
  /// changes and the caller tells the client.
  Hub::JoinRefusal join_room(const std::string& room, std::optional<MessageId> after);
  /// Leaves `room`; false when the client was not in it.
  bool leave_room(const std::string& room);
  /// Leaves every room and drops history in progress: nothing more is
  /// delivered to this client.
  void leave_rooms();

  /// How a send ended, told to the client in its protocol: ok with the
  /// message's id, or the failure and its protocol error code.
  struct SendOutcome {
    Status status;
    MessageId id;
    /// The error code when the status's own (error_code_for) is not it.
    std::string_view code;
    std::string_view error_code() const noexcept { return code.empty() ? error_code_for(status.code()) : code; }
  };
  using Reply = std::function<void(WsSession& self, const SendOutcome& outcome)>;
  enum class Submitted {
    published,  ///< handed to the pipeline: read nothing more until on_pipeline_ready()
    answered,   ///< answered at once (resend recognised, refused): go on
  };
  /// A chat message from the client to `room` (already joined), with its
  /// optional `ref`: a resend of a ref is answered from the resend cache.
  /// An `ephemeral` one carries kEphemeralHeader and skips the resend cache:
  /// nothing of it is kept, so a resend is simply another one.
  Submitted submit(std::string room, std::string text, std::string ref, Reply reply, bool ephemeral = false);
  /// Called once the pipeline has room after a published submit.
  virtual void on_pipeline_ready() = 0;
  /// Whether the token's expiry (plus leeway) passed; counted and logged once.
  bool token_expired();

  /// Takes a name from a hello: in rooms already, presence hears the old
  /// name leave and the new one join (a leave must name who joined), which
  /// spends a rate-limit token per room; false (the name unchanged) when the
  /// limit refuses them.
  bool rename(std::string name);

  /// How a presence request was taken.
  enum class PresenceAsk {
    reading,      ///< answered later through the reply
    not_joined,   ///< the client is not in the room
    unsupported,  ///< the pipeline keeps no presence
    busy,         ///< this client's previous request is still unanswered
    server_busy,  ///< max_presence_reads of all clients are unanswered
    unavailable,  ///< the source is stopping
  };
  using PresenceReply = std::function<void(WsSession& self, const Status& status, const PresenceList& list)>;
  /// Reads `room`'s members for the client: one request in flight per
  /// client, so what a client makes the server hold is one list at a time.
  PresenceAsk ask_presence(const std::string& room, PresenceReply reply);

  /// Whose refs these are: the token's holder, the hello name, or (anonymous)
  /// this connection alone.
  std::string resend_scope() const;

  std::shared_ptr<Hub> hub_;
  std::set<std::string> rooms_;
  std::string address_;
  std::string peer_;
  /// Behind a pointer: most connections carry no token, and an optional
  /// would cost each of them its 48 bytes.
  std::unique_ptr<const JwtIdentity> identity_;
  std::string name_ = "anonymous";
  bool named_ = false;  ///< a hello set name_
  Counted counted_ = Counted::client;
  /// Waiting for the pipeline to have room (backpressure): the client's
  /// silence meanwhile is ours, not its own.
  bool waiting_for_pipeline_ = false;
  /// A presence request of this client is unanswered (ask_presence).
  bool presence_reading_ = false;
  std::uint64_t serial_ = 0;
  std::int64_t rate_strikes_ = 0;

 private:
  /// A room's history on its way to the client.
  struct CatchUp {
    enum class Phase {
      queued,            ///< waiting for its turn in the hub's line to read
      reading,           ///< a read is in flight
      waiting_for_room,  ///< waiting for the client to drain what it holds of history, or for its other read
    };
    Phase phase = Phase::queued;
    /// This join's, among the hub's turns to read.
    std::uint64_t ticket = 0;
    /// Catching up after an id (paged), rather than the last N.
    bool paged = false;
    /// Paged: the next read starts after this id.
    std::optional<MessageId> cursor;
    /// Messages the read in flight asked for (paged: fewer means the end).
    std::size_t asked = 0;
    /// Another page follows.
    bool more = false;
    std::size_t sent = 0;
    /// Live messages of the room meanwhile, delivered once the history is out.
    std::vector<MessagePtr> held;
    std::size_t held_bytes = 0;
  };
  void on_history(const std::string& room, const Status& status, std::vector<MessagePtr> messages);
  /// Queues `messages` [first, end) as history and records them as held
  /// until written; returns their bytes.
  std::size_t queue_history(CatchUp& state, std::vector<MessagePtr>& messages, std::size_t first, std::size_t end);
  /// After a read: the next page, or the end.
  void continue_catch_up(const std::string& room);
  /// Takes a turn in the hub's line to read `room`'s history, now if this
  /// client may read, else once it has drained (waiting_for_room).
  void request_turn(const std::string& room);
  /// Whether this client may start a history read now: none of its own in
  /// flight, and less than half its history allowance held.
  bool may_read_history() const noexcept;
  /// Rooms waiting for room ask again.
  void resume_waiting_history();
  /// Gives back what written history frames held.
  void release_written_history();

 protected:
  /// Has write_queued() called at the end of this turn of the event loop
  /// (once, however many frames are queued meanwhile).
  void write_at_turn_end();
  /// Starts writing the queue, unless a write is already under way.
  virtual void write_queued() = 0;

  /// Gives back every history byte queued (the client is going, or its
  /// frames move to another transport).
  void release_all_history();

 private:
  /// The native chat speaks for the session of its connection (name,
  /// rooms, sends, rate limits); it reaches the connection itself only
  /// through WsConnection's public send_text, send and close_after_queue.
  friend class ChatProtocol;

  void finish_catch_up(const std::string& room, const Status& status);

  /// Only while some room's history is being sent.
  std::unique_ptr<std::unordered_map<std::string, CatchUp>> catching_up_;
  /// on_history is queuing a page (on_queue_drained must not start another read meanwhile).
  bool queuing_history_ = false;
  /// In the hub's writes_due.
  bool write_due_ = false;
  /// A history read of this client is in flight (one at a time, whatever the room).
  bool history_reading_ = false;
  /// Reserved for the read in flight, and queued history not yet written.
  std::size_t history_reserved_ = 0;
  std::size_t history_queued_ = 0;
  /// Queued history (its bytes) by where it ends in frames_queued_ever():
  /// written once frames_written_ever() reaches it.
  /// A vector, not a std::deque: libstdc++'s deque allocates about 600
  /// bytes when constructed, a quarter of an idle connection. A catch-up
  /// queues a few pages at most, so erasing from the front is cheap.
  std::vector<std::pair<std::uint64_t, std::size_t>> history_batches_;
};

}  // namespace nudge::plugins::websocket
