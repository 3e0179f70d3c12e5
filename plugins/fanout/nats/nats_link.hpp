#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/message.hpp"
#include "nudge/sdk/presence.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge::plugins::nats {

/// A message received from NATS, decoded off the event loop.
struct Inbound {
  /// Null when the payload was not an envelope; then `error` says why.
  std::shared_ptr<Message> message;
  /// A presence frame instead of an envelope (message null, error empty).
  std::optional<PresenceFrame> presence;
  std::string error;
  std::string subject;
  std::size_t bytes = 0;
};

/// What the link reports to its listener (on the executor).
enum class LinkEvent {
  connected,       ///< a new connection is up; detail: the server's URL
  connect_failed,  ///< the first attempt of a new connection failed (detail: why); retrying in the background
  disconnected,    ///< the connection was lost (detail: why, when known); reconnecting in the background
  reconnected,     ///< libnats reconnected after a loss; detail: the server's URL
  slow_consumer,   ///< received messages were dropped (detail: where)
  async_error,     ///< another error reported by libnats (detail: what)
};

/// One libnats connection (natsConnection) used from the event loop without
/// ever blocking it.
///
/// Every libnats call that may block (connect, publish, subscribe, flush,
/// close) runs on the link's own thread, fed through a queue; publishes
/// wait there while the thread is busy, up to reconnect_buffer_bytes.
/// libnats's own threads (reconnect, socket reader, flusher, message
/// delivery, callbacks) only decode, count, and post to the executor; they
/// never touch the listener. The state they share with the link is held by
/// shared_ptr, and stop() returns only once libnats has stopped calling
/// back (the connection's closed callback and each subscription's
/// completion callback have run), so the plugin can be destroyed then.
///
/// libnats reconnects by itself; when it gives up on a connection (it does
/// after a failed handshake on the first connect, or when a server refuses
/// the credentials twice) the link makes a new one after reconnect_wait_ms,
/// and subscribes again.
///
/// Everything public is called on the Context's executor.
class NatsLink {
 public:
  /// Implemented by the fanout; called on the executor while the link lives.
  class Listener {
   public:
    virtual void on_inbound(std::vector<Inbound>& batch) = 0;
    virtual void on_link_event(LinkEvent event, const std::string& detail) = 0;

   protected:
    ~Listener() = default;
  };

  /// Counted on the link's and libnats's threads (counters are atomic).
  struct Counters {
    Counter& published;
    Counter& publish_errors;
    Counter& dropped;
    Counter& slow_consumer_events;
    Counter& dropped_slow_consumer;
  };

  NatsLink(const NatsConfig& config, Context& context, Listener& listener, Counters counters);
  /// When stop() has not completed, closes the connection first and waits
  /// for it (blocking, bounded by the close timeouts); nothing reaches the
  /// listener any more.
  ~NatsLink();
  NatsLink(const NatsLink&) = delete;
  NatsLink& operator=(const NatsLink&) = delete;

  /// Builds the client options and starts connecting on the link's thread.
  /// Fails only when libnats refuses the options.
  Status start();
  /// Queues a publish; false when reconnect_buffer_bytes are already waiting
  /// for the link's thread (the message is not taken).
  bool publish(const MessagePtr& message);
  /// Queues a presence frame for the room's subject, like publish.
  bool publish_frame(const std::string& room, std::string frame);
  /// Subscribes to `subject` (idempotent); messages come to on_inbound.
  void subscribe(const std::string& subject);
  void unsubscribe(const std::string& subject);
  /// Envelope bytes of the publishes waiting for the link's thread.
  std::size_t queued_bytes() const;
  /// Publishes what is queued (when connected), unsubscribes, flushes with a
  /// short timeout, closes and destroys the connection, waits until libnats
  /// calls back no more, then posts `done`. Nothing reaches the listener
  /// after `done`.
  void stop(std::function<void()> done);

  struct Shared;

 private:
  void drain();
  void deliver_event(LinkEvent event, const std::string& detail);
  void finish_stop(std::function<void()> done);

  Listener& listener_;
  std::shared_ptr<Shared> shared_;
  std::thread thread_;
  std::vector<Inbound> spare_;
  /// Handlers posted to the executor hold a weak_ptr to this and do nothing
  /// once the link is gone.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nudge::plugins::nats
