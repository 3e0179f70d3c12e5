#include "nats_fanout.hpp"

#include <utility>

#include <boost/asio/post.hpp>

namespace nudge::plugins::nats {

namespace {

constexpr auto kReminderInterval = std::chrono::seconds(30);

}  // namespace

NatsFanout::NatsFanout(const Config& config, Context& context)
    : config_(NatsConfig::from(config)),
      context_(context),
      published_(context.metrics().counter(
          "published", "Messages handed to the NATS client (sent, or held in its reconnect buffer)")),
      publish_errors_(context.metrics().counter("publish_errors", "Publishes the NATS client refused")),
      received_(context.metrics().counter("received", "Messages received from NATS and handed to the pipeline")),
      decode_errors_(context.metrics().counter("decode_errors", "Payloads on the subject that were not envelopes")),
      reconnects_(context.metrics().counter("reconnects", "Connections re-established after being lost")),
      failovers_(context.metrics().counter(
          "failovers", "Reconnections that went to another server than the one lost (another node of the cluster)")),
      dropped_(context.metrics().counter(
          "dropped_while_disconnected",
          "Messages dropped because reconnect_buffer_bytes were already waiting, or still waiting at stop")),
      slow_consumer_events_(context.metrics().counter(
          "slow_consumer_events", "Times received messages started being dropped because the receiver fell behind")),
      dropped_slow_consumer_(context.metrics().counter(
          "dropped_slow_consumer",
          "Received messages dropped because max_pending_messages were waiting (for the event loop, or in libnats)")),
      connected_(context.metrics().gauge("connected", "1 while connected to a NATS server, else 0")),
      reminder_(context.executor()),
      roster_(
          PresenceRoster::Settings{std::string(context.instance_id()),
                                   std::chrono::milliseconds(config_.presence_ttl_ms),
                                   static_cast<std::size_t>(config_.max_presence_per_room)},
          [this](const std::string& room, std::string frame) {
            if (link_ && !link_->publish_frame(room, std::move(frame))) dropped_.add();
          },
          [this](const std::string& room, const PresenceEvent& event) {
            // Posted: a join or leave is never reported inside the call that made it.
            boost::asio::post(context_.executor(), [this, alive = std::weak_ptr<int>(alive_), room, event] {
              if (!alive.expired() && receiver_) receiver_->on_presence(room, event);
            });
          }),
      presence_timer_(context.executor()) {}

NatsFanout::~NatsFanout() {
  receiver_ = nullptr;
  presence_timer_.cancel();
  link_.reset();  // waits for libnats when stop() has not run
}

std::int64_t NatsFanout::ms_since(std::chrono::steady_clock::time_point t) const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

std::string NatsFanout::suppressed_note(std::uint64_t suppressed) const {
  return suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : std::string();
}

Status NatsFanout::start(FanoutReceiver& receiver) {
  if (!config_.error.empty()) return Status::error(StatusCode::invalid_argument, config_.error);
  if (link_) return Status::error(StatusCode::internal, "the nats fanout was started twice");
  receiver_ = &receiver;
  link_ = std::make_unique<NatsLink>(
      config_, context_, static_cast<NatsLink::Listener&>(*this),
      NatsLink::Counters{published_, publish_errors_, dropped_, slow_consumer_events_, dropped_slow_consumer_});
  if (Status s = link_->start(); !s.ok()) {
    link_.reset();
    receiver_ = nullptr;
    return s;
  }
  down_since_ = std::chrono::steady_clock::now();
  if (config_.subject_per_room) {
    context_.logger().info("using per-room subjects '", config_.subject_prefix, "<room>' on nats at '",
                           config_.endpoints(), "'");
    for (const auto& room : rooms_) link_->subscribe(config_.subject_for(room));
  } else {
    context_.logger().info("using subject '", config_.subject, "' on nats at '", config_.endpoints(), "'");
    link_->subscribe(config_.subject);
  }
  schedule_presence();
  return Status::success();
}

void NatsFanout::schedule_presence() {
  // Sweeps every ttl/6; announces own members every other tick (ttl/3).
  presence_timer_.expires_after(
      std::max(std::chrono::milliseconds(config_.presence_ttl_ms / 6), std::chrono::milliseconds(20)));
  presence_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired() || stopping_) return;
    roster_.tick(++presence_ticks_ % 2 == 0, std::chrono::steady_clock::now());
    schedule_presence();
  });
}

void NatsFanout::presence_join(std::string_view room, const PresenceMember& member) {
  if (!stopping_) roster_.join(room, member);
}

void NatsFanout::presence_leave(std::string_view room, const PresenceMember& member) {
  if (!stopping_) roster_.leave(room, member);
}

void NatsFanout::read_presence(std::string_view room, PresenceHandler done) {
  boost::asio::post(context_.executor(), [done = std::move(done), list = roster_.list(room)]() mutable {
    done(Status::success(), std::move(list));
  });
}

void NatsFanout::publish(const MessagePtr& message) {
  if (stopping_ || !message || !link_) return;
  if (link_->publish(message)) return;
  dropped_.add();
  std::uint64_t suppressed = 0;
  if (drop_log_.allow(suppressed))
    context_.logger().warn("dropping messages: the nats client's thread is behind or waiting for nats at '",
                           config_.endpoints(), "', and ", config_.reconnect_buffer_bytes,
                           " bytes are waiting for it already (reconnect_buffer_bytes); ", dropped_.value(),
                           " dropped so far");
}

void NatsFanout::set_room_interest(std::string_view room, bool interested) {
  if (stopping_) return;
  if (interested ? interest_.emplace(room).second : interest_.erase(std::string(room)) > 0)
    roster_.set_interest(room, interested);
  if (!config_.subject_per_room) return;
  if (interested) {
    if (rooms_.emplace(room).second && link_) link_->subscribe(config_.subject_for(room));
  } else if (auto it = rooms_.find(room); it != rooms_.end()) {
    rooms_.erase(it);
    if (link_) link_->unsubscribe(config_.subject_for(room));
  }
}

void NatsFanout::on_inbound(std::vector<Inbound>& batch) {
  for (Inbound& inbound : batch) {
    if (inbound.presence) {
      roster_.on_frame(*inbound.presence, std::chrono::steady_clock::now());
      continue;
    }
    if (!inbound.message) {
      decode_errors_.add();
      std::uint64_t suppressed = 0;
      if (decode_error_log_.allow(suppressed))
        context_.logger().warn("ignored a ", inbound.bytes, "-byte payload on subject '", inbound.subject,
                               "' that is not a Nudge envelope: ", inbound.error, suppressed_note(suppressed));
      continue;
    }
    // A room left a moment ago: its subscription may still hand over a few.
    if (config_.subject_per_room && !rooms_.contains(inbound.message->room)) continue;
    received_.add();
    if (receiver_) receiver_->on_fanout_message(std::move(inbound.message));
  }
}

Readiness NatsFanout::readiness() const {
  if (connected_state_) return Readiness::yes();
  const std::string where = server_url_.empty() ? config_.endpoints() : server_url_;
  return Readiness::no("no connection to NATS at '" + where + "'" +
                       (down_reason_.empty() ? std::string(" yet") : ": " + down_reason_));
}

void NatsFanout::set_connected(bool up) {
  connected_state_ = up;
  connected_.set(up ? 1 : 0);
  if (up) {
    outage_logged_ = false;
    reminder_.cancel();
    return;
  }
  down_since_ = std::chrono::steady_clock::now();
  remind_while_down();
}

void NatsFanout::remind_while_down() {
  reminder_.expires_after(kReminderInterval);
  reminder_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || connected_state_ || stopping_) return;
    context_.logger().warn("the connection to nats at '", server_url_.empty() ? config_.endpoints() : server_url_,
                           "' is still down after ", ms_since(down_since_), " ms; retrying every ",
                           config_.reconnect_wait_ms, " ms");
    remind_while_down();
  });
}

void NatsFanout::on_link_event(LinkEvent event, const std::string& detail) {
  if (stopping_) return;
  std::uint64_t suppressed = 0;
  switch (event) {
    case LinkEvent::connected:
      if (ever_connected_) {
        // A new connection after libnats gave up on the previous one.
        note_reconnect(detail);
        return;
      }
      if (!detail.empty()) server_url_ = detail;
      if (outage_logged_) {
        context_.logger().info("connected to nats at '", server_url_, "' after ", ms_since(down_since_), " ms");
      } else {
        context_.logger().info("connected to nats at '", server_url_, "'");
      }
      ever_connected_ = true;
      set_connected(true);
      return;
    case LinkEvent::connect_failed:
      // The background retry may have won the race with this report.
      if (connected_state_) return;
      down_reason_ = detail.empty() ? "cannot connect" : detail;
      if (outage_logged_) {
        context_.logger().debug("a new connection to nats at '", config_.endpoints(), "' failed: ", detail);
        return;
      }
      context_.logger().warn("cannot connect to nats at '", config_.endpoints(), "': ", detail, "; retrying every ",
                             config_.reconnect_wait_ms, " ms in the background");
      outage_logged_ = true;
      set_connected(false);
      return;
    case LinkEvent::disconnected:
      if (!connected_state_) return;
      down_reason_ = detail.empty() ? "the connection was lost" : detail;
      if (lost_log_.allow(suppressed))
        context_.logger().warn("lost the connection to nats at '", server_url_, "'",
                               detail.empty() ? std::string() : " (" + detail + ")",
                               "; reconnecting in the background (publishes are held in a buffer of ",
                               config_.reconnect_buffer_bytes, " bytes)", suppressed_note(suppressed));
      outage_logged_ = true;
      set_connected(false);
      return;
    case LinkEvent::reconnected:
      note_reconnect(detail);
      return;
    case LinkEvent::slow_consumer:
      if (slow_consumer_log_.allow(suppressed))
        context_.logger().warn("slow consumer: ", detail, "; ", dropped_slow_consumer_.value(),
                               " received messages dropped so far", suppressed_note(suppressed));
      return;
    case LinkEvent::async_error:
      if (async_error_log_.allow(suppressed))
        context_.logger().warn("nats reported an error: ", detail, suppressed_note(suppressed));
      return;
  }
}

void NatsFanout::note_reconnect(const std::string& url) {
  const std::string lost = server_url_;
  if (!url.empty()) server_url_ = url;
  reconnects_.add();
  // libnats tries the other servers of the list (and those the cluster
  // announced) before the lost one: a node that died is failed over.
  const bool failover = !url.empty() && !lost.empty() && url != lost;
  if (failover) failovers_.add();
  std::uint64_t suppressed = 0;
  if (reconnect_log_.allow(suppressed))
    context_.logger().info(
        "reconnected to nats at '", server_url_, "' after ", ms_since(down_since_), " ms",
        failover ? " (failed over from '" + lost + "'; " + std::to_string(failovers_.value()) + " failovers so far)"
                 : std::string(),
        suppressed_note(suppressed));
  set_connected(true);
}

void NatsFanout::stop(std::function<void()> done) {
  roster_.leave_all();  // the leaves are queued ahead of the link's stop
  presence_timer_.cancel();
  stopping_ = true;
  receiver_ = nullptr;
  reminder_.cancel();
  if (!link_) {
    boost::asio::post(context_.executor(), std::move(done));
    return;
  }
  link_->stop([this, done = std::move(done)] {
    connected_state_ = false;
    connected_.set(0);
    done();
  });
}

}  // namespace nudge::plugins::nats
