#include "websocket_source.hpp"

NUDGE_PLUGIN(nudge::plugins::websocket::WebSocketSource, "websocket", "0.1.0",
             "Chat over WebSocket (JSON frames, docs/protocol.md) plus the static chat page, on one port")
