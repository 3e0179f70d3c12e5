#include "load_run.hpp"

#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "clock.hpp"
#include "delivery_tracker.hpp"
#include "layout.hpp"
#include "process_watch.hpp"
#include "protocol.hpp"
#include "url.hpp"

namespace nudge::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
// Concrete executors: no type-erased any_io_executor on the hot path.
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Timer =
    asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, Executor>;

/// The run's plan, shared read-only by every worker thread. The timeline is
/// written by the main thread before it posts `start_sending` to the workers
/// (the post orders the writes before the reads).
struct Plan {
  explicit Plan(const Options& options) : o(options) {}

  const Options& o;
  std::vector<Url> urls;
  std::vector<tcp::endpoint> endpoints;  // one per URL
  std::vector<std::string> targets;      // HTTP target per URL
  std::uint32_t run_id = 0;
  std::vector<std::string> room_names;
  std::vector<std::uint32_t> room_members;  // open connections per room when sending started
  std::int64_t t_start = 0;
  std::int64_t t_warm = 0;
  std::int64_t t_end = 0;

  std::uint32_t room_of(std::uint32_t connection) const { return bench::room_of(connection, o.rooms); }
  std::size_t instance_of(std::uint32_t connection) const {
    return bench::instance_of(connection, o.rooms, urls.size());
  }
  /// Senders are connections 0..senders-1; this many of them are in `room`.
  std::uint32_t senders_in(std::uint32_t room) const {
    return o.senders > room ? (o.senders - room - 1) / o.rooms + 1 : 0;
  }
  /// When `sender` is to send its message `seq`: all senders together send
  /// every 1/rate s, sender k at the k-th slot of each round.
  std::int64_t scheduled(std::uint32_t sender, std::uint64_t seq) const {
    const double n = static_cast<double>(seq) * o.senders + sender;
    return t_start + static_cast<std::int64_t>(std::llround(n * 1e9 / o.rate));
  }
  bool in_window(std::int64_t t) const { return t >= t_warm && t < t_end; }
};

/// Counts of one worker thread, merged by the main thread once the workers stopped.
struct WorkerStats {
  LatencyHistogram delivery, ack, send_lag;
  std::uint64_t deliveries_window = 0;
  std::uint64_t cross_instance_window = 0;  ///< deliveries whose sender used another instance than the receiver
  std::uint64_t frames_window = 0;          ///< every frame read in the window, whatever it held
  std::uint64_t acks_window = 0;
  std::uint64_t errors_window = 0;
  std::uint64_t errors_total = 0;
  std::uint64_t skipped_window = 0;
  std::uint64_t foreign = 0;
  std::uint64_t misrouted = 0;
  std::uint64_t malformed = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t disconnects = 0;
  std::map<std::string, std::uint64_t> error_codes;
  std::map<std::string, std::uint64_t> connect_failure_reasons;
  std::map<std::string, std::uint64_t> disconnect_reasons;
  // For the drain: expected = sent × room members; pending = queued, not yet written.
  std::uint64_t expected_window = 0;
  std::uint64_t pending_window = 0;
};

class Worker;

/// One WebSocket client connection, living on its worker's event loop.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State { idle, opening, greeting, ready, closing, done };

  Connection(Worker& worker, std::uint32_t id);

  void open();
  void start_sending();
  void close();

  std::uint32_t id() const { return id_; }
  std::uint32_t room() const { return room_; }
  State state() const { return state_; }
  bool was_ready() const { return was_ready_; }
  std::uint64_t sent_window() const { return sent_window_; }
  const std::vector<PairTracker>& pairs() const { return pairs_; }

 private:
  struct Out {
    std::string data;
    std::int64_t scheduled = -1;  // -1: a control frame, not a message
    bool window = false;
  };

  void on_connect(error_code ec);
  void on_handshake(error_code ec);
  void set_ready();
  void do_read();
  void on_read(error_code ec, std::size_t n);
  void handle(std::string_view frame, std::int64_t now);
  void on_delivery(const MessageHeader& h, std::int64_t now);
  void on_ack(std::uint64_t seq, std::int64_t now);
  void enqueue(std::string data, std::int64_t scheduled = -1, bool window = false);
  void do_write();
  void on_write(error_code ec);
  void send_due();
  void fail(std::string reason);
  void drop_queue();

  Worker& w_;
  const Plan& plan_;
  std::uint32_t id_;
  std::uint32_t room_;
  bool sender_;
  State state_ = State::idle;
  bool was_ready_ = false;
  websocket::stream<Socket> ws_;
  beast::flat_buffer buffer_;
  websocket::response_type response_;
  Timer timer_;  // opening deadline, then the send schedule
  std::deque<Out> out_;
  bool writing_ = false;
  bool sending_ = false;
  bool started_ = false;  // start_sending ran: the plan's timeline is set
  std::uint64_t next_seq_ = 0;
  std::uint64_t sent_window_ = 0;
  std::vector<PairTracker> pairs_;  // by the sender's index in the room
};

/// One event loop thread and the connections it owns.
class Worker {
 public:
  explicit Worker(Plan& plan) : plan_(plan), ioc_(1), guard_(ioc_.get_executor()) {}

  void start() {
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void join() {
    guard_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  /// Runs `f` on the worker's thread and waits for its result.
  template <typename F>
  auto call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(ioc_, [&task] { task(); });
    return result.get();
  }
  template <typename F>
  void post(F f) {
    asio::post(ioc_, std::move(f));
  }

  /// Opens `ids` at `rate` per second (posted; runs on the worker).
  void open_paced(std::vector<std::uint32_t> ids, double rate) {
    to_open_ = std::move(ids);
    open_interval_ns_ = 1e9 / rate;
    open_started_ = now_ns();
    open_timer_.emplace(ioc_.get_executor());
    open_next();
  }

  void stop_opening() {
    to_open_.resize(opened_);
    if (open_timer_) open_timer_->cancel();
  }
  std::size_t settled() const { return settled_; }
  void note_settled() { ++settled_; }

  Plan& plan() { return plan_; }
  asio::io_context& ioc() { return ioc_; }
  WorkerStats& stats() { return stats_; }
  std::vector<std::shared_ptr<Connection>>& connections() { return connections_; }

 private:
  void open_next() {
    const std::int64_t now = now_ns();
    while (opened_ < to_open_.size()) {
      const auto due = open_started_ + static_cast<std::int64_t>(opened_ * open_interval_ns_);
      if (due > now) {
        open_timer_->expires_at(to_time_point(due));
        open_timer_->async_wait([this](error_code ec) {
          if (!ec) open_next();
        });
        return;
      }
      auto c = std::make_shared<Connection>(*this, to_open_[opened_++]);
      connections_.push_back(c);
      c->open();
    }
  }

  Plan& plan_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
  WorkerStats stats_;
  std::vector<std::shared_ptr<Connection>> connections_;
  std::vector<std::uint32_t> to_open_;
  std::size_t opened_ = 0;
  double open_interval_ns_ = 0;
  std::int64_t open_started_ = 0;
  std::optional<Timer> open_timer_;
  std::size_t settled_ = 0;  // connections ready or failed
};

Connection::Connection(Worker& worker, std::uint32_t id)
    : w_(worker),
      plan_(worker.plan()),
      id_(id),
      room_(plan_.room_of(id)),
      sender_(id < plan_.o.senders),
      ws_(worker.ioc().get_executor()),
      timer_(worker.ioc().get_executor()) {}

void Connection::open() {
  state_ = State::opening;
  const auto& o = plan_.o;
  const std::size_t u = plan_.instance_of(id_);
  auto& socket = ws_.next_layer();
  error_code ec;
  socket.open(plan_.endpoints[u].protocol(), ec);
  if (!ec && o.source_addresses > 1 && plan_.endpoints[u].address().is_v4()) {
    // 127.0.0.(1 + id mod N). The port is chosen at connect() for the whole
    // 4-tuple (IP_BIND_ADDRESS_NO_PORT), so each source address has its own
    // ~28k ephemeral ports per target.
    const int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const asio::ip::address_v4 source(0x7f000001u + id_ % o.source_addresses);
    socket.bind(tcp::endpoint(source, 0), ec);
  }
  if (ec) {
    fail("socket: " + ec.message());
    return;
  }
  timer_.expires_after(o.connect_timeout);
  timer_.async_wait([self = shared_from_this()](error_code e) {
    if (e || (self->state_ != State::opening && self->state_ != State::greeting)) return;
    self->fail("timed out opening");
  });
  ws_.next_layer().async_connect(plan_.endpoints[u],
                                 [self = shared_from_this()](error_code e) { self->on_connect(e); });
}

void Connection::on_connect(error_code ec) {
  if (state_ != State::opening) return;
  if (ec) return fail("connect: " + ec.message());
  ws_.next_layer().set_option(tcp::no_delay(true), ec);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::request_type& req) { req.set(beast::http::field::user_agent, "nudge-bench"); }));
  ws_.read_message_max(64u << 20);
  ws_.auto_fragment(false);
  ws_.text(true);
  const std::size_t u = plan_.instance_of(id_);
  ws_.async_handshake(response_, plan_.urls[u].host_header(), plan_.targets[u],
                      [self = shared_from_this()](error_code e) { self->on_handshake(e); });
}

void Connection::on_handshake(error_code ec) {
  if (state_ != State::opening) return;
  if (ec) {
    // Only a declined upgrade read a response: Beast presets 500 in it before every handshake, so a
    // handshake cut short (reset, end of stream, timeout) would otherwise read as "HTTP 500".
    if (ec == websocket::error::upgrade_declined) return fail("HTTP " + std::to_string(response_.result_int()));
    return fail("handshake: " + ec.message());
  }
  response_ = {};
  do_read();
  switch (plan_.o.protocol) {
    case Protocol::nudge:
      if (plan_.o.hello) {
        enqueue(nudge_hello("b" + std::to_string(plan_.run_id) + "-" + std::to_string(id_)));
      }
      enqueue(nudge_join(plan_.room_names[room_]));
      set_ready();  // join has no answer; the warmup covers its processing
      break;
    case Protocol::socket_io:
      state_ = State::greeting;  // ready on the namespace connect ("40")
      break;
  }
}

void Connection::set_ready() {
  timer_.cancel();
  state_ = State::ready;
  was_ready_ = true;
  pairs_.resize(plan_.senders_in(room_));
  w_.note_settled();
}

void Connection::do_read() {
  ws_.async_read(buffer_, [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
}

void Connection::on_read(error_code ec, std::size_t n) {
  if (ec) {
    if (state_ == State::closing || state_ == State::done) {
      state_ = State::done;
      return;
    }
    const auto reason = ws_.reason();
    if (ec == websocket::error::closed) {
      fail("closed by the server: " + std::to_string(reason.code) +
           (reason.reason.empty() ? std::string() : " " + std::string(reason.reason.data(), reason.reason.size())));
    } else {
      fail(ec.message());
    }
    return;
  }
  const std::int64_t now = now_ns();
  // The generator's load is every frame it reads, expected or not (pings,
  // acks, other rooms' messages): that is what its ceiling is measured in.
  if (started_ && plan_.in_window(now)) ++w_.stats().frames_window;
  const auto data = buffer_.cdata();
  handle(std::string_view(static_cast<const char*>(data.data()), n), now);
  buffer_.consume(n);
  if (state_ != State::done) do_read();
}

void Connection::handle(std::string_view frame, std::int64_t now) {
  const Protocol protocol = plan_.o.protocol;
  const Incoming in = protocol == Protocol::nudge ? parse_nudge(frame) : parse_socketio(frame);
  auto& st = w_.stats();
  switch (in.kind) {
    case Incoming::Kind::delivery:
      if (in.header) {
        on_delivery(*in.header, now);
      } else {
        ++st.foreign;
      }
      break;
    case Incoming::Kind::ack:
      on_ack(*in.ref, now);
      break;
    case Incoming::Kind::error:
      ++st.errors_total;
      ++st.error_codes[in.code];
      // The timeline is only ours to read once sending started.
      if (in.ref && sender_ && started_ && plan_.in_window(plan_.scheduled(id_, *in.ref))) ++st.errors_window;
      break;
    case Incoming::Kind::open:
      if (state_ == State::greeting) enqueue(std::string(kSocketIoConnect));
      break;
    case Incoming::Kind::connected:
      if (state_ == State::greeting) {
        if (plan_.o.socketio_join) enqueue(socketio_join(plan_.room_names[room_]));
        set_ready();
      }
      break;
    case Incoming::Kind::connect_error:
      fail("socket.io connect_error: " + std::string(frame.substr(0, 200)));
      break;
    case Incoming::Kind::ping:
      enqueue(std::string(kEngineIoPong));
      break;
    case Incoming::Kind::close:
      if (state_ != State::closing) fail("socket.io session closed by the server");
      break;
    case Incoming::Kind::malformed:
      ++st.malformed;
      break;
    case Incoming::Kind::other:
      break;
  }
}

void Connection::on_delivery(const MessageHeader& h, std::int64_t now) {
  auto& st = w_.stats();
  if (h.run != plan_.run_id) {
    ++st.foreign;
    return;
  }
  if (h.sender >= plan_.o.senders || plan_.room_of(h.sender) != room_ || pairs_.empty()) {
    ++st.misrouted;
    return;
  }
  if (!started_) return;  // cannot be ours: nothing was sent yet
  const bool window = plan_.in_window(h.scheduled_ns);
  const Arrival a = pairs_[h.sender / plan_.o.rooms].on_receive(h.seq, window);
  if (a == Arrival::duplicate || !window) return;
  st.delivery.record(now - h.scheduled_ns);
  ++st.deliveries_window;
  if (plan_.instance_of(h.sender) != plan_.instance_of(id_)) ++st.cross_instance_window;
}

void Connection::on_ack(std::uint64_t seq, std::int64_t now) {
  if (!sender_ || !started_) return;
  const std::int64_t scheduled = plan_.scheduled(id_, seq);
  if (!plan_.in_window(scheduled)) return;
  auto& st = w_.stats();
  st.ack.record(now - scheduled);
  ++st.acks_window;
}

void Connection::start_sending() {
  started_ = true;
  if (!sender_ || state_ != State::ready) return;
  sending_ = true;
  send_due();
}

void Connection::send_due() {
  const auto& o = plan_.o;
  auto& st = w_.stats();
  const std::int64_t now = now_ns();
  while (sending_ && state_ == State::ready) {
    const std::int64_t scheduled = plan_.scheduled(id_, next_seq_);
    if (scheduled >= plan_.t_end) {
      sending_ = false;
      return;
    }
    if (scheduled > now) {
      timer_.expires_at(to_time_point(scheduled));
      timer_.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec) self->send_due();
      });
      return;
    }
    const bool window = plan_.in_window(scheduled);
    if (out_.size() >= o.max_queue) {
      if (window) ++st.skipped_window;
    } else {
      const MessageHeader h{plan_.run_id, id_, next_seq_, scheduled};
      std::optional<std::uint64_t> ack_id;
      if (o.socketio_ack) ack_id = next_seq_;
      enqueue(o.protocol == Protocol::nudge ? nudge_send(plan_.room_names[room_], h, o.payload_bytes)
                                            : socketio_send(h, o.payload_bytes, ack_id),
              scheduled, window);
    }
    ++next_seq_;
  }
}

void Connection::enqueue(std::string data, std::int64_t scheduled, bool window) {
  if (state_ == State::done || state_ == State::closing) return;
  if (window) ++w_.stats().pending_window;
  out_.push_back(Out{std::move(data), scheduled, window});
  if (!writing_) do_write();
}

void Connection::do_write() {
  writing_ = true;
  ws_.async_write(asio::buffer(out_.front().data),
                  [self = shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
}

void Connection::on_write(error_code ec) {
  writing_ = false;
  if (ec) {
    if (state_ != State::closing && state_ != State::done) fail("write: " + ec.message());
    drop_queue();
    return;
  }
  auto& st = w_.stats();
  const Out& sent = out_.front();
  if (sent.window) {
    --st.pending_window;
    ++sent_window_;
    st.expected_window += plan_.room_members[room_];
    st.send_lag.record(now_ns() - sent.scheduled);
  }
  out_.pop_front();
  if (!out_.empty()) do_write();
}

void Connection::drop_queue() {
  auto& st = w_.stats();
  for (const auto& o : out_) {
    if (o.window) --st.pending_window;
  }
  out_.clear();
}

void Connection::fail(std::string reason) {
  auto& st = w_.stats();
  const State was = state_;
  sending_ = false;
  timer_.cancel();
  state_ = State::done;
  if (!writing_) drop_queue();
  error_code ignored;
  ws_.next_layer().close(ignored);
  switch (was) {
    case State::idle:
    case State::opening:
    case State::greeting:
      ++st.connect_failures;
      ++st.connect_failure_reasons[reason];
      w_.note_settled();
      break;
    case State::ready:
      ++st.disconnects;
      ++st.disconnect_reasons[reason];
      break;
    case State::closing:
    case State::done:
      break;
  }
}

void Connection::close() {
  sending_ = false;
  timer_.cancel();
  switch (state_) {
    case State::ready:
    case State::greeting:
      state_ = State::closing;
      ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](error_code) {});
      break;
    case State::opening:
      // The read loop has not started: closing the socket fails the pending
      // connect or handshake, which counts it as a failure and settles it.
      fail("closed before it opened");
      break;
    case State::idle:
      state_ = State::done;
      break;
    case State::closing:
    case State::done:
      break;
  }
}

double self_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

void sleep_until_ns(std::int64_t t) { std::this_thread::sleep_until(to_time_point(t)); }

template <typename Map>
void add_all(Map& into, const Map& from) {
  for (const auto& [k, v] : from) into[k] += v;
}

}  // namespace

bool RunResult::senders_kept_up() const {
  // What the open senders were to send in the window.
  const double offered = options.rate * window_seconds * senders_open / std::max<double>(1, options.senders);
  return static_cast<double>(sent_window) >= 0.99 * offered;
}

std::uint64_t raise_file_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

RunResult run_load(const Options& o) {
  Plan plan(o);
  const auto& url_texts =
      o.urls.empty() ? std::vector<std::string>{o.protocol == Protocol::nudge ? "ws://127.0.0.1:8080/ws"
                                                                              : "ws://127.0.0.1:8000/socket.io/"}
                     : o.urls;
  {
    asio::io_context resolver_ioc;
    tcp::resolver resolver(resolver_ioc);
    for (const auto& text : url_texts) {
      Url url = Url::parse(text);
      error_code ec;
      auto results = resolver.resolve(url.host, std::to_string(url.port), ec);
      if (ec || results.empty()) throw std::runtime_error("cannot resolve '" + url.host + "': " + ec.message());
      plan.endpoints.push_back(*results.begin());
      switch (o.protocol) {
        case Protocol::nudge:
          plan.targets.push_back(url.target == "/" ? "/ws" : url.target);
          break;
        case Protocol::socket_io:
          plan.targets.push_back(url.target.find('?') == std::string::npos
                                     ? socketio_path(url.target == "/" ? "/socket.io/" : url.target)
                                     : url.target);
          break;
      }
      plan.urls.push_back(std::move(url));
    }
  }
  const std::uint64_t files = raise_file_limit();
  if (files < o.connections + 64ull) {
    throw std::runtime_error("the open-file limit is " + std::to_string(files) + ", too low for " +
                             std::to_string(o.connections) + " connections (raise it with ulimit -n)");
  }
  plan.run_id = std::random_device{}();
  for (std::uint32_t r = 0; r < o.rooms; ++r) plan.room_names.push_back(o.room_prefix + std::to_string(r));
  plan.room_members.assign(o.rooms, 0);

  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < o.threads; ++t) workers.push_back(std::make_unique<Worker>(plan));
  for (auto& w : workers) w->start();

  // Open: connection i on worker i mod threads, each worker at its share of the rate.
  const std::int64_t connect_started = now_ns();
  for (unsigned t = 0; t < o.threads; ++t) {
    std::vector<std::uint32_t> ids;
    for (std::uint32_t i = t; i < o.connections; i += o.threads) ids.push_back(i);
    workers[t]->post([w = workers[t].get(), ids = std::move(ids), rate = o.connect_rate / o.threads]() mutable {
      w->open_paced(std::move(ids), rate);
    });
  }
  const auto connect_deadline = connect_started + static_cast<std::int64_t>(o.connections / o.connect_rate * 1e9) +
                                o.connect_timeout.count() + 5'000'000'000;
  for (;;) {
    std::size_t settled = 0;
    for (auto& w : workers) settled += w->call([&w] { return w->settled(); });
    if (settled >= o.connections || now_ns() > connect_deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  RunResult result;
  result.options = o;
  result.options.urls = url_texts;
  result.run_id = plan.run_id;
  result.connect_seconds = (now_ns() - connect_started) / 1e9;
  result.acks_expected = o.protocol == Protocol::nudge || o.socketio_ack;
  for (auto& w : workers) {
    w->call([&w, &plan, &result] {
      for (const auto& c : w->connections()) {
        if (c->state() == Connection::State::ready) {
          ++plan.room_members[c->room()];
          ++result.connections_open;
        }
      }
      return 0;
    });
  }

  if (result.connections_open > 0) {
    // The timeline, then the start (posted: the workers see the plan complete).
    plan.t_start = now_ns() + 200'000'000;
    plan.t_warm = plan.t_start + o.warmup.count();
    plan.t_end = plan.t_warm + o.duration.count();
    for (auto& w : workers) {
      w->post([w = w.get()] {
        for (const auto& c : w->connections()) c->start_sending();
      });
    }
    sleep_until_ns(plan.t_warm);
    const double cpu_before = self_cpu_seconds();
    ProcessWatch watch(o.watch_pids);
    watch.start();
    sleep_until_ns(plan.t_end);
    result.loadgen_cpu_seconds = self_cpu_seconds() - cpu_before;
    if (auto self = read_proc_stat(static_cast<int>(::getpid()))) result.loadgen_rss_bytes = self->rss_bytes;
    result.watched = watch.stop();
    result.window_seconds = o.duration.count() / 1e9;

    // Drain: until every written send reached every open member of its room, or the limit.
    const std::int64_t drain_deadline = now_ns() + o.drain.count();
    for (;;) {
      std::uint64_t expected = 0, delivered = 0, pending = 0;
      for (auto& w : workers) {
        w->call([&w, &expected, &delivered, &pending] {
          expected += w->stats().expected_window;
          delivered += w->stats().deliveries_window;
          pending += w->stats().pending_window;
          return 0;
        });
      }
      if ((pending == 0 && delivered >= expected) || now_ns() >= drain_deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // Close, politely, for at most 3 s.
  for (auto& w : workers) {
    w->post([w = w.get()] {
      w->stop_opening();
      for (const auto& c : w->connections()) c->close();
    });
  }
  const std::int64_t close_deadline = now_ns() + 3'000'000'000;
  while (now_ns() < close_deadline) {
    std::size_t open = 0;
    for (auto& w : workers) {
      open += w->call([&w] {
        std::size_t n = 0;
        for (const auto& c : w->connections()) n += c->state() != Connection::State::done;
        return n;
      });
    }
    if (open == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : workers) w->join();

  // Merge. Every worker has stopped: its state is ours to read.
  std::vector<std::uint64_t> sent_by(o.senders, 0);
  for (auto& w : workers) {
    for (const auto& c : w->connections()) {
      if (c->id() >= o.senders) continue;
      sent_by[c->id()] = c->sent_window();
      result.sent_window += c->sent_window();
      result.senders_open += c->was_ready();
    }
  }
  for (auto& w : workers) {
    const WorkerStats& st = w->stats();
    result.delivery.merge(st.delivery);
    result.ack.merge(st.ack);
    result.send_lag.merge(st.send_lag);
    result.deliveries_window += st.deliveries_window;
    result.cross_instance_window += st.cross_instance_window;
    result.frames_window += st.frames_window;
    result.acks_window += st.acks_window;
    result.errors_window += st.errors_window;
    result.errors_total += st.errors_total;
    result.skipped_window += st.skipped_window;
    result.foreign += st.foreign;
    result.misrouted += st.misrouted;
    result.malformed += st.malformed;
    result.connect_failures += st.connect_failures;
    result.disconnects += st.disconnects;
    result.expected_window += st.expected_window;
    add_all(result.error_codes, st.error_codes);
    add_all(result.connect_failure_reasons, st.connect_failure_reasons);
    add_all(result.disconnect_reasons, st.disconnect_reasons);
    for (const auto& c : w->connections()) {
      if (!c->was_ready()) continue;
      const auto& pairs = c->pairs();
      for (std::size_t k = 0; k < pairs.size(); ++k) {
        const std::uint32_t sender = c->room() + static_cast<std::uint32_t>(k) * o.rooms;
        result.lost += pairs[k].lost(sent_by[sender]);
        result.duplicates += pairs[k].duplicates();
        result.reordered += pairs[k].reordered();
        result.too_late += pairs[k].too_late();
      }
    }
  }
  result.ceiling = o.ceiling;
  result.near_ceiling = result.ceiling > 0 && result.ceiling_share() > kCeilingShare;
  if (result.acks_expected) {
    const std::uint64_t answered = result.acks_window + result.errors_window;
    result.unanswered = result.sent_window > answered ? result.sent_window - answered : 0;
  }
  return result;
}

}  // namespace nudge::bench
