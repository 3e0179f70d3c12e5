#pragma once

#include <cstdint>

namespace nudge::plugins::websocket {

/// What a protocol above a WsConnection (ChatProtocol, SioBridge) lets the
/// connection do after one complete message: the one call per message
/// between the RFC 6455 layer and the protocol it carries.
enum class AfterMessage : std::uint8_t {
  read,   ///< go on reading
  pause,  ///< wait: something will call do_read() (pipeline backpressure)
  stop,   ///< the connection is closing
};

}  // namespace nudge::plugins::websocket
