// The sessions over plain TCP (sessions_impl.hpp).
#include "sessions_impl.hpp"

namespace nudge::plugins::websocket {

template class WsStreamSession<PlainStream>;
template class HttpSession<PlainStream>;

}  // namespace nudge::plugins::websocket
