#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nudge/sdk/message.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// A read of past messages of one room: history for a client that joins,
/// and what a reconnecting client missed. Answered by a sink
/// (Sink::read_history), a fanout's recent window (Fanout::read_recent), and
/// for sources by the runtime, which combines the two (Ingress::read_history).
struct HistoryQuery {
  std::string room;
  /// At most this many messages.
  std::size_t limit = 50;
  /// Without it: the room's last `limit` messages. With it: the messages
  /// stored after this id (by id order, which is time order), oldest first,
  /// up to `limit` — how a reconnecting client catches up.
  std::optional<MessageId> after;
};

/// Receives the messages a history read found, oldest first (ordered by id).
using HistoryHandler = std::function<void(Status, std::vector<MessagePtr>)>;

}  // namespace nudge
