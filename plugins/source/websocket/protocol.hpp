#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nudge/sdk/message.hpp"
#include "nudge/sdk/presence.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge::plugins::websocket {

/// One client frame of the chat protocol (docs/protocol.md), parsed.
struct ClientFrame {
  enum class Type { hello, join, leave, send, presence };
  Type type = Type::hello;
  std::string name;  ///< hello
  std::string room;  ///< join, leave, send, presence
  std::string text;  ///< send
  std::string ref;   ///< send, presence (optional)
  /// send (optional): fanned out to the room, never stored (kEphemeralHeader).
  bool ephemeral = false;
  /// join (optional): the last message the client saw in the room; it is
  /// sent what came after instead of the room's last messages.
  std::optional<MessageId> after;
};

/// A frame the server refuses: the error code and message to send back, with
/// the client's `ref` when it could be read.
struct ProtocolError {
  std::string code;
  std::string message;
  std::string ref;
};

/// Parses one text frame. Returns the frame, or fills `error` and returns nullopt.
std::optional<ClientFrame> parse_client_frame(std::string_view text, ProtocolError& error);

bool is_valid_room(std::string_view room);
/// A `not_joined` error's message: names the room only when it is a valid
/// room name, so the answer never carries back more than 128 bytes of it.
std::string not_joined_message(std::string_view room);
/// A sender's name: 1 to 64 bytes of UTF-8, no space (of any kind) at either
/// end nor a combining mark first, and no control, bidirectional or invisible
/// formatting character (see kNameRule). Letters of other scripts that look
/// alike (Cyrillic "а" for Latin "a") and unnormalised forms are not
/// detected: a name is what a client says it is; tokens name senders for sure.
bool is_valid_name(std::string_view name);
/// What is_valid_name asks, in a sentence for the client's error.
inline constexpr const char* kNameRule =
    "'name' must be a string of 1 to 64 bytes of UTF-8 with no space at either end and no control, "
    "bidirectional or invisible formatting characters";

/// `{"type":"message",...}` for a delivered message; `"history":true` when
/// sent from history on joining; `{"type":"ephemeral",...}` when the message
/// is ephemeral (is_ephemeral). Empty when the payload is not valid UTF-8
/// (it cannot travel in a text frame).
std::string message_frame(const Message& message, bool history = false);
/// `{"type":"presence_join"|"presence_leave","room":...,"user":...,"client":...}`;
/// empty when a string is not valid UTF-8 (a member named on another instance).
std::string presence_event_frame(std::string_view room, const PresenceEvent& event);
/// The reply to a `presence` request: at most `max_members` of `list`'s
/// members (those not valid UTF-8 left out) and its total.
std::string presence_reply_frame(std::string_view room, std::string_view ref, const PresenceList& list,
                                 std::size_t max_members);
/// The members part of a presence reply, `[{"user":...,"client":...},...]`,
/// shared by both protocols.
std::string presence_members_json(const PresenceList& list, std::size_t max_members);
/// `{"type":"joined","room":...,"history":N}`: the room's history is sent
/// (N messages) and live messages follow.
std::string joined_frame(std::string_view room, std::size_t history);
/// `{"type":"ack","ref":...,"id":...}`
std::string ack_frame(std::string_view ref, const MessageId& id);
/// The protocol's error code for a pipeline failure (docs/protocol.md#error-codes).
std::string_view error_code_for(StatusCode code) noexcept;
/// Wall-clock time in Unix milliseconds: a message's `ts`, a token's expiry.
std::int64_t now_ms() noexcept;

/// `{"type":"error","ref":...,"code":...,"message":...}`; ref omitted when empty.
std::string error_frame(std::string_view ref, std::string_view code, std::string_view message);

}  // namespace nudge::plugins::websocket
