#pragma once

#include <memory>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/log_limiter.hpp"
#include "sessions.hpp"

namespace nudge::plugins::websocket {

/// The chat's front door: one port serving the static chat page over HTTP and
/// the chat protocol over WebSocket (docs/protocol.md).
class WebSocketSource final : public Source {
 public:
  WebSocketSource(const Config& config, Context& context);
  ~WebSocketSource() override;
  static ConfigSchema schema() { return WebSocketConfig::schema(); }

  // Source
  Status start(Ingress& ingress) override;
  void deliver(const MessagePtr& message) override;
  void deliver_presence(std::string_view room, const PresenceEvent& event) override;
  void stop_intake() override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Ready while listening (from start() until stop_intake()).
  Readiness readiness() const override;
  /// Applies the live keys (WebSocketConfig::apply_live) to every open
  /// connection and those to come; refuses a change of any other key.
  Status reconfigure(const Config& config) override;

  /// The port actually bound (useful with `listen = "...:0"`).
  std::uint16_t bound_port() const noexcept { return bound_port_; }

 private:
  /// One address listened on (localhost: each loopback), and the pause of
  /// its accepts when the process ran out of descriptors.
  struct Listener {
    explicit Listener(const boost::asio::any_io_executor& executor) : acceptor(executor), pause(executor) {}
    boost::asio::ip::tcp::acceptor acceptor;
    boost::asio::steady_timer pause;
  };

  /// Binds every address `listen` names (localhost: 127.0.0.1 and ::1).
  Status listen();
  void do_accept(Listener& listener);
  /// Counts a new connection against the limits and starts serving it, or
  /// closes it at once.
  void serve(LoopSocket socket);
  /// Out of file descriptors: accepts and closes one waiting connection with
  /// the descriptor kept spare for this (so it is not left hanging in the
  /// backlog), then waits a moment before accepting again instead of
  /// spinning on the error.
  void shed_and_pause(Listener& listener);
  /// Every sweep interval: each session's keep-alive ping, idle cut and close deadline.
  void sweep_timeouts();

  Context& context_;
  /// The configuration in force: reconfigure() compares the keys that need
  /// a restart against it.
  Config config_;
  std::shared_ptr<Hub> hub_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  boost::asio::steady_timer stop_timer_;
  boost::asio::steady_timer sweep_timer_;
  /// A descriptor held open (on /dev/null) to accept-and-close with when the
  /// process runs out: -1 when none could be opened.
  int spare_fd_ = -1;
  /// When the peer table was last swept of entries that hold nothing.
  std::chrono::steady_clock::time_point peers_swept_{};
  std::vector<WsSession*> sweep_scratch_;
  /// deliver's copy of a room's members, and whether it is in use.
  std::vector<WsSession*> deliver_scratch_;
  bool delivering_ = false;
  std::uint16_t bound_port_ = 0;
  Counter& undeliverable_;
  Counter& accept_failures_;
  LogLimiter accept_log_{std::chrono::seconds(10)};
};

}  // namespace nudge::plugins::websocket
