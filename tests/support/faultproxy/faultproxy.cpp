// nudge-faultproxy: a TCP proxy on loopback that fault tests put between the
// runtime and a server (Kafka, PostgreSQL) to add latency, stall the traffic
// or reset the connections, on command.
//
//   nudge-faultproxy LISTEN_HOST:PORT TARGET_HOST:PORT
//
// Prints "listening on HOST:PORT" on stdout once it accepts connections (port
// 0 picks a free one), then reads commands from stdin, one per line, and
// answers each with one line, "ok ..." or "error ...":
//
//   pass          forward everything as it comes (the initial mode)
//   latency MS    forward each chunk MS milliseconds after it arrived, in both
//                 directions (order kept; the bandwidth is not limited)
//   stall         keep accepting and reading, forward nothing: what arrives
//                 waits here until `pass` or `latency`, like a network that
//                 stopped delivering (reads stop once 4 MiB wait, per direction)
//   reset         abort every open connection with a TCP RST on both sides;
//                 new connections are accepted as before
//   stats         "ok accepted=N open=N resets=N up=BYTES down=BYTES mode=..."
//
// End of input on stdin (the test exited) ends the proxy. Everything runs on
// one thread.
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <unistd.h>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxQueued = 4 * 1024 * 1024;
constexpr auto kRecheck = 20ms;  // how often a held chunk looks at a changed latency

struct Settings {
  bool stalled = false;
  std::chrono::milliseconds latency{0};
  std::string mode() const {
    if (stalled) return "stall";
    if (latency.count() > 0) return "latency " + std::to_string(latency.count());
    return "pass";
  }
};

/// Wakes coroutines that wait on it; a notify with nobody waiting is lost, so
/// waiters always re-check their condition (one thread: no race in between).
class Signal {
 public:
  explicit Signal(asio::any_io_executor ex) : timer_(ex, Clock::time_point::max()) {}
  asio::awaitable<void> wait() { co_await timer_.async_wait(use_tuple); }
  void notify() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

struct Chunk {
  Clock::time_point arrived;
  std::vector<char> bytes;
};

/// One direction of a connection: read from `from`, hold, write to `to`.
struct Pipe {
  explicit Pipe(asio::any_io_executor ex) : readable(ex), writable(ex), due_timer(ex) {}
  std::deque<Chunk> queue;
  std::size_t queued = 0;
  bool eof = false;
  Signal readable;  // the writer waits for data
  Signal writable;  // the reader waits for room
  asio::steady_timer due_timer;
};

struct Link {
  Link(tcp::socket c, asio::any_io_executor ex) : client(std::move(c)), server(ex), up(ex), down(ex) {}
  tcp::socket client;
  tcp::socket server;
  Pipe up;    // client -> server
  Pipe down;  // server -> client
  int finished = 0;
  bool aborted = false;

  void abort() {
    if (aborted) return;
    aborted = true;
    boost::system::error_code ignored;
    for (tcp::socket* s : {&client, &server}) {
      if (!s->is_open()) continue;
      s->set_option(tcp::socket::linger(true, 0), ignored);  // close() then sends RST
      s->close(ignored);
    }
    for (Pipe* p : {&up, &down}) {
      p->readable.notify();
      p->writable.notify();
      p->due_timer.cancel();
    }
  }
};

class Proxy {
 public:
  Proxy(asio::io_context& io, tcp::endpoint listen, tcp::endpoint target)
      : io_(io), acceptor_(io, listen), target_(target), changed_(io.get_executor()) {}

  tcp::endpoint local() const { return acceptor_.local_endpoint(); }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        continue;
      }
      ++accepted_;
      auto link = std::make_shared<Link>(std::move(socket), io_.get_executor());
      links_.push_back(link);
      asio::co_spawn(io_, run(link), asio::detached);
    }
  }

  std::string command(const std::string& line) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb == "pass") {
      settings_.stalled = false;
      settings_.latency = 0ms;
    } else if (verb == "latency") {
      long ms = -1;
      if (!(in >> ms) || ms < 0) return "error latency needs milliseconds >= 0";
      settings_.stalled = false;
      settings_.latency = std::chrono::milliseconds(ms);
    } else if (verb == "stall") {
      settings_.stalled = true;
    } else if (verb == "reset") {
      std::size_t n = 0;
      for (auto& weak : links_)
        if (auto link = weak.lock(); link && !link->aborted) {
          link->abort();
          ++n;
        }
      resets_ += n;
      prune();
      return "ok reset " + std::to_string(n) + " connections";
    } else if (verb == "stats") {
      prune();
      return "ok accepted=" + std::to_string(accepted_) + " open=" + std::to_string(links_.size()) +
             " resets=" + std::to_string(resets_) + " up=" + std::to_string(bytes_up_) +
             " down=" + std::to_string(bytes_down_) + " mode=" + settings_.mode();
    } else {
      return "error unknown command '" + verb + "' (pass, latency MS, stall, reset, stats)";
    }
    changed_.notify();
    return "ok " + settings_.mode();
  }

  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& weak : links_)
      if (auto link = weak.lock()) link->abort();
  }

 private:
  void prune() {
    links_.remove_if([](const std::weak_ptr<Link>& w) {
      auto l = w.lock();
      return !l || l->aborted;
    });
  }

  asio::awaitable<void> run(std::shared_ptr<Link> link) {
    auto [ec] = co_await link->server.async_connect(target_, use_tuple);
    if (ec) {
      link->abort();  // the client sees a reset, as if the server had refused it
      co_return;
    }
    boost::system::error_code ignored;
    link->client.set_option(tcp::no_delay(true), ignored);
    link->server.set_option(tcp::no_delay(true), ignored);
    auto ex = io_.get_executor();
    asio::co_spawn(ex, read(link, link->client, link->up, bytes_up_), asio::detached);
    asio::co_spawn(ex, write(link, link->up, link->server), asio::detached);
    asio::co_spawn(ex, read(link, link->server, link->down, bytes_down_), asio::detached);
    asio::co_spawn(ex, write(link, link->down, link->client), asio::detached);
  }

  asio::awaitable<void> read(std::shared_ptr<Link> link, tcp::socket& from, Pipe& pipe, std::uint64_t& counter) {
    std::vector<char> buffer(64 * 1024);
    while (!link->aborted) {
      if (pipe.queued >= kMaxQueued) {
        co_await pipe.writable.wait();
        continue;
      }
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buffer), use_tuple);
      if (link->aborted) co_return;
      if (ec == asio::error::eof) {
        pipe.eof = true;
        pipe.readable.notify();
        co_return;
      }
      if (ec) {
        link->abort();  // a reset on one side is passed on to the other
        co_return;
      }
      counter += n;
      pipe.queue.push_back(Chunk{Clock::now(), std::vector<char>(buffer.begin(), buffer.begin() + n)});
      pipe.queued += n;
      pipe.readable.notify();
    }
  }

  asio::awaitable<void> write(std::shared_ptr<Link> link, Pipe& pipe, tcp::socket& to) {
    while (!link->aborted) {
      if (pipe.queue.empty()) {
        if (pipe.eof) {
          boost::system::error_code ignored;
          to.shutdown(tcp::socket::shutdown_send, ignored);
          if (++link->finished == 2) link->aborted = true;  // both halves closed: done
          co_return;
        }
        co_await pipe.readable.wait();
        continue;
      }
      if (settings_.stalled) {
        co_await changed_.wait();
        continue;
      }
      const auto due = pipe.queue.front().arrived + settings_.latency;
      if (const auto now = Clock::now(); now < due) {
        pipe.due_timer.expires_at(std::min(due, now + kRecheck));
        co_await pipe.due_timer.async_wait(use_tuple);
        continue;
      }
      Chunk chunk = std::move(pipe.queue.front());
      pipe.queue.pop_front();
      pipe.queued -= chunk.bytes.size();
      pipe.writable.notify();
      auto [ec, n] = co_await asio::async_write(to, asio::buffer(chunk.bytes), use_tuple);
      (void)n;
      if (ec) {
        link->abort();
        co_return;
      }
    }
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  tcp::endpoint target_;
  Settings settings_;
  Signal changed_;
  std::list<std::weak_ptr<Link>> links_;
  std::uint64_t accepted_ = 0;
  std::uint64_t resets_ = 0;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
};

bool parse_endpoint(const std::string& text, tcp::endpoint& out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(text.substr(0, colon), ec);
  if (ec) return false;
  try {
    const int port = std::stoi(text.substr(colon + 1));
    if (port < 0 || port > 65535) return false;
    out = tcp::endpoint(address, static_cast<unsigned short>(port));
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

asio::awaitable<void> control(Proxy& proxy, asio::io_context& io) {
  asio::posix::stream_descriptor in(io, ::dup(STDIN_FILENO));
  asio::streambuf buffer;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(in, buffer, '\n', use_tuple);
    if (ec) break;  // stdin closed: the test is gone
    std::string line(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + static_cast<long>(n));
    buffer.consume(n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    std::cout << proxy.command(line) << std::endl;
  }
  proxy.close();
  io.stop();
}

}  // namespace

int main(int argc, char** argv) {
  tcp::endpoint listen;
  tcp::endpoint target;
  if (argc != 3 || !parse_endpoint(argv[1], listen) || !parse_endpoint(argv[2], target)) {
    std::cerr << "usage: nudge-faultproxy LISTEN_HOST:PORT TARGET_HOST:PORT (IP addresses; port 0 picks one)\n";
    return 2;
  }
  try {
    asio::io_context io(1);
    Proxy proxy(io, listen, target);
    const auto local = proxy.local();
    std::cout << "listening on " << local.address().to_string() << ":" << local.port() << std::endl;
    asio::co_spawn(io, proxy.accept_loop(), asio::detached);
    asio::co_spawn(io, control(proxy, io), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "nudge-faultproxy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
