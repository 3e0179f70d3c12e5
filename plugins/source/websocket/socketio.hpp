#pragma once

// The Engine.IO v4 and Socket.IO v5 packet formats, as a server reads and
// writes them over text frames (issue 7: Socket.IO clients at /socket.io/).
// Pure functions with no I/O: the sessions use them, the tests and the
// protocol's published test suite cases check them.
//
//   Engine.IO packet: one type digit then the data ("4" + a Socket.IO packet,
//     "2" ping, "3" pong, "0" + the open JSON, "1" close, "5" upgrade, "6" noop).
//   Socket.IO packet: <type>[<namespace>,][<ack id>][<JSON>], e.g.
//     2["event:message",{"message":"hi"}]   an event
//     21["event:message",{"message":"hi"}]  the same, asking for ack 1
//     31[{"ok":true}]                        the ack 1 answer
//     0 / 0{"token":"..."} / 0/admin,        connect to "/" (with auth) or "/admin"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::plugins::websocket::socketio {

/// Engine.IO v4 packet types.
enum class EngineType : char {
  open = '0',
  close = '1',
  ping = '2',
  pong = '3',
  message = '4',
  upgrade = '5',
  noop = '6'
};

/// Socket.IO v5 packet types.
enum class PacketType : char {
  connect = '0',
  disconnect = '1',
  event = '2',
  ack = '3',
  connect_error = '4',
  binary_event = '5',
  binary_ack = '6',
};

/// One Engine.IO packet read from a text frame; `data` points into the frame.
struct EnginePacket {
  EngineType type = EngineType::noop;
  std::string_view data;
};

/// Reads an Engine.IO packet from a text frame; nullopt when the type is unknown or the frame empty.
std::optional<EnginePacket> parse_engine_packet(std::string_view frame);

/// One Socket.IO packet, checked against what its type allows.
struct Packet {
  PacketType type = PacketType::event;
  std::string nsp = "/";
  std::optional<std::uint64_t> ack_id;
  /// The JSON data as sent (an array for event and ack, an object or nothing for connect).
  std::string data;
  /// event only: the event's name (the array's first element) and the rest
  /// of the array as JSON (`[...]`, possibly `[]`).
  std::string event;
  std::string args;
};

/// Why a Socket.IO packet was refused, in a sentence for the client's error.
struct ParseError {
  std::string message;
};

/// Parses a Socket.IO packet (the data of an Engine.IO "message"). Binary
/// packets (types 5 and 6) are refused: this server reads text only.
std::optional<Packet> parse_packet(std::string_view text, ParseError& error);

/// What a binary packet (types 5 and 6: `51-/chat,12[...]`) says before its
/// data: how many binary attachments follow it as messages of their own, and
/// its ack id — so it can be refused, answered and its attachments skipped.
struct BinaryHeader {
  std::uint64_t attachments = 0;
  std::optional<std::uint64_t> ack_id;
};
/// nullopt when `text` is not a binary packet.
std::optional<BinaryHeader> parse_binary_header(std::string_view text);

/// A new Engine.IO session id: 120 bits from OpenSSL's CSPRNG, base64url
/// (20 characters, as the reference server's). After the handshake it is
/// the client's only credential, so nothing a client sees (message ids, other
/// sids) may tell it.
std::string new_session_id();

/// "0{...}": the Engine.IO open packet.
std::string open_packet(std::string_view sid, bool can_upgrade, std::int64_t ping_interval_ms,
                        std::int64_t ping_timeout_ms, std::int64_t max_payload);
/// "40{"sid":...}": the answer to a connect to "/".
std::string connect_packet(std::string_view sid);
/// "44{"message":...}": a refused connect.
std::string connect_error_packet(std::string_view nsp, std::string_view message);
/// "42[name,...args]": an event; `args_json` is a JSON array (`[]` for none).
std::string event_packet(std::string_view name, std::string_view args_json);
/// "43<id>[...]": the answer to an event that asked for an ack; `args_json` a JSON array.
std::string ack_packet(std::uint64_t id, std::string_view args_json);

}  // namespace nudge::plugins::websocket::socketio
