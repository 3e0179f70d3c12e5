#pragma once

// A Socket.IO v5 client over Engine.IO v4 (docs/socketio.md): the chat's
// events on top of the packet codec in socketio.hpp, over long-polling or a
// WebSocket, and the move from one to the other.

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/fwd.h>

#include "sessions.hpp"
#include "socketio.hpp"
#include "ws_protocol.hpp"

namespace nudge::plugins::websocket {

/// One Socket.IO client: an Engine.IO session (its sid) connected to the
/// namespace "/". It is a member of rooms like a native client and speaks the
/// chat through events:
///   client → server  `event:message` {message, room?, ref?} (ack: {ok, id} once durable),
///                    `join` room | {room, after}, `leave` room, `hello` name | {name}
///   server → client  `message` "<JSON text: message, id, room, sender, ts>", `error` {code, message}
/// Packets reach it from a long-polling POST or a WebSocket's text frames;
/// what it sends waits for the next poll or goes out on the WebSocket.
class WsConnection;

class SioSession final : public WsSession, public std::enable_shared_from_this<SioSession> {
 public:
  /// `identity`: the token's holder when the handshake carried a valid
  /// token; with authentication on and none, CONNECT must carry one in its
  /// auth data (`{token}`). The caller counted the client (Hub::open_client).
  SioSession(std::shared_ptr<Hub> hub, std::string address, std::string peer, std::optional<JwtIdentity> identity,
             bool polling);
  ~SioSession() override;

  const std::string& sid() const noexcept { return sid_; }
  /// Packets travel by long-polling (also while a WebSocket probes the upgrade).
  bool polling() const noexcept { return transport_ != Transport::websocket; }
  /// Registers the session with the hub and starts its heartbeat. Returns
  /// the Engine.IO open packet: the handshake's answer (polling), or the
  /// first frame of the WebSocket (queued here).
  std::string start();

  /// Long-polling GET: `answer` gets what is queued, at once or as soon as
  /// something is. False when a GET is already waiting (a protocol error).
  bool poll(std::function<void(std::string body)> answer);
  /// Long-polling POST: Engine.IO packets separated by the record separator.
  /// `done` runs once every packet is taken — later when a message waits
  /// for the pipeline to have room. False when a POST is already being taken
  /// (a protocol error).
  bool on_post(std::string body, std::function<void()> done);

  /// One Engine.IO packet from the WebSocket carrying this session.
  void on_packet(std::string_view packet);
  /// A binary WebSocket message: an attachment of a binary packet (dropped)
  /// or an error.
  void on_binary();
  /// A WebSocket asks to upgrade this session: false unless it is polling
  /// with no upgrade under way (one probe at a time, one upgrade at all).
  bool begin_probe();
  /// The probing WebSocket went away before the upgrade was through.
  void probe_ended();
  /// The WebSocket upgrade probe arrived: the waiting poll ends (noop) so
  /// the client can pause polling.
  void on_probe();
  /// The upgrade is complete: `ws` carries the session from now on.
  void attach_websocket(std::shared_ptr<WsSession> ws);
  /// The WebSocket `ws` is gone; the session ends if it was its transport.
  void websocket_closed(const WsSession* ws);
  /// The WebSocket carrying the session stopped reading because a message
  /// waits for the pipeline: it is held (nothing else is while it does not
  /// read) and resumed once the pipeline has room.
  void pause_transport(std::shared_ptr<WsSession> ws) { paused_websocket_ = std::move(ws); }

  // WsSession
  void send(std::shared_ptr<const std::string> frame) override;
  void shutdown() override;
  void close(CloseCode code, std::string_view reason) override;
  void check_timeouts(Clock::time_point now) override;
  void apply_limits() override;
  std::size_t queued_frames() const noexcept override;
  std::size_t queued_bytes() const noexcept override;
  std::uint64_t frames_queued_ever() const noexcept override;
  std::uint64_t frames_written_ever() const noexcept override;
  void deliver_notice(Notice& notice) override;

 private:
  /// What carries the session's packets.
  enum class Transport {
    polling,    ///< long-polling requests
    probing,    ///< polling, while a WebSocket probes the upgrade
    upgrading,  ///< the probe was answered; polls get noop until "5"
    websocket,  ///< the WebSocket alone
  };

  // WsSession
  void deliver_live(Outbound& message) override;
  void send_history(Outbound& message) override;
  void history_done(const std::string& room, std::size_t count, const Status& status) override;
  std::weak_ptr<WsSession> weak_self() override { return weak_from_this(); }
  /// Its WebSocket (a WsStreamSession) or the long-polling response writes; nothing is queued here for the turn's end.
  void write_queued() override {}
  TokenBucket& connection_bucket() override { return bucket_; }
  void on_pipeline_ready() override;

  /// Sends an Engine.IO packet; `frame` is its WebSocket frame when already made.
  void send_packet(std::shared_ptr<const std::string> packet, std::shared_ptr<const std::string> frame = nullptr);
  void send_packet(std::string packet) { send_packet(std::make_shared<const std::string>(std::move(packet))); }
  void flush_poll();
  /// Takes the packets of the POST being taken, until one waits for the pipeline.
  void take_post();
  /// One Socket.IO packet; `verdict` is what the rate limits said of it.
  void on_socketio(std::string_view text, RateVerdict verdict);
  /// An unknown namespace is named in its refusal up to this length.
  static constexpr std::size_t kMaxEchoedNamespace = 128;
  /// A ping's data is sent back in its pong up to this length ("probe").
  static constexpr std::size_t kMaxEchoedPingData = 32;
  void on_connect(const socketio::Packet& packet);
  void on_event(const socketio::Packet& packet);
  void on_send(std::string_view args, std::optional<std::uint64_t> ack);
  /// `presence` with a room, {room}, or nothing (the room joined last): answered in its ack.
  void on_presence(const rapidjson::Value* first, std::optional<std::uint64_t> ack);
  /// Emits `error` {code, message}, or answers the ack {ok: false, error} when the client asked for one.
  void refuse(std::optional<std::uint64_t> ack, std::string_view code, std::string_view message);
  void ack_ok(std::optional<std::uint64_t> ack, std::string_view fields_json);
  /// Ends the session: leaves its rooms, closes its transport, leaves the hub.
  void end(std::string_view reason);

  std::string sid_;
  Transport transport_;
  /// The session's own rate limit (over whichever transport carries it).
  TokenBucket bucket_;
  bool connected_ = false;  ///< the namespace "/" is connected
  bool ended_ = false;
  /// The room `event:message` goes to when the client names none: the last joined.
  std::string current_room_;
  /// Joins answered once their history is out: room → the join's ack id.
  std::unordered_map<std::string, std::uint64_t> join_acks_;
  std::weak_ptr<WsSession> websocket_;
  std::shared_ptr<WsSession> paused_websocket_;
  /// A vector, not a std::deque (which allocates about 600 bytes when
  /// constructed): it is only appended to and emptied whole.
  std::vector<std::shared_ptr<const std::string>> poll_queue_;
  std::size_t poll_queue_bytes_ = 0;
  /// Packets ever queued for polls, and ever answered to one.
  std::uint64_t poll_pushed_ = 0;
  std::uint64_t poll_flushed_ = 0;
  std::function<void(std::string)> poll_waiter_;
  /// The POST being taken: its body, how far, and its answer.
  std::string post_body_;
  std::size_t post_offset_ = 0;
  std::function<void()> post_done_;
  /// Binary attachments still to come of a refused binary packet.
  std::uint64_t attachments_to_skip_ = 0;
  /// When the session opened: CONNECT must come within handshake_timeout_ms.
  Clock::time_point started_;
  Clock::time_point next_ping_;
  Clock::time_point pong_deadline_;
  bool awaiting_pong_ = false;
};

/// The Socket.IO bridge above a WsConnection carrying a SioSession:
/// Engine.IO packets in text frames, handed to the session, and the upgrade
/// from long-polling (Engine.IO v4: "2probe" answered "3probe", then "5").
/// Made once, at the upgrade, for a Socket.IO connection; a native one has none.
class SioBridge {
 public:
  /// `probe`: the connection upgrades a long-polling session, which the
  /// client completes with the probe; else it carries `session` from the start.
  SioBridge(WsConnection& connection, std::shared_ptr<SioSession> session, bool probe) noexcept
      : connection_(connection), session_(std::move(session)), state_(probe ? State::probing : State::carrying) {}

  /// One complete message from the client.
  AfterMessage on_message(std::string_view data, bool text);
  /// The connection wrote frames: the session's history waiting for room goes on.
  void on_written() { session_->on_queue_drained(); }
  /// The connection's socket is closed.
  void on_closed();
  /// Once it carries the session, the session's heartbeat and token watch
  /// the connection, not the connection's own idle and expiry checks.
  bool carrying() const noexcept { return state_ == State::carrying; }

 private:
  /// Where the connection is in the upgrade: it only moves forward.
  enum class State : std::uint8_t {
    probing,   ///< an upgrade from long-polling, not yet completed ("5" not received)
    carrying,  ///< the session's packets travel on this connection
  };

  WsConnection& connection_;
  std::shared_ptr<SioSession> session_;
  State state_;
};

}  // namespace nudge::plugins::websocket
