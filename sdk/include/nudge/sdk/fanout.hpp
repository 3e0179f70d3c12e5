#pragma once

#include <string_view>

#include "nudge/sdk/history.hpp"
#include "nudge/sdk/message.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// Receives what any instance published on the fanout. Implemented by the
/// runtime; called on the executor.
class FanoutReceiver {
 public:
  virtual ~FanoutReceiver() = default;
  virtual void on_fanout_message(MessagePtr message) = 0;
};

/// The real-time bus between runtime instances (`redis`, `nats`, `memory`):
/// a message published on one instance reaches the receivers of all of them,
/// this one included. Best-effort: a message lost here is still durable in
/// the log, and clients recover it from history.
class Fanout : public Plugin {
 public:
  static constexpr PluginKind kind = PluginKind::fanout;

  /// Connects (or starts connecting, reconnecting in the background) and
  /// starts delivering to `receiver`, which outlives the fanout. A failure
  /// here stops the startup.
  virtual Status start(FanoutReceiver& receiver) = 0;

  /// Publishes to all instances. Never blocks; failures are counted and
  /// logged by the plugin, not reported per message.
  virtual void publish(const MessagePtr& message) = 0;

  /// Whether this instance has clients in `room` (see Ingress::set_room_interest).
  /// A fanout with a single shared channel may ignore it.
  virtual void set_room_interest(std::string_view room, bool interested) = 0;

  /// Whether this fanout keeps a window of each room's recent messages
  /// (read_recent), shared by every instance on the bus.
  virtual bool supports_recent() const { return false; }

  /// The room's most recent messages in the window, oldest first in the
  /// order the bus carried them, at most `query.limit` (`query.after` is
  /// ignored: the runtime looks for it in the answer to learn whether the
  /// window reaches back far enough). Calls `done` on the executor, never
  /// inline. Only called when supports_recent() is true.
  ///
  /// The answer must have no known gap: every message of the room the bus
  /// carried after the answer's first one is in it, or still on its way to
  /// the window. The runtime answers a client from the window alone when it
  /// holds the client's last seen message (or `limit` messages), so a window
  /// that knows it missed a message (dropped or refused on its way) answers
  /// only with what came after that message, or with nothing, and the
  /// runtime reads the sink. Evicting from the oldest end makes no gap. A
  /// window must also stay bounded however many rooms clients make: any
  /// client can name a room.
  virtual void read_recent(HistoryQuery query, HistoryHandler done) {
    (void)query;
    done(Status::error(StatusCode::invalid_argument, "this fanout keeps no recent window"), {});
  }
};

}  // namespace nudge
