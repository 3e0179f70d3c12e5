#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"
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
  void read_recent(HistoryQuery query, HistoryHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Not ready unless both connections (publishing, subscribed) are up.
  Readiness readiness() const override;

  /// Both connections are up (for tests and the `connected` gauge).
  bool connected() const noexcept;
  /// Messages held for the publishing connection, not sent yet.
  std::size_t pending() const noexcept { return pending_.size(); }

 private:
  static void on_publish_reply(redisAsyncContext* ac, void* reply, void* self);
  static void on_subscription_reply(redisAsyncContext* ac, void* reply, void* self);
  static void on_recent_reply(redisAsyncContext* ac, void* reply, void* request);
  /// Appends the message to its room's stream of recent messages (pipelined behind the PUBLISH).
  void remember(redisAsyncContext* ac, const MessagePtr& message, const std::string& envelope);

  bool send(const MessagePtr& message);
  void flush(bool ignore_window);
  void handle_publish_reply(const redisReply* reply);
  void handle_subscription_reply(const redisReply* reply);
  void subscribe(const std::vector<std::string>& channels);
  void unsubscribe(const std::string& channel);
  void update_connected();

  RedisConfig config_;
  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  bool stopping_ = false;

  Counter& published_;
  Counter& publish_errors_;
  Counter& received_;
  Counter& decode_errors_;
  Counter& reconnects_;
  Counter& dropped_;
  Gauge& connected_;

  std::deque<MessagePtr> pending_;  // waiting for the publishing connection
  std::size_t in_flight_ = 0;       // PUBLISHes sent, reply not yet read
  std::size_t window_;              // max in flight, and max pending
  std::set<std::string, std::less<>> rooms_;
  /// When each room's stream last had its expiry pushed back (once a minute at most).
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> recent_expiry_set_;

  LogLimiter publish_error_log_{std::chrono::seconds(10)};
  LogLimiter decode_error_log_{std::chrono::seconds(10)};
  LogLimiter drop_log_{std::chrono::seconds(10)};

  std::unique_ptr<RedisLink> publisher_;
  std::unique_ptr<RedisLink> subscriber_;
};

}  // namespace nudge::plugins::redis
