#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/status.hpp"

namespace nudge {

/// One client connection in a room, as presence lists it. A user with two
/// connections in a room is two members; `connection` tells them apart.
struct PresenceMember {
  std::string user;        ///< who the client says it is (a message's `sender`)
  std::string connection;  ///< the connection's id, unique on its instance
  std::string instance;    ///< the runtime instance the connection is on (Context::instance_id)

  friend bool operator==(const PresenceMember&, const PresenceMember&) = default;
};

/// What happened to a member. The values travel between instances.
enum class PresenceChange : std::uint8_t {
  join = 1,   ///< the connection entered the room
  leave = 2,  ///< it left, was closed, or its instance stopped answering (its entries expired)
};

struct PresenceEvent {
  PresenceChange change = PresenceChange::join;
  PresenceMember member;
};

/// A room's members as one instance sees them.
struct PresenceList {
  /// At most the fanout's bound per room (`max_presence_per_room`), in no
  /// promised order.
  std::vector<PresenceMember> members;
  /// Members in the room, including those beyond the bound.
  std::size_t total = 0;
};

/// Receives a presence list, or the failure that prevented reading it
/// (then the list is empty). Called on the executor, never inline.
using PresenceHandler = std::function<void(Status, PresenceList)>;

}  // namespace nudge

namespace nudge {

/// What fanouts carry between instances for presence, next to message
/// envelopes on the same bus: a join or leave of one member, or an instance's
/// snapshot of its members in a room (a heartbeat).
struct PresenceFrame {
  enum class Kind : std::uint8_t { join = 1, leave = 2, snapshot = 3 };
  Kind kind = Kind::join;
  std::string room;
  std::string instance;
  /// join, leave: exactly one. snapshot: the instance's members in the room,
  /// possibly fewer than `total` (a bounded snapshot). Each member's
  /// `instance` is the frame's.
  std::vector<PresenceMember> members;
  /// snapshot: how many members the instance has in the room.
  std::uint64_t total = 0;
};

/// Encodes a frame: the magic `N`,`P`,1, the kind byte, room and instance as
/// varint-length-prefixed bytes, a varint total, a varint member count and
/// each member's user and connection as such strings. An envelope
/// (encode_envelope) starts with `N`,`G`, so one bus may carry both.
std::string encode_presence_frame(const PresenceFrame& frame);

/// Whether `bytes` start like a presence frame (and not like an envelope).
bool is_presence_frame(std::string_view bytes) noexcept;

/// Decodes a frame. On malformed input returns a StatusCode::invalid_argument
/// Status saying what is wrong and leaves `out` untouched; never throws on
/// bad bytes. At most `max_members` members are accepted.
Status decode_presence_frame(std::string_view bytes, PresenceFrame& out, std::size_t max_members = 100000);

}  // namespace nudge
