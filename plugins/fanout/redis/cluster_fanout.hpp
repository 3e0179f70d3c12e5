#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "fanout_metrics.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"
#include "presence_keeper.hpp"
#include "redis_link.hpp"
#include "shard_subscriber.hpp"

struct redisAsyncContext;
struct redisReply;

namespace nudge::plugins::redis {

/// The redis fanout in Redis Cluster mode (`cluster = true`). A room is a
/// hash tag: its channel `<channel_prefix>{room}` and its recent-window keys
/// `<recent_key_prefix>{room}…` share its slot, so one shard owns all of it.
/// Messages go by sharded Pub/Sub: SPUBLISH to the master that owns the slot,
/// SSUBSCRIBE there, so each shard carries only its rooms' traffic.
///
/// Per master: one publishing RedisLink (hiredis async: SPUBLISH, the
/// window's script, XREVRANGE, CLUSTER SHARDS) and one ShardSubscriber. The
/// slot map comes from CLUSTER SHARDS, read at start, after a MOVED, a lost
/// connection or a `sunsubscribe` the server sent on its own, and every
/// 0.1 s while a slot has no reachable master. MOVED and ASK replies
/// are followed (up to 5 redirects a command).
///
/// The window keeps each room alone (its own index and counts, keyed in its
/// slot): recent_messages, recent_max_room_bytes and recent_ttl_s hold per
/// room, while recent_max_bytes and recent_max_rooms cannot be kept across
/// shards (see the README).
class ClusterFanout final : public Fanout {
 public:
  ClusterFanout(const RedisConfig& config, Context& context);
  ~ClusterFanout() override;

  // Fanout
  Status start(FanoutReceiver& receiver) override;
  void publish(const MessagePtr& message) override;
  void set_room_interest(std::string_view room, bool interested) override;
  bool supports_recent() const override { return config_.recent_messages > 0; }
  void read_recent(HistoryQuery query, HistoryHandler done) override;
  bool supports_presence() const override { return true; }
  void presence_join(std::string_view room, const PresenceMember& member) override { presence_->join(room, member); }
  void presence_leave(std::string_view room, const PresenceMember& member) override { presence_->leave(room, member); }
  void read_presence(std::string_view room, PresenceHandler done) override { presence_->read(room, std::move(done)); }
  PresenceKeeper& presence() noexcept { return *presence_; }
  // Plugin
  void stop(std::function<void()> done) override;
  /// Ready when every slot has a master whose publishing connection is up,
  /// and every subscribed connection that holds channels is up.
  Readiness readiness() const override;

  bool connected() const noexcept;
  std::size_t pending() const noexcept { return pending_.size() + redirected_.size(); }
  /// Bytes held for Redis (the held_bytes gauge; at most max_pending_bytes).
  std::size_t held_bytes() const noexcept { return pending_bytes_ + sent_bytes_ + recent_queue_bytes_; }
  /// Masters known, from the last topology read.
  std::size_t masters() const noexcept;
  /// Topology reads that succeeded (for tests).
  std::uint64_t topology_reads() const noexcept { return topology_reads_; }
  /// host:port of the master that owns `room` by the last topology read; empty if none.
  std::string owner_of(std::string_view room) const;

 private:
  struct Node;
  struct Request;
  enum class Kind {
    publish,   // a message, SPUBLISH
    append,    // the recent window's script
    read,      // the recent window, XREVRANGE
    presence,  // the presence script (presence_keeper.hpp)
    frame,     // a presence frame, SPUBLISH on the room's channel
  };

  static void on_reply(redisAsyncContext* ac, void* reply, void* request);
  static void on_shards(redisAsyncContext* ac, void* reply, void* self);
  static void on_script_loaded(redisAsyncContext* ac, void* reply, void* node);
  static void on_presence_script_loaded(redisAsyncContext* ac, void* reply, void* node);
  void load_presence_script(Node& node);

  Node& node(const std::string& address);
  Node* owner(std::uint16_t slot) const;
  bool dispatch(std::unique_ptr<Request>& request, Node* target, bool asking);
  void handle_reply(const redisReply* reply, std::unique_ptr<Request> request);
  void finish(const redisReply* reply, Request& request);
  void fail_request(Request& request, const std::string& why);

  void refresh_topology();
  void refresh_soon();
  void handle_shards(const redisReply* reply);
  void tick();
  bool healthy() const;
  void place_subscriptions();
  std::vector<std::string> wanted_channels() const;

  bool holding() const;
  /// Publishes wait kHandover from now (slots changed owner).
  void hold();
  bool send(const MessagePtr& message);
  void flush();
  /// As in RedisFanout: what a sent message costs against max_pending_bytes,
  /// and whether it may go now (one larger than the bound goes alone).
  std::size_t cost(const Message& message) const;
  bool fits(const Message& message) const;
  void drop_oldest_pending(const char* limit);
  /// A request is answered or lost: what it held is free.
  void release(Request& request);
  void update_held();
  void remember(const MessagePtr& message);
  void schedule_append();
  void append_recent();
  void note_gap(const std::string& room, const MessageId& id);
  void update_connected();

  RedisConfig config_;
  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  bool stopping_ = false;

  FanoutMetrics metrics_;
  Counter& redirects_;
  Counter& topology_changes_;

  std::map<std::string, std::unique_ptr<Node>> nodes_;  // by host:port
  std::vector<std::unique_ptr<Node>> retired_;          // serve nothing any more; freed from the loop
  std::set<std::string> seeds_;                         // never forgotten: where a topology read can start
  std::vector<Node*> slots_;                            // owner of each slot, by the last topology read
  std::map<std::string, Node*> placed_;                 // channel -> node subscribed to it there
  std::set<std::string, std::less<>> rooms_;
  std::uint64_t topology_reads_ = 0;
  bool refresh_in_flight_ = false;
  bool refresh_armed_ = false;
  std::size_t next_probe_ = 0;
  boost::asio::steady_timer refresh_timer_;
  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer hold_timer_;
  /// Publishes wait until then after slots changed owner (kHandover).
  std::chrono::steady_clock::time_point hold_until_{};

  std::deque<MessagePtr> pending_;
  std::deque<MessagePtr> redirected_;  // refused with MOVED: resent first after the hold
  std::size_t in_flight_ = 0;
  std::size_t window_;
  std::size_t max_bytes_;
  std::size_t pending_bytes_ = 0;  // pending_ and redirected_
  std::size_t sent_bytes_ = 0;     // SPUBLISHes and window calls handed to hiredis, not answered
  std::size_t recent_queue_bytes_ = 0;
  /// A send waited for bytes to be answered: replies flush.
  bool bytes_full_ = false;

  bool append_scheduled_ = false;
  std::deque<MessagePtr> recent_queue_;
  std::unordered_map<std::string, MessageId> gaps_;

  LogLimiter publish_error_log_{std::chrono::seconds(10)};
  LogLimiter decode_error_log_{std::chrono::seconds(10)};
  LogLimiter drop_log_{std::chrono::seconds(10)};
  LogLimiter append_error_log_{std::chrono::seconds(10)};
  LogLimiter topology_log_{std::chrono::seconds(10)};
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::unique_ptr<PresenceKeeper> presence_;
};

}  // namespace nudge::plugins::redis
