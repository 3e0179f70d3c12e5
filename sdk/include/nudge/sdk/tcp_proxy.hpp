#pragma once

// For plugin tests (like testing.hpp): a TCP proxy on 127.0.0.1 that
// forwards to a server and can be taken down (listener and every connection
// closed: the server looks stopped) and brought up again on the same port,
// without touching the server itself, which other tests share; or made to
// hang (connections stay open, nothing is forwarded either way: the server
// looks frozen). Runs on a thread of its own. Header-only; not part of the runtime's interface.

#include <array>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace nudge::testing {

class TcpProxy {
 public:
  using tcp = boost::asio::ip::tcp;

  /// Starts listening on a free port of 127.0.0.1, forwarding to the target (an IP address).
  TcpProxy(const std::string& target_host, std::uint16_t target_port)
      : target_(boost::asio::ip::make_address(target_host), target_port) {
    listen(0);
    thread_ = std::thread([this] { io_.run(); });
  }
  /// Closes everything and joins the proxy's thread.
  ~TcpProxy() {
    on_thread([this] { close_all(); });
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  /// The port to point the plugin at instead of the server's.
  std::uint16_t port() const noexcept { return port_; }

  /// Stops listening and closes every connection: connections are refused.
  void down() {
    on_thread([this] { close_all(); });
  }
  /// Listens again, on the same port.
  void up() {
    on_thread([this] { listen(port_); });
  }
  /// Stops forwarding, both ways, on every connection (new ones too) and
  /// stops reading: what the client writes piles up in the kernel's buffers
  /// and then in the client, as with a server that hangs.
  void hang() {
    on_thread([this] { hanging_ = true; });
  }
  /// Forwards again what was held, then everything as before.
  void resume() {
    on_thread([this] {
      hanging_ = false;
      auto parked = std::move(parked_);
      parked_.clear();
      for (auto& f : parked) f();
    });
  }

 private:
  struct Pipe {
    Pipe(tcp::socket c, tcp::socket s) : client(std::move(c)), server(std::move(s)) {}
    tcp::socket client;
    tcp::socket server;
    std::array<char, 16384> up{};
    std::array<char, 16384> down{};
    void close() {
      boost::system::error_code ec;
      client.close(ec);
      server.close(ec);
    }
  };

  template <class F>
  void on_thread(F f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().get();
  }

  void listen(std::uint16_t port) {
    acceptor_ = std::make_unique<tcp::acceptor>(io_);
    const tcp::endpoint at(boost::asio::ip::make_address("127.0.0.1"), port);
    acceptor_->open(at.protocol());
    acceptor_->set_option(boost::asio::socket_base::reuse_address(true));
    acceptor_->bind(at);
    acceptor_->listen();
    port_ = acceptor_->local_endpoint().port();
    accept();
  }

  void close_all() {
    if (acceptor_) {
      boost::system::error_code ec;
      acceptor_->close(ec);
    }
    for (auto& weak : pipes_)
      if (auto pipe = weak.lock()) pipe->close();
    pipes_.clear();
    parked_.clear();
  }

  void accept() {
    acceptor_->async_accept([this, acceptor = acceptor_.get()](boost::system::error_code ec, tcp::socket client) {
      if (ec || acceptor != acceptor_.get() || !acceptor_->is_open()) return;
      tcp::socket server(io_);
      server.connect(target_, ec);
      if (!ec) {
        auto pipe = std::make_shared<Pipe>(std::move(client), std::move(server));
        pipes_.push_back(pipe);
        pump(pipe, pipe->client, pipe->server, pipe->up);
        pump(pipe, pipe->server, pipe->client, pipe->down);
      }
      accept();
    });
  }

  void pump(const std::shared_ptr<Pipe>& pipe, tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buffer) {
    if (hanging_) {
      parked_.push_back([this, pipe, &from, &to, &buffer] { pump(pipe, from, to, buffer); });
      return;
    }
    from.async_read_some(boost::asio::buffer(buffer),
                         [this, pipe, &from, &to, &buffer](boost::system::error_code ec, std::size_t n) {
                           if (ec) return pipe->close();
                           forward(pipe, from, to, buffer, n);
                         });
  }

  void forward(const std::shared_ptr<Pipe>& pipe, tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buffer,
               std::size_t n) {
    if (hanging_) {
      parked_.push_back([this, pipe, &from, &to, &buffer, n] { forward(pipe, from, to, buffer, n); });
      return;
    }
    boost::asio::async_write(to, boost::asio::buffer(buffer.data(), n),
                             [this, pipe, &from, &to, &buffer](boost::system::error_code ec2, std::size_t) {
                               if (ec2) return pipe->close();
                               pump(pipe, from, to, buffer);
                             });
  }

  tcp::endpoint target_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{io_.get_executor()};
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::list<std::weak_ptr<Pipe>> pipes_;
  bool hanging_ = false;
  /// What each connection would do next, held while hanging (they keep it open).
  std::vector<std::function<void()>> parked_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace nudge::testing
