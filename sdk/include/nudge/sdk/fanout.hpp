#pragma once

#include <string_view>

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
};

}  // namespace nudge
