#pragma once

#include <string>
#include <string_view>

// The HS256 verifier is the SDK's (shared with the http source); what is the
// websocket source's own is how a browser hands its token over.
#include "nudge/sdk/jwt.hpp"

namespace nudge::plugins::websocket {

/// The token of an upgrade request: the `Authorization: Bearer <token>` header
/// when there is one, else the `token` query parameter of `target`
/// (percent-decoded), else empty. A browser's WebSocket cannot set headers,
/// hence the query.
std::string token_from_request(std::string_view authorization, std::string_view target);

}  // namespace nudge::plugins::websocket
