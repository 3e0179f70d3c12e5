#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "cluster_fanout.hpp"
#include "config.hpp"
#include "fanout_metrics.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"
#include "presence_keeper.hpp"
#include "redis_link.hpp"

struct redisAsyncContext;
struct redisReply;

namespace nudge::plugins::redis {

/// The Redis Pub/Sub fanout: each message is PUBLISHed as its envelope bytes
/// on one connection, and a second, subscribed connection hands every message
/// on the channel (or on the rooms this instance has clients in) back to the
/// receiver. Best-effort and at-most-once: what Redis does not deliver is
/// lost here and recovered from the log's history.
///
/// Both connections run on the Context's executor through hiredis's async API
/// and reconnect with backoff on their own; publishes are pipelined, and held
/// (up to max_pending_publishes, oldest dropped first) while the publishing
/// connection is down.
///
/// Everything held for Redis counts against max_pending_bytes: messages
/// waiting, PUBLISHes handed to hiredis and not answered, messages waiting for
/// the window and window calls not answered. A Redis that hangs with the
/// connection open answers nothing, so sends stop at the bound and the oldest
/// waiting messages are dropped, and after reply_timeout_ms without an answer
/// the publishing connection is dropped and reconnected.
///
/// The recent window: what one loop turn published is appended by one call of
/// the window's Lua script (recent_window.hpp), which also keeps the window
/// within its bounds. A message known to be missing from its room's window
/// (dropped while Redis was away, refused, or in a call lost with the
/// connection) is a gap: the next call sent cuts that room's window (deletes
/// what it holds, and keeps out anything older than the gap that arrives
/// later) before it appends anything to it, so the window does not answer
/// across the gap. Until the cut has run — a round trip after the failure is
/// known, or the reconnect — a read may still be answered across it.
class RedisFanout final : public Fanout {
 public:
  RedisFanout(const Config& config, Context& context);
  ~RedisFanout() override;
  static ConfigSchema schema() { return RedisConfig::schema(); }

  // Fanout
  Status start(FanoutReceiver& receiver) override;
  void publish(const MessagePtr& message) override;
  void set_room_interest(std::string_view room, bool interested) override;
  bool supports_recent() const override { return config_.recent_messages > 0; }
  /// In cluster mode (`cluster = true`) every call goes to this instead.
  ClusterFanout* cluster() noexcept { return cluster_.get(); }
  void read_recent(HistoryQuery query, HistoryHandler done) override;
  /// Presence in Redis sorted sets (presence_keeper.hpp).
  bool supports_presence() const override { return true; }
  void presence_join(std::string_view room, const PresenceMember& member) override;
  void presence_leave(std::string_view room, const PresenceMember& member) override;
  void read_presence(std::string_view room, PresenceHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Not ready unless both connections (publishing, subscribed) are up.
  Readiness readiness() const override;

  /// Both connections are up (for tests and the `connected` gauge).
  bool connected() const noexcept;
  /// Messages held for the publishing connection, not sent yet.
  std::size_t pending() const noexcept { return pending_.size(); }
  /// Bytes held for Redis (the held_bytes gauge; at most max_pending_bytes).
  std::size_t held_bytes() const noexcept { return pending_bytes_ + sent_bytes(); }
  /// Messages published but not yet confirmed appended to the recent window
  /// (waiting, or in the call in flight), and rooms waiting to be cut.
  std::size_t recent_backlog() const noexcept { return recent_queue_.size() + messages_in_flight_; }
  /// The presence keeper of either mode (tests: tick_now, local_members).
  PresenceKeeper& presence() noexcept;
  std::size_t recent_gaps() const noexcept { return gaps_.size() + (cut_all_ ? 1 : 0) + cuts_in_flight_; }

 private:
  static void on_publish_reply(redisAsyncContext* ac, void* reply, void* self);
  static void on_subscription_reply(redisAsyncContext* ac, void* reply, void* self);
  static void on_recent_reply(redisAsyncContext* ac, void* reply, void* request);
  static void on_append_reply(redisAsyncContext* ac, void* reply, void* self);
  static void on_script_loaded(redisAsyncContext* ac, void* reply, void* self);

  // The recent window.
  enum class AppendState {
    ready,        // calls go as soon as there is something to send (a few in flight)
    backing_off,  // calls were refused twice in a row; waiting before the next
  };
  /// Queues the message for the window's next call (sent at the end of this loop turn).
  void remember(const MessagePtr& message);
  /// Sends calls while there is something to send, fewer than
  /// kAppendCallsInFlight are in flight and the connection is up; `at_stop`
  /// sends everything left.
  void append_recent(bool at_stop = false);
  void load_script();
  void schedule_append();
  struct AppendCall;
  void handle_append_reply(const redisReply* reply, AppendCall& call);
  /// A message of `room` as new as `id` may be missing from its window: cut that window.
  void note_gap(const std::string& room, const MessageId& id);
  /// What a failed call carried becomes gaps again.
  void regap(AppendCall& call);

  bool send(const MessagePtr& message);
  void flush(bool ignore_window);
  /// What a message costs against max_pending_bytes once sent: its PUBLISH,
  /// and its place in the recent window's queue and call.
  std::size_t cost(const Message& message) const;
  /// Bytes handed to hiredis and not answered, or waiting for the window.
  std::size_t sent_bytes() const noexcept { return in_flight_bytes_ + recent_queue_bytes_ + append_in_flight_bytes_; }
  /// The message may go now without the fanout holding more than max_pending_bytes
  /// (one message larger than that goes alone).
  bool fits(const Message& message) const;
  void drop_oldest_pending(const char* limit);
  void update_held();
  /// A command goes on the publishing connection: the reply watchdog runs.
  void note_sent();
  void note_answered();
  void arm_reply_timer();
  void handle_publish_reply(const redisReply* reply);
  void handle_subscription_reply(const redisReply* reply);
  void subscribe(const std::vector<std::string>& channels);
  void unsubscribe(const std::string& channel);
  void update_connected();
  /// Runs the presence script on the publishing connection.
  bool eval_presence(const std::string& key, std::vector<std::string> args,
                     std::function<void(const redisReply*)> done);
  void load_presence_script();
  void publish_frame(const std::string& room, std::string frame);

  RedisConfig config_;
  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  bool stopping_ = false;

  FanoutMetrics metrics_;

  std::deque<MessagePtr> pending_;  // waiting for the publishing connection
  std::size_t in_flight_ = 0;       // PUBLISHes sent, reply not yet read
  std::size_t window_;              // max in flight, and max pending
  std::size_t max_bytes_;           // max_pending_bytes
  std::size_t pending_bytes_ = 0;
  std::size_t in_flight_bytes_ = 0;
  /// Sizes of the PUBLISHes in flight: replies come in the order they went.
  std::deque<std::size_t> in_flight_sizes_;
  std::size_t recent_queue_bytes_ = 0;
  std::size_t append_in_flight_bytes_ = 0;
  /// The last reply on the publishing connection, or the send that started a
  /// wait for one; reply_timeout_ms after it, with a command unanswered, the
  /// connection is dropped.
  std::chrono::steady_clock::time_point last_answer_{};
  bool reply_timer_armed_ = false;
  boost::asio::steady_timer reply_timer_;
  Counter& reply_timeouts_;
  std::set<std::string, std::less<>> rooms_;

  Gauge& recent_bytes_;
  Gauge& recent_rooms_;
  AppendState append_state_ = AppendState::ready;
  std::size_t calls_in_flight_ = 0;
  bool append_scheduled_ = false;
  std::deque<MessagePtr> recent_queue_;  // published, not yet sent to the window
  /// Rooms whose window misses a message, with the newest such id; cut by the next call.
  std::unordered_map<std::string, MessageId> gaps_;
  /// More rooms had gaps than the window holds rooms: every window is cut.
  std::optional<MessageId> cut_all_;
  std::size_t messages_in_flight_ = 0;  // in calls sent, not answered
  std::size_t cuts_in_flight_ = 0;
  std::string script_sha_;    // from SCRIPT LOAD on this connection; EVAL until known
  std::string presence_sha_;  // the presence script's, likewise
  std::int64_t append_backoff_ms_ = 0;
  boost::asio::steady_timer append_retry_timer_;
  LogLimiter append_error_log_{std::chrono::seconds(10)};
  /// Posted handlers hold a weak_ptr to this and do nothing once it expired.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  LogLimiter publish_error_log_{std::chrono::seconds(10)};
  LogLimiter decode_error_log_{std::chrono::seconds(10)};
  LogLimiter drop_log_{std::chrono::seconds(10)};

  std::unique_ptr<RedisLink> publisher_;
  std::unique_ptr<RedisLink> subscriber_;
  std::unique_ptr<ClusterFanout> cluster_;
  std::unique_ptr<PresenceKeeper> presence_;  // standalone mode; the cluster has its own
};

}  // namespace nudge::plugins::redis
