#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/log_limiter.hpp"

struct redisReader;
struct redisReply;

namespace nudge::plugins::redis {

/// The subscribed connection to one cluster node for sharded Pub/Sub
/// (SSUBSCRIBE). hiredis 0.14 (Debian 12) does not know SSUBSCRIBE: its async
/// API takes the `smessage` pushes that follow for replies to later commands
/// and drops the rest. So this connection is driven here on an Asio socket,
/// with hiredis only formatting commands and parsing replies (redisReader);
/// every reply comes to one handler, whatever it answers.
///
/// Reconnects with backoff like RedisLink; subscribes again to every channel
/// it holds on each connect. All methods and hooks run on the Context's
/// executor.
class ShardSubscriber {
 public:
  struct Hooks {
    std::function<void(std::string_view channel, std::string_view payload)> on_message;
    /// Connected and subscribed (again) to every channel held.
    std::function<void()> on_ready;
    /// Was ready and is not any more (reconnecting in the background).
    std::function<void()> on_lost;
    /// The node no longer serves a channel held here (a MOVED reply, or a
    /// `sunsubscribe` it sent on its own when the slot moved away).
    std::function<void(std::string_view channel)> on_moved;
  };

  ShardSubscriber(std::string host, std::uint16_t port, const RedisConfig& config, Context& context,
                  std::string client_name, Hooks hooks, Counter& reconnects);
  ~ShardSubscriber();
  ShardSubscriber(const ShardSubscriber&) = delete;
  ShardSubscriber& operator=(const ShardSubscriber&) = delete;

  void start();
  /// Closes at once; no hook is called from here on.
  void stop();

  void subscribe(const std::string& channel);
  void unsubscribe(const std::string& channel);
  bool holds(const std::string& channel) const { return channels_.count(channel) != 0; }
  const std::set<std::string>& channels() const noexcept { return channels_; }

  bool ready() const noexcept { return state_ == State::ready; }
  const std::string& last_error() const noexcept { return last_error_; }
  std::string endpoint() const;

 private:
  enum class State { idle, connecting, ready, backing_off, stopped };

  void attempt();
  void on_connected();
  void send(const std::vector<std::string_view>& args);
  void write_some();
  void read_some();
  void handle(const redisReply* reply);
  void fail(const std::string& why);
  void close();

  std::string host_;
  std::uint16_t port_;
  const RedisConfig& config_;
  Context& context_;
  std::string client_name_;
  Hooks hooks_;
  Counter& reconnects_;

  State state_ = State::idle;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer timer_;  // the connect timeout, then the backoff
  std::uint64_t generation_ = 0;     // completions of an abandoned attempt compare against it
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader_;
  std::string out_;      // commands not yet written
  std::string writing_;  // the buffer of the write in progress
  bool write_pending_ = false;
  std::array<char, 64 * 1024> in_{};
  std::set<std::string> channels_;
  bool ever_ready_ = false;
  std::int64_t backoff_ms_ = 0;
  std::string last_error_;
  std::minstd_rand jitter_;
  LogLimiter error_log_{std::chrono::seconds(10)};
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nudge::plugins::redis
