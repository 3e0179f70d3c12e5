#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/message.hpp"

namespace nudge::plugins::http {

/// The error codes of the API, each with its HTTP status (docs/http-api.md).
enum class ApiError {
  bad_request,   ///< 400: not JSON, a field missing or invalid
  unauthorized,  ///< 401: no key, or not one of api_keys
  not_found,     ///< 404: no such path
  not_allowed,   ///< 405: not POST
  conflict,      ///< 409: an idempotency key reused for another message
  too_large,     ///< 413: body, header or batch over its bound
  rejected,      ///< 422: a transform refused the message (its reason follows)
  rate_limited,  ///< 429: the key's rate limit is spent
  unavailable,   ///< 503: not stored (send again with the same idempotency key), or the server is full or stopping
};

std::string_view to_string(ApiError error) noexcept;
unsigned http_status(ApiError error) noexcept;

/// `{"error":{"code":"...","message":"..."}}`
std::string error_body(ApiError error, std::string_view message);

/// Which endpoint a request target names.
enum class Route {
  room_messages,  ///< POST /api/rooms/{room}/messages
  batch,          ///< POST /api/messages
  unknown,
};

/// Parses a request target (a query string is ignored). For room_messages,
/// `room` is the percent-decoded room segment (not yet validated).
Route route_of(std::string_view target, std::string& room);

/// What a caller asks to publish: one message.
struct Draft {
  std::string room;
  std::string text;
  std::string sender;           ///< empty: the default sender
  std::string idempotency_key;  ///< empty: none
};

/// 1 to 128 characters of A-Z a-z 0-9 _ - . : (as the websocket source checks).
bool is_valid_room(std::string_view room) noexcept;
/// A name as the websocket source takes one (nudge::is_acceptable_display_name).
bool is_valid_sender(std::string_view sender) noexcept;
/// 1 to 128 visible ASCII characters.
bool is_valid_idempotency_key(std::string_view key) noexcept;

/// Parses the body of POST /api/rooms/{room}/messages:
/// `{"text": string, "sender"?: string, "idempotency_key"?: string}`.
/// nullopt and `error` (a sentence for the caller) when it is not one.
std::optional<Draft> parse_message(std::string_view body, std::string room, std::string& error);

/// One item of a batch: a draft, or why the item is refused.
struct BatchItem {
  std::optional<Draft> draft;
  std::string error;
};

/// Parses the body of POST /api/messages: `{"messages": [{"room", "text",
/// "sender"?, "idempotency_key"?}, ...]}`. An item that is not right is
/// refused alone; a body that is not that shape at all, or carries more than
/// `max_items` items, gives nullopt and `error` (`too_many` set for the latter).
std::optional<std::vector<BatchItem>> parse_batch(std::string_view body, std::size_t max_items, std::string& error,
                                                  bool& too_many);

/// Checks a presented key against the configured ones in constant time for
/// a key of a given length (every configured key is compared, whatever
/// matches). Returns the index of the match, or -1.
int match_api_key(std::string_view presented, const std::vector<std::string>& keys) noexcept;

/// The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key`; empty with neither.
std::string_view presented_key(std::string_view authorization, std::string_view x_api_key) noexcept;

/// A short, stable name for a key that is safe to log and to share between
/// instances (the first 8 bytes of its SHA-256, in hex).
std::string key_fingerprint(std::string_view key);

/// The message id of an idempotent publish when `key` is a UUIDv7 (RFC 9562)
/// whose time lies within [now - window, now + 1 min]: the key's 48-bit time
/// and 74 bits of SHA-256(scope, key), so every instance derives the same id
/// from the same (scope, key) and the sinks store a resend once. nullopt for
/// any other key (remembered per instance only). `too_old` is set when the
/// key is a UUIDv7 outside that time range.
std::optional<MessageId> derived_id(std::string_view scope, std::string_view key, std::int64_t now_ms,
                                    std::int64_t window_ms, bool& out_of_window);

/// `{"id":"..."}`
std::string id_body(const MessageId& id);

}  // namespace nudge::plugins::http
