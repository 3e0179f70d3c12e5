// The sessions over TLS (sessions_impl.hpp).
#include "sessions_impl.hpp"

namespace nudge::plugins::websocket {

template class WsStreamSession<TlsStream>;
template class HttpSession<TlsStream>;

}  // namespace nudge::plugins::websocket
