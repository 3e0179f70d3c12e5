#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "nats_link.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"
#include "presence_roster.hpp"

namespace nudge::plugins::nats {

/// The NATS fanout: each message is published as its envelope bytes on one
/// subject (or on one subject per room), and a subscription on the same
/// connection hands every message on it (or on the rooms this instance has
/// clients in) back to the receiver. Best-effort and at-most-once: what NATS
/// does not deliver is lost here and recovered from the log's history.
///
/// libnats does the I/O on its own threads and reconnects forever by
/// itself, restoring the subscriptions; publishes made while it is
/// disconnected are held in its reconnect buffer (reconnect_buffer_bytes)
/// and sent on reconnect, and dropped and counted once it is full. See
/// NatsLink for how the event loop is kept from blocking.
class NatsFanout final : public Fanout, private NatsLink::Listener {
 public:
  NatsFanout(const Config& config, Context& context);
  ~NatsFanout() override;
  static ConfigSchema schema() { return NatsConfig::schema(); }

  // Fanout
  Status start(FanoutReceiver& receiver) override;
  void publish(const MessagePtr& message) override;
  void set_room_interest(std::string_view room, bool interested) override;
  /// Presence by announcements on the rooms' subjects (presence_roster.hpp).
  bool supports_presence() const override { return true; }
  void presence_join(std::string_view room, const PresenceMember& member) override;
  void presence_leave(std::string_view room, const PresenceMember& member) override;
  void read_presence(std::string_view room, PresenceHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Not ready while disconnected from every server.
  Readiness readiness() const override;

  /// Connected to a server (for tests and the `connected` gauge).
  bool connected() const noexcept { return connected_state_; }
  /// The server connected to last, as `nats://host:port` (for tests).
  const std::string& server_url() const noexcept { return server_url_; }
  /// Envelope bytes of the publishes not yet handed to libnats (for tests).
  std::size_t waiting_bytes() const { return link_ ? link_->queued_bytes() : 0; }

 private:
  // NatsLink::Listener
  void on_inbound(std::vector<Inbound>& batch) override;
  void on_link_event(LinkEvent event, const std::string& detail) override;

  void set_connected(bool up);
  /// A connection is back after a loss, to `url` (empty when unknown).
  void note_reconnect(const std::string& url);
  void remind_while_down();
  void schedule_presence();
  std::int64_t ms_since(std::chrono::steady_clock::time_point t) const;
  std::string suppressed_note(std::uint64_t suppressed) const;

  NatsConfig config_;
  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  bool stopping_ = false;

  Counter& published_;
  Counter& publish_errors_;
  Counter& received_;
  Counter& decode_errors_;
  Counter& reconnects_;
  Counter& failovers_;
  Counter& dropped_;
  Counter& slow_consumer_events_;
  Counter& dropped_slow_consumer_;
  Gauge& connected_;

  std::set<std::string, std::less<>> rooms_;
  bool connected_state_ = false;
  bool ever_connected_ = false;
  bool outage_logged_ = false;  // the current outage was logged once already
  std::string server_url_;      // the server last connected to, for log lines
  std::string down_reason_;     // why the last connect failed or the connection was lost
  std::chrono::steady_clock::time_point down_since_{};
  boost::asio::steady_timer reminder_;

  LogLimiter decode_error_log_{std::chrono::seconds(10)};
  LogLimiter drop_log_{std::chrono::seconds(10)};
  LogLimiter slow_consumer_log_{std::chrono::seconds(10)};
  LogLimiter async_error_log_{std::chrono::seconds(10)};
  // A flapping server or cluster node would otherwise log two lines per flap.
  LogLimiter lost_log_{std::chrono::seconds(10)};
  LogLimiter reconnect_log_{std::chrono::seconds(10)};

  std::unique_ptr<NatsLink> link_;
  PresenceRoster roster_;
  boost::asio::steady_timer presence_timer_;
  std::uint64_t presence_ticks_ = 0;
  std::set<std::string, std::less<>> interest_;  // every room, whatever subject_per_room
  /// Posted presence reports hold a weak_ptr to this and do nothing once it expired.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nudge::plugins::nats
