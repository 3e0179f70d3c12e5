#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "protocol.hpp"
#include "ws_protocol.hpp"

namespace nudge::plugins::websocket {

class Outbound;
class WsConnection;

/// The native chat protocol (docs/protocol.md) above a WsConnection: JSON
/// text messages in (hello, join, leave, send), acks, errors, history and
/// live messages out. It holds no state of its own: the client's name,
/// rooms, rate limits and resends are the session's (WsSession, hub.hpp),
/// which the Socket.IO bridge shares; the connection gives it complete
/// messages and sends what it is given (send_text, send, close_after_queue).
class ChatProtocol {
 public:
  explicit ChatProtocol(WsConnection& connection) noexcept : connection_(connection) {}

  /// One complete message from the client.
  AfterMessage on_message(std::string_view data, bool text);
  /// A live message, or one of a room's history, for the client: the frame
  /// encoded once for every native recipient.
  void deliver(Outbound& message);
  /// A room's history is sent (`count` messages), or could not be read.
  void history_done(const std::string& room, std::size_t count, const Status& status);

 private:
  AfterMessage handle(ClientFrame frame);
  /// A `presence` request: answered later with the room's members, or at once with an error.
  AfterMessage ask_presence(const ClientFrame& frame);

  WsConnection& connection_;
};

}  // namespace nudge::plugins::websocket
