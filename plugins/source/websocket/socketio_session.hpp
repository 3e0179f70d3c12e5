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

#include "sessions.hpp"
#include "socketio.hpp"

namespace nudge::plugins::websocket {

/// One Socket.IO client: an Engine.IO session (its sid) connected to the
/// namespace "/". It is a member of rooms like a native client and speaks the
/// chat through events:
///   client → server  `event:message` {message, room?} (ack: {ok, id} once durable),
///                    `join` room | {room, after}, `leave` room, `hello` name | {name}
///   server → client  `message` "<JSON text: message, id, room, sender, ts>", `error` {code, message}
/// Packets reach it from a long-polling POST or a WebSocket's text frames;
/// what it sends waits for the next poll or goes out on the WebSocket.
class SioSession final : public WsSession, public std::enable_shared_from_this<SioSession> {
 public:
  /// `identity`: the token's holder when the handshake carried a valid
  /// token; with authentication on and none, CONNECT must carry one in its
  /// auth data (`{token}`).
  SioSession(std::shared_ptr<Hub> hub, std::string address, std::optional<JwtIdentity> identity, bool polling);
  ~SioSession() override;

  const std::string& sid() const noexcept { return sid_; }
  bool polling() const noexcept { return polling_; }
  /// Registers the session with the hub and starts its heartbeat. Returns
  /// the Engine.IO open packet: the handshake's answer (polling), or the
  /// first frame of the WebSocket (queued here).
  std::string start();

  /// Long-polling GET: `answer` gets what is queued, at once or as soon as
  /// something is. False when a GET is already waiting (a protocol error).
  bool poll(std::function<void(std::string body)> answer);
  /// Long-polling POST: Engine.IO packets separated by the record separator.
  void on_post(std::string_view body);

  /// One Engine.IO packet from the WebSocket carrying this session.
  void on_packet(std::string_view packet);
  /// A binary WebSocket message: an attachment of a binary packet (dropped)
  /// or an error.
  void on_binary();
  /// The WebSocket upgrade probe arrived: the waiting poll ends (noop) so
  /// the client can pause polling.
  void on_probe();
  /// The upgrade is complete: `ws` carries the session from now on.
  void attach_websocket(std::shared_ptr<WsSession> ws);
  /// The WebSocket `ws` is gone; the session ends if it was its transport.
  void websocket_closed(const WsSession* ws);

  // WsSession
  void send(std::shared_ptr<const std::string> frame) override;
  void shutdown() override;
  void close(CloseCode code, std::string_view reason) override;
  void check_timeouts(Clock::time_point now) override;
  void apply_limits() override;

 private:
  // WsSession
  void deliver_live(Outbound& message) override;
  void send_history(Outbound& message) override;
  void history_done(const std::string& room, std::size_t count, const Status& status) override;
  std::weak_ptr<WsSession> weak_self() override { return weak_from_this(); }

  /// Sends an Engine.IO packet; `frame` is its WebSocket frame when already made.
  void send_packet(std::shared_ptr<const std::string> packet, std::shared_ptr<const std::string> frame = nullptr);
  void send_packet(std::string packet) { send_packet(std::make_shared<const std::string>(std::move(packet))); }
  void flush_poll();
  void on_socketio(std::string_view text);
  void on_connect(const socketio::Packet& packet);
  void on_event(const socketio::Packet& packet);
  void on_send(std::string_view args, std::optional<std::uint64_t> ack);
  /// Emits `error` {code, message}, or answers the ack {ok: false, error} when the client asked for one.
  void refuse(std::optional<std::uint64_t> ack, std::string_view code, std::string_view message);
  void ack_ok(std::optional<std::uint64_t> ack, std::string_view fields_json);
  /// Ends the session: leaves its rooms, closes its transport, leaves the hub.
  void end(std::string_view reason);

  std::string sid_;
  bool polling_;
  bool connected_ = false;  ///< the namespace "/" is connected
  bool ended_ = false;
  bool upgrading_ = false;  ///< probed over a WebSocket, "5" not yet received
  std::optional<JwtIdentity> identity_;
  std::string name_ = "anonymous";
  /// The room `event:message` goes to when the client names none: the last joined.
  std::string current_room_;
  /// Joins answered once their history is out: room → the join's ack id.
  std::unordered_map<std::string, std::uint64_t> join_acks_;
  std::weak_ptr<WsSession> websocket_;
  std::deque<std::shared_ptr<const std::string>> poll_queue_;
  std::function<void(std::string)> poll_waiter_;
  /// Binary attachments still to come of a refused binary packet.
  std::uint64_t attachments_to_skip_ = 0;
  Clock::time_point next_ping_;
  Clock::time_point pong_deadline_;
  bool awaiting_pong_ = false;
  TokenBucket bucket_;
  std::int64_t rate_strikes_ = 0;
};

}  // namespace nudge::plugins::websocket
