#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"

struct redisReply;

namespace nudge::plugins::redis {

/// Presence kept in Redis, for both modes of the fanout (one server, a
/// cluster). Each room is a sorted set `<presence_key_prefix><room>` (the
/// room a hash tag in cluster mode, so the set lives on the room's shard):
/// one entry per member, scored by the server's clock (TIME) at which it
/// expires. This instance refreshes its own members every ttl/3 (one call
/// per room, which answers the set's count too); every ttl/6 each instance
/// sweeps the rooms that may hold other instances' members: rooms it has
/// clients in where it heard another's join, or a call found more entries
/// than its own (until a sweep finds none), removing expired entries and
/// publishing a leave for each. A room where no one joined costs nothing
/// per tick, however many clients it has; one with only this instance's
/// members a refresh per ttl/3. The
/// script removes atomically, so however many instances sweep a room, one
/// of them reports each expiry, and an instance that died leaves
/// everyone's list at most ttl + ttl/6 after its last refresh.
///
/// Changes go out as presence frames on the room's message channel (the
/// magic tells them from envelopes), published only when the script says
/// the set changed: every instance subscribed to the room hears each change
/// once.
class PresenceKeeper {
 public:
  struct Host {
    /// Runs the presence script on the server that holds `key` with `args`
    /// (after the key); `done` gets the reply, or null when the call failed
    /// or the connection went away. False (and `done` not called) when there
    /// is no connection to send it on.
    std::function<bool(const std::string& key, std::vector<std::string> args,
                       std::function<void(const redisReply*)> done)>
        eval;
    /// Publishes a presence frame on the room's channel (best-effort).
    std::function<void(const std::string& room, std::string frame)> publish;
  };

  struct Settings {
    std::string key_prefix;
    bool hash_tag = false;  // cluster mode
    std::chrono::milliseconds ttl{15000};
    std::size_t max_per_room = 1000;
  };

  PresenceKeeper(Settings settings, Context& context, Host host);
  ~PresenceKeeper();

  /// Starts the refresh and sweep timer.
  void start(FanoutReceiver& receiver);
  /// Removes this instance's members (with leave events) while the
  /// connections still take commands, and stops the timer. No events reach
  /// the receiver from here on.
  void stop();

  void join(std::string_view room, const PresenceMember& member);
  void leave(std::string_view room, const PresenceMember& member);
  void read(std::string_view room, PresenceHandler done);
  /// Rooms this instance has clients in (Fanout::set_room_interest): swept
  /// while they may hold members.
  void set_interest(std::string_view room, bool interested);
  /// A frame heard on a channel: reported to the receiver.
  void on_frame(std::string_view bytes);

  /// Sweeps and refreshes now instead of at the next tick (tests).
  void tick_now();
  std::string key_for(std::string_view room) const;
  /// This instance's members over all rooms.
  std::size_t local_members() const noexcept { return local_count_; }
  /// Rooms swept for other instances' members (tests).
  std::size_t watched_rooms() const noexcept { return watched_.size(); }
  static std::string_view script();
  /// A NOSCRIPT error: an EVALSHA the server has no script for ran nothing.
  static bool is_noscript(const redisReply* reply);

 private:
  /// This instance's members of a room: connection -> user (the instance is
  /// instance_), about 100 bytes a member with short ids.
  using Members = std::map<std::string, std::string, std::less<>>;

  void schedule();
  void tick(bool refresh);
  void refresh(const std::string& room, const Members& members);
  void sweep(const std::string& room);
  PresenceMember member(const std::string& connection, const std::string& user) const;
  /// The room may hold members: swept at each tick (if it has clients here).
  void watch(std::string_view room);
  /// A sweep or read sent at `generation` found `count` members.
  void seen(const std::string& room, long long count, std::uint64_t generation);
  std::uint64_t generation_of(std::string_view room) const;
  /// Publishes a leave for each expired entry a sweep or read removed.
  void report_gone(const std::string& room, const redisReply* gone);
  void failed(const char* what, const redisReply* reply);
  static std::string entry(const PresenceMember& member);
  static std::string frame(PresenceFrame::Kind kind, std::string_view room, const PresenceMember& member);

  Settings settings_;
  Context& context_;
  Host host_;
  FanoutReceiver* receiver_ = nullptr;
  bool stopped_ = false;
  std::map<std::string, Members, std::less<>> local_;
  std::string instance_;  // of this instance's members
  std::size_t local_count_ = 0;
  std::set<std::string, std::less<>> interest_;
  /// Interested rooms that may hold other instances' members, by the
  /// generation of the last sign of them.
  std::map<std::string, std::uint64_t, std::less<>> watched_;
  std::uint64_t generation_ = 0;
  boost::asio::steady_timer timer_;
  std::uint64_t ticks_ = 0;
  Counter& expired_;
  Counter& errors_;
  Counter& decode_errors_;
  Gauge& members_gauge_;
  LogLimiter error_log_{std::chrono::seconds(10)};
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nudge::plugins::redis
