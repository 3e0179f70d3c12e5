#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace nudge::bench {

/// A trivial chat server for calibrating the load generator: a "perfect"
/// fanout, all in one process and one event loop, no persistence. Speaks
/// Nudge's protocol at any path (hello, join, leave, send → message to every
/// member of the room, then an immediate ack) and Socket.IO v5 over the
/// WebSocket transport at /socket.io/ (open packet, namespace connect, ping
/// answers, `join` moves the client to a room — "general" until then —,
/// `event:message` → a `message` event to the room with the original app's
/// payload, a JSON string `{"message": text}`, and an ack when asked for one).
class DiscardServer {
 public:
  /// Binds and listens at once (throws boost::system::system_error); serves
  /// once start() is called, on `ioc`'s thread.
  DiscardServer(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& at);
  ~DiscardServer();
  DiscardServer(const DiscardServer&) = delete;
  DiscardServer& operator=(const DiscardServer&) = delete;

  std::uint16_t port() const;
  void start();
  /// Stops accepting and closes every connection (on ioc's thread).
  void stop();

  struct Counters {
    std::uint64_t connections = 0;
    std::uint64_t frames_in = 0;
    std::uint64_t frames_out = 0;
    std::uint64_t slow_clients_dropped = 0;
  };
  /// Read on ioc's thread, or once it stopped.
  Counters counters() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace nudge::bench
