#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "header.hpp"

namespace nudge::bench {

/// The two client protocols nudge-bench speaks.
enum class Protocol {
  nudge,      ///< docs/protocol.md: hello, join, send with ref; message, ack, error
  socket_io,  ///< Socket.IO v5 over Engine.IO v4, WebSocket transport only
};

std::string_view to_string(Protocol protocol) noexcept;

/// A frame received from the server, reduced to what the benchmark counts.
struct Incoming {
  enum class Kind {
    delivery,       ///< a chat message; `header` is set when its text carries one
    ack,            ///< a send was acknowledged; `ref` is the acknowledged sequence number
    error,          ///< a request was refused; `code`, and `ref` when the server named it
    open,           ///< Engine.IO open packet: answer with the namespace connect
    connected,      ///< Socket.IO namespace connect accepted: the session is ready
    connect_error,  ///< Socket.IO namespace connect refused
    ping,           ///< Engine.IO ping: answer with a pong
    close,          ///< Engine.IO close or Socket.IO disconnect
    other,          ///< anything else (ignored, as the protocols ask)
    malformed,      ///< not a frame of the protocol
  };
  Kind kind = Kind::other;
  std::optional<MessageHeader> header;
  std::optional<std::uint64_t> ref;
  std::string code;
};

// --- Nudge (docs/protocol.md) ------------------------------------------------

std::string nudge_hello(std::string_view name);
std::string nudge_join(std::string_view room);
/// `{"type":"send","room":ROOM,"text":HEADER+PADDING,"ref":"SEQ"}`; `room` must
/// be a valid room name (no byte that JSON escapes).
std::string nudge_send(std::string_view room, const MessageHeader& header, std::size_t payload_bytes);
/// Classifies a server frame. `message` frames take a fast path (no JSON
/// parse: the header is found in the raw text); everything else is parsed.
Incoming parse_nudge(std::string_view frame);

// --- Socket.IO v5 / Engine.IO v4 ---------------------------------------------

/// The WebSocket path of a Socket.IO server at `base` ("/socket.io/").
std::string socketio_path(std::string_view base);
inline constexpr std::string_view kSocketIoConnect = "40";
inline constexpr std::string_view kEngineIoPong = "3";
/// `42["join","ROOM"]`: Nudge's Socket.IO mode moves the client to ROOM (the
/// original server has no such event and ignores it).
std::string socketio_join(std::string_view room);
/// `42["event:message",{"message":TEXT}]`, the original client's emit; with
/// `ack_id` an acknowledgement is asked for (`42ID[...]`, answered `43ID[...]`).
std::string socketio_send(const MessageHeader& header, std::size_t payload_bytes, std::optional<std::uint64_t> ack_id);
/// Classifies an Engine.IO packet; the `message` event's payload (a JSON
/// string, or an object) is searched for the header.
Incoming parse_socketio(std::string_view frame);

}  // namespace nudge::bench
