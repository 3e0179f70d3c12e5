// rawbound: the kernel's cost of a broadcast on this machine, with no
// framework at all (issue 17, "broadcast": Nudge's deliveries per server
// CPU-second against the raw bound).
//
// N loopback TCP connections; a writer thread sends every message to every
// connection, one writev each (--frames-per-write frames of --frame-bytes in
// it, as a server coalescing that many frames for one client would), paced
// at --rate messages/s like nudge-bench's broadcast; a reader thread drains
// the other ends with epoll. The writer's CPU per delivery is the floor for
// any server writing those frames to those sockets: on loopback its writev
// also runs the receiving half of TCP and wakes the reader, as a server's
// does for nudge-bench.
//
//   rawbound [--connections 1000] [--messages 1000] [--rate 100] [--frame-bytes 200] [--frames-per-write 1]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "rawbound: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

long option(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0) {
      std::puts(
          "rawbound [--connections 1000] [--messages 1000] [--rate 100] [--frame-bytes 200] [--frames-per-write 1]");
      return 0;
    }
  const long connections = option(argc, argv, "--connections", 1000);
  const long messages = option(argc, argv, "--messages", 1000);
  const long rate = option(argc, argv, "--rate", 100);
  const long frame_bytes = option(argc, argv, "--frame-bytes", 200);
  const long per_write = option(argc, argv, "--frames-per-write", 1);
  if (connections < 1 || messages < 1 || rate < 0 || frame_bytes < 1 || per_write < 1 || per_write > 64) {
    std::fputs("rawbound: every option must be positive (--frames-per-write at most 64)\n", stderr);
    return 2;
  }

  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) die("bind");
  if (::listen(listener, 4096) < 0) die("listen");
  if (::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) < 0) die("getsockname");

  std::vector<int> clients, servers;
  for (long i = 0; i < connections; ++i) {
    const int c = ::socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0) die("socket (raise the open-file limit, or lower --connections)");
    if (::connect(c, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) die("connect");
    const int s = ::accept(listener, nullptr, nullptr);
    if (s < 0) die("accept");
    const int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as a WebSocket server sets it
    ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    ::fcntl(c, F_SETFL, ::fcntl(c, F_GETFL) | O_NONBLOCK);
    clients.push_back(c);
    servers.push_back(s);
  }

  const std::size_t expected = static_cast<std::size_t>(connections * messages * per_write * frame_bytes);
  std::atomic<std::size_t> received{0};
  double reader_cpu = 0;
  std::thread reader([&] {
    const int ep = ::epoll_create1(0);
    for (int c : clients) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = c;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
    }
    std::vector<epoll_event> events(256);
    std::vector<char> buffer(64 * 1024);
    const double start = thread_cpu_seconds();
    while (received.load(std::memory_order_relaxed) < expected) {
      const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
      for (int i = 0; i < n; ++i) {
        for (;;) {
          const ssize_t got = ::read(events[i].data.fd, buffer.data(), buffer.size());
          if (got <= 0) break;
          received.fetch_add(static_cast<std::size_t>(got), std::memory_order_relaxed);
          if (static_cast<std::size_t>(got) < buffer.size()) break;
        }
      }
    }
    reader_cpu = thread_cpu_seconds() - start;
    ::close(ep);
  });

  const std::string frame(static_cast<std::size_t>(frame_bytes), 'x');
  std::vector<iovec> iov(static_cast<std::size_t>(per_write), iovec{const_cast<char*>(frame.data()), frame.size()});
  std::size_t writes = 0, waits = 0;
  const auto wall_start = std::chrono::steady_clock::now();
  const double cpu_start = thread_cpu_seconds();
  for (long m = 0; m < messages; ++m) {
    if (rate > 0) std::this_thread::sleep_until(wall_start + std::chrono::nanoseconds(m * 1'000'000'000L / rate));
    for (int s : servers) {
      std::size_t left = frame.size() * iov.size();
      std::vector<iovec> rest;  // only when a write is partial (the socket buffer is full)
      const iovec* vec = iov.data();
      int count = static_cast<int>(iov.size());
      while (left > 0) {
        const ssize_t put = ::writev(s, vec, count);
        ++writes;
        if (put < 0) {
          if (errno != EAGAIN) die("writev");
          pollfd p{s, POLLOUT, 0};
          ::poll(&p, 1, -1);
          ++waits;
          continue;
        }
        left -= static_cast<std::size_t>(put);
        if (left == 0) break;
        // Partial: write the rest of the same bytes.
        rest.assign(vec, vec + count);
        std::size_t skip = static_cast<std::size_t>(put);
        std::size_t first = 0;
        while (skip >= rest[first].iov_len) skip -= rest[first++].iov_len;
        rest[first].iov_base = static_cast<char*>(rest[first].iov_base) + skip;
        rest[first].iov_len -= skip;
        rest.erase(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(first));
        vec = rest.data();
        count = static_cast<int>(rest.size());
      }
    }
  }
  const double writer_cpu = thread_cpu_seconds() - cpu_start;
  reader.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const double deliveries =
      static_cast<double>(connections) * static_cast<double>(messages) * static_cast<double>(per_write);
  std::printf(
      "{\"connections\": %ld, \"messages\": %ld, \"rate\": %ld, \"frame_bytes\": %ld, \"frames_per_write\": %ld,\n"
      " \"deliveries\": %.0f, \"writes\": %zu, \"waits_for_room\": %zu, \"wall_seconds\": %.3f,\n"
      " \"writer_cpu_seconds\": %.3f, \"writer_cpu_us_per_delivery\": %.3f,"
      " \"deliveries_per_writer_cpu_second\": %.0f, \"reader_cpu_seconds\": %.3f}\n",
      connections, messages, rate, frame_bytes, per_write, deliveries, writes, waits, wall, writer_cpu,
      writer_cpu * 1e6 / deliveries, deliveries / writer_cpu, reader_cpu);
  for (int fd : clients) ::close(fd);
  for (int fd : servers) ::close(fd);
  ::close(listener);
  return 0;
}
