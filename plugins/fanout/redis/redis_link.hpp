#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "nudge/sdk/context.hpp"

struct redisAsyncContext;

namespace nudge::plugins::redis {

/// The name one of this instance's connections gives itself with CLIENT
/// SETNAME, so operators can tell it in CLIENT LIST:
/// `nudge:<pipeline>:<instance>:<suffix>`, with what CLIENT SETNAME cannot
/// take replaced by '_'.
std::string client_name(const Context& context, std::string_view suffix);

/// One hiredis async connection that stays up: it connects without blocking
/// (names resolved asynchronously, then redisAsyncConnect driven by
/// AsioAdapter), logs in (AUTH, SELECT), and after a failed attempt or a lost
/// connection tries again with exponential backoff until stopped.
///
/// All methods and hooks run on the Context's executor.
class RedisLink {
 public:
  struct Hooks {
    /// Connected and logged in: commands may be sent on context().
    std::function<void()> on_ready;
    /// Was ready and is not any more (reconnecting in the background).
    std::function<void()> on_lost;
  };

  /// `role` names the connection in logs ("publishing"). `select_db` sends
  /// SELECT <db> from the URL when it is not 0. `client_name` is set with
  /// CLIENT SETNAME so operators can tell the connection in CLIENT LIST
  /// (empty: none).
  RedisLink(std::string role, const RedisConfig& config, Context& context, bool select_db, std::string client_name,
            Hooks hooks, Counter& reconnects);
  /// Frees a live context at once; no hook is called from here on.
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  /// Starts connecting; never fails (problems are retried and logged).
  void start();
  /// Stops reconnecting and disconnects, letting replies already awaited
  /// arrive; calls `done` (posted) once hiredis has freed the connection, or
  /// after connect_timeout_ms at the latest. Hooks are not called any more.
  void stop(std::function<void()> done);

  bool ready() const noexcept { return ready_; }
  /// Why the last attempt failed or the connection was lost; empty before any failure.
  const std::string& last_error() const noexcept { return last_error_; }
  /// The connection, when ready(); else null.
  redisAsyncContext* context() const noexcept { return ready_ ? ac_ : nullptr; }
  /// Gives up on the connection (a login or protocol failure) and reconnects
  /// with backoff. Callable inside hiredis callbacks.
  void drop(const std::string& why);

 private:
  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_login_reply(redisAsyncContext* ac, void* reply, void* command);

  void attempt();
  void connect_to(const std::string& address);
  void handle_connected();
  void handle_freed(const std::string& why);
  void became_ready();
  void failed(const std::string& why);
  void abandon();
  void schedule_retry();
  void finish_stop();
  std::int64_t ms_since(std::chrono::steady_clock::time_point t) const;

  std::string role_;
  const RedisConfig& config_;
  Context& context_;
  bool select_db_;
  std::string client_name_;
  Hooks hooks_;
  Counter& reconnects_;

  redisAsyncContext* ac_ = nullptr;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer attempt_timer_;
  boost::asio::steady_timer stop_timer_;
  std::uint64_t attempt_id_ = 0;  // stale resolve/timer completions compare against it
  int login_pending_ = 0;         // AUTH/SELECT replies still awaited
  bool ready_ = false;
  std::string last_error_;
  bool ever_ready_ = false;
  bool stopped_ = false;
  std::function<void()> stop_done_;

  std::uint32_t attempts_ = 0;  // failed attempts since the last time it was ready
  std::chrono::steady_clock::time_point down_since_{};
  std::int64_t backoff_ms_ = 0;
  std::chrono::steady_clock::time_point last_reminder_{};
  std::minstd_rand jitter_;
  /// Completion handlers hold a weak_ptr to this: a handler already queued
  /// when the link is destroyed sees it expired and does nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nudge::plugins::redis
