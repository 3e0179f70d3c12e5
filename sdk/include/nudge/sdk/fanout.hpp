#pragma once

#include <string_view>

#include "nudge/sdk/history.hpp"
#include "nudge/sdk/message.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/presence.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// Receives what any instance published on the fanout. Implemented by the
/// runtime; called on the executor.
class FanoutReceiver {
 public:
  virtual ~FanoutReceiver() = default;
  virtual void on_fanout_message(MessagePtr message) = 0;

  /// A member joined or left `room`, on any instance (this one included), or
  /// expired because its instance stopped refreshing it (see
  /// Fanout::supports_presence). Each change is reported once per instance
  /// interested in the room; a join already known, or a leave of a member
  /// not known, is not reported. Called on the executor.
  virtual void on_presence(std::string_view room, const PresenceEvent& event) {
    (void)room;
    (void)event;
  }
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

  /// Whether this fanout keeps presence: who is in each room across every
  /// instance on the bus. When true, presence_join/presence_leave are
  /// reported to the receivers of every instance interested in the room
  /// (FanoutReceiver::on_presence), read_presence answers, and a member
  /// whose instance dies (stops without leaving) leaves everyone's list
  /// within the fanout's presence TTL, with a leave event.
  virtual bool supports_presence() const { return false; }

  /// `member` (its `instance` is this instance's id) entered `room`. Kept
  /// until presence_leave, or until this instance stops refreshing it. A
  /// member already in the room is not reported again. Never blocks; the
  /// call is retried or counted by the plugin when the server is away. Only
  /// called when supports_presence() is true, on the executor.
  virtual void presence_join(std::string_view room, const PresenceMember& member) {
    (void)room;
    (void)member;
  }

  /// `member` left `room` (the client left it or disconnected). A member not
  /// in the room is ignored. Never blocks. Only when supports_presence().
  virtual void presence_leave(std::string_view room, const PresenceMember& member) {
    (void)room;
    (void)member;
  }

  /// The room's members on every instance: at most the fanout's bound
  /// (`max_presence_per_room`) of them, and the total count. Calls `done` on
  /// the executor, never inline. Only when supports_presence().
  virtual void read_presence(std::string_view room, PresenceHandler done) {
    (void)room;
    done(Status::error(StatusCode::invalid_argument, "this fanout keeps no presence"), {});
  }
};

}  // namespace nudge
