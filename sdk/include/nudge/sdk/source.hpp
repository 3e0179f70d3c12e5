#pragma once

#include <functional>
#include <string_view>

#include "nudge/sdk/history.hpp"
#include "nudge/sdk/message.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/presence.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// The pipeline as a source sees it. Implemented by the runtime; valid from
/// Source::start until the source's stop completes. Call only on the executor.
class Ingress {
 public:
  virtual ~Ingress() = default;

  /// Hands a message taken in from a client to the pipeline (fanout, then log
  /// or sink). `on_durable` runs once the message is durable — appended to the
  /// log, or written by the sink where there is no log — with an ok Status,
  /// or with the failure that the sender must be told about. Never blocks.
  virtual void publish(MessagePtr message, Completion on_durable) = 0;

  /// Runs `resume` on the executor as soon as the pipeline has room for
  /// another message (posted, never inline). A source calls it before reading
  /// the next message from a client, so a full pipeline stops reading from
  /// clients instead of buffering without limit (backpressure).
  virtual void when_ready(std::function<void()> resume) = 0;

  /// Tells the fanout whether this instance has local clients in `room`, so a
  /// fanout with one channel per room subscribes only to rooms that matter.
  /// Call with true when a room's first local client joins and false when its
  /// last one leaves.
  virtual void set_room_interest(std::string_view room, bool interested) = 0;

  /// Whether read_history can answer: the pipeline has a sink that keeps
  /// history (Sink::supports_history) or a fanout with a recent window
  /// (Fanout::supports_recent). Without either, clients joining a room get
  /// no past messages, and a reconnecting client cannot catch up.
  virtual bool has_history() const = 0;

  /// Reads a room's past messages for a client: its last `limit` on joining,
  /// or what it missed after `query.after` on reconnecting. Served from the
  /// fanout's recent window when it holds them (Fanout::read_recent), else
  /// from the sink, merged with the window so messages the sink has not
  /// written yet are not missed. Answers on the executor (never inline),
  /// oldest first by id, each message once. Only when has_history().
  virtual void read_history(HistoryQuery query, HistoryHandler done) = 0;

  /// Whether the pipeline keeps presence (its fanout does, see
  /// Fanout::supports_presence). Without it the calls below do nothing and
  /// read_presence fails.
  virtual bool has_presence() const { return false; }

  /// The client connection `connection` (unique on this instance) of `user`
  /// entered `room`. Every instance interested in the room, this one
  /// included, hears of it through Source::deliver_presence. Call once per
  /// connection and room; call presence_leave when it leaves the room or
  /// disconnects. Never blocks.
  virtual void presence_join(std::string_view room, std::string_view user, std::string_view connection) {
    (void)room;
    (void)user;
    (void)connection;
  }

  /// The matching leave of presence_join. Never blocks.
  virtual void presence_leave(std::string_view room, std::string_view user, std::string_view connection) {
    (void)room;
    (void)user;
    (void)connection;
  }

  /// The room's members on every instance, at most the fanout's bound of
  /// them plus the total count. Answers on the executor, never inline.
  virtual void read_presence(std::string_view room, PresenceHandler done) {
    (void)room;
    done(Status::error(StatusCode::invalid_argument, "this pipeline keeps no presence"), {});
  }
};

/// Takes messages in from the outside world and delivers messages to its
/// local clients (`websocket`).
class Source : public Plugin {
 public:
  static constexpr PluginKind kind = PluginKind::source;

  /// Opens listeners. A failure (port in use) stops the startup with its
  /// message. `ingress` outlives the source.
  virtual Status start(Ingress& ingress) = 0;

  /// Delivers a message to every local client in `message->room`. Called for
  /// each message that the fanout hands back (the sender's own included), or,
  /// with no fanout, for each message this instance published.
  virtual void deliver(const MessagePtr& message) = 0;

  /// Delivers a presence change of `room` (any instance's, this one's
  /// included) to the local clients in that room. Called on the executor
  /// for each event the fanout reports (FanoutReceiver::on_presence). A
  /// source that offers no presence ignores it.
  virtual void deliver_presence(std::string_view room, const PresenceEvent& event) {
    (void)room;
    (void)event;
  }

  /// First step of a graceful stop: stop accepting connections and reading
  /// new messages, but keep connections open so acknowledgements of messages
  /// in flight still reach their senders. `stop()` follows once the pipeline
  /// has drained.
  virtual void stop_intake() = 0;
};

}  // namespace nudge
