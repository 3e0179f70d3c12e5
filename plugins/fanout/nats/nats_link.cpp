#include "nats_link.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include <nats/nats.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include "nudge/sdk/log_limiter.hpp"

namespace nudge::plugins::nats {

namespace {

constexpr auto kLogInterval = std::chrono::seconds(10);
/// How long stop waits for libnats to make its last callbacks, beyond
/// connect_timeout_ms (a reconnect attempt in progress finishes first).
constexpr auto kQuietGrace = std::chrono::seconds(5);

/// libnats's last error on this thread, else the status's text.
std::string error_text(natsStatus status) {
  natsStatus ignored = NATS_OK;
  const char* text = nats_GetLastError(&ignored);
  if (text && *text) return text;
  return natsStatus_GetText(status);
}

std::string connected_url(natsConnection* nc) {
  char buffer[512] = {};
  if (natsConnection_GetConnectedUrl(nc, buffer, sizeof(buffer)) != NATS_OK || buffer[0] == '\0') return {};
  return redact_url(buffer);
}

/// libnats runs library-wide threads (timers, callbacks, message delivery)
/// that outlive every connection and are never stopped by this plugin
/// (nats_Close is process-wide). The runtime unloads the plugin, and with
/// it libnats, when the pipeline ends; marked RTLD_NODELETE, libnats stays
/// mapped for those threads until the process exits.
void pin_libnats() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&natsConnection_Connect), &info) != 0 && info.dli_fname)
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  });
}

/// Keeps this plugin's code mapped too (used only when libnats did not
/// finish calling back within the grace period).
void pin_self() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&pin_self), &info) != 0 && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

struct Job {
  enum class Kind { publish, frame, subscribe, unsubscribe, resync, count_drops };
  Kind kind;
  MessagePtr message;
  std::string subject;  // subscribe, unsubscribe; frame: the room
  std::string frame;
};

}  // namespace

struct NatsLink::Shared : std::enable_shared_from_this<NatsLink::Shared> {
  Shared(const NatsConfig& c, Context& ctx, Counters k, NatsLink* l, std::weak_ptr<int> a)
      : config(c),
        context(ctx),
        counters(k),
        executor(ctx.executor()),
        link(l),
        alive(std::move(a)),
        max_queued_bytes(static_cast<std::size_t>(c.reconnect_buffer_bytes)),
        max_inbox(static_cast<std::size_t>(c.max_pending_messages)) {}

  // Immutable after construction; read from every thread.
  const NatsConfig config;
  Context& context;  // logger and counters are thread-safe
  const Counters counters;
  const boost::asio::any_io_executor executor;
  NatsLink* const link;  // dereferenced only on the executor, after checking `alive`
  const std::weak_ptr<int> alive;
  const std::size_t max_queued_bytes;
  const std::size_t max_inbox;

  // Guarded by `mutex`; shared by the event loop, the link's thread and libnats's threads.
  std::mutex mutex;
  std::condition_variable wake;   // jobs, or stopping
  std::condition_variable quiet;  // libnats made its last callback
  std::deque<Job> jobs;
  std::size_t queued_bytes = 0;
  bool stopping = false;
  std::function<void()> stop_done;
  bool detached = false;  // the link is gone: post nothing to the executor
  std::vector<Inbound> inbox;
  bool inbox_posted = false;
  bool overflowing = false;
  bool closed_pending = false;    // a connection exists whose closed callback has not run
  int open_subscriptions = 0;     // subscriptions whose completion callback has not run
  bool reopen_requested = false;  // libnats gave up on the connection: make a new one at reopen_at
  std::chrono::steady_clock::time_point reopen_at{};

  // The link's thread only.
  natsOptions* options = nullptr;
  natsConnection* nc = nullptr;
  std::map<std::string, natsSubscription*, std::less<>> subscriptions;
  std::map<natsSubscription*, std::int64_t> drops_counted;          // libnats's own drops, already in the counter
  std::optional<std::chrono::steady_clock::time_point> recount_at;  // while libnats keeps dropping
  std::set<std::string, std::less<>> wanted;
  LogLimiter publish_error_log{kLogInterval};
  LogLimiter drop_log{kLogInterval};
  LogLimiter subscribe_error_log{kLogInterval};
  std::uint64_t held_while_down = 0;  // publishes in libnats's reconnect buffer (about)

  // The link's thread.
  void run();
  void connect();
  void discard_connection();
  void request_reopen_locked();
  void execute(const Job& job);
  void publish(const Message& message);
  void publish_bytes(const std::string& subject, const std::string& bytes);
  void subscribe(const std::string& subject);
  void unsubscribe(const std::string& subject);
  void shutdown();
  bool count_drops(natsSubscription* sub);
  void count_all_drops();

  // Any thread, with `mutex` held and `detached` false.
  void post_event_locked(LinkEvent event, std::string detail);
  void push_job_locked(Job job);
  // libnats's threads.
  void push_inbound(Inbound&& inbound);
  static void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void on_complete(void* closure);
  static void on_connected(natsConnection* nc, void* closure);
  static void on_disconnected(natsConnection* nc, void* closure);
  static void on_reconnected(natsConnection* nc, void* closure);
  static void on_closed(natsConnection* nc, void* closure);
  static void on_error(natsConnection* nc, natsSubscription* sub, natsStatus err, void* closure);
};

// ---- libnats's threads ------------------------------------------------------

void NatsLink::Shared::post_event_locked(LinkEvent event, std::string detail) {
  boost::asio::post(executor, [link = link, alive = alive, event, detail = std::move(detail)] {
    if (!alive.expired()) link->deliver_event(event, detail);
  });
}

void NatsLink::Shared::push_job_locked(Job job) {
  jobs.push_back(std::move(job));
  if (jobs.size() == 1) wake.notify_one();
}

void NatsLink::Shared::on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* self = static_cast<Shared*>(closure);
  try {
    Inbound inbound;
    const int length = natsMsg_GetDataLength(msg);
    const char* data = natsMsg_GetData(msg);
    inbound.bytes = length > 0 ? static_cast<std::size_t>(length) : 0;
    std::shared_ptr<Message> message;
    PresenceFrame frame;
    // Decoding is a pure function: done here, off the event loop.
    const std::string_view bytes(inbound.bytes ? data : "", inbound.bytes);
    if (is_presence_frame(bytes) && decode_presence_frame(bytes, frame).ok()) {
      inbound.presence = std::move(frame);
    } else if (Status s = decode_envelope(std::string_view(inbound.bytes ? data : "", inbound.bytes), message);
               s.ok()) {
      inbound.message = std::move(message);
    } else {
      inbound.error = s.message();
      const char* subject = natsMsg_GetSubject(msg);
      inbound.subject = subject ? subject : "";
    }
    natsMsg_Destroy(msg);
    msg = nullptr;
    self->push_inbound(std::move(inbound));
  } catch (...) {
    // Out of memory: the message is lost (best-effort), the process goes on.
    if (msg) natsMsg_Destroy(msg);
  }
}

void NatsLink::Shared::push_inbound(Inbound&& inbound) {
  std::lock_guard lock(mutex);
  if (detached) return;
  if (inbox.size() >= max_inbox) {
    counters.dropped_slow_consumer.add();
    if (!overflowing) {
      overflowing = true;
      counters.slow_consumer_events.add();
      post_event_locked(LinkEvent::slow_consumer, "the event loop is " + std::to_string(max_inbox) +
                                                      " received messages behind (max_pending_messages)");
    }
    return;
  }
  inbox.push_back(std::move(inbound));
  if (inbox_posted) return;
  inbox_posted = true;
  boost::asio::post(executor, [link = link, alive = alive] {
    if (!alive.expired()) link->drain();
  });
}

void NatsLink::Shared::on_complete(void* closure) {
  auto* self = static_cast<Shared*>(closure);
  std::lock_guard lock(self->mutex);
  --self->open_subscriptions;
  self->quiet.notify_all();
}

void NatsLink::Shared::on_connected(natsConnection* nc, void* closure) {
  auto* self = static_cast<Shared*>(closure);
  std::string url = connected_url(nc);
  std::lock_guard lock(self->mutex);
  if (self->detached) return;
  self->push_job_locked(Job{Job::Kind::resync, nullptr, {}, {}});
  self->post_event_locked(LinkEvent::connected, std::move(url));
}

void NatsLink::Shared::on_disconnected(natsConnection*, void* closure) {
  auto* self = static_cast<Shared*>(closure);
  std::lock_guard lock(self->mutex);
  if (!self->detached) self->post_event_locked(LinkEvent::disconnected, {});
}

void NatsLink::Shared::on_reconnected(natsConnection* nc, void* closure) {
  auto* self = static_cast<Shared*>(closure);
  std::string url = connected_url(nc);
  std::lock_guard lock(self->mutex);
  if (self->detached) return;
  self->push_job_locked(Job{Job::Kind::resync, nullptr, {}, {}});
  self->post_event_locked(LinkEvent::reconnected, std::move(url));
}

void NatsLink::Shared::on_closed(natsConnection* nc, void* closure) {
  auto* self = static_cast<Shared*>(closure);
  const char* last = nullptr;
  natsConnection_GetLastError(nc, &last);
  const std::string why = last && *last ? last : "no reason given";
  std::lock_guard lock(self->mutex);
  self->closed_pending = false;
  self->quiet.notify_all();
  if (self->detached || self->stopping) return;
  // Closed without stop(): libnats gave up on this connection (it does
  // after a failed handshake on the first connect, or when a server refuses
  // the credentials twice). The link's thread makes a new one.
  self->post_event_locked(LinkEvent::disconnected, "libnats closed the connection: " + why);
  self->request_reopen_locked();
}

void NatsLink::Shared::request_reopen_locked() {
  reopen_requested = true;
  reopen_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.reconnect_wait_ms);
  wake.notify_one();
}

void NatsLink::Shared::on_error(natsConnection*, natsSubscription* sub, natsStatus err, void* closure) {
  auto* self = static_cast<Shared*>(closure);
  const char* subject = sub ? natsSubscription_GetSubject(sub) : nullptr;
  const std::string where = subject ? std::string(" on subject '") + subject + "'" : std::string();
  std::lock_guard lock(self->mutex);
  if (self->detached) return;
  if (err == NATS_SLOW_CONSUMER) {
    self->counters.slow_consumer_events.add();
    self->push_job_locked(Job{Job::Kind::count_drops, nullptr, {}, {}});
    self->post_event_locked(LinkEvent::slow_consumer, "libnats dropped received messages" + where + ": more than " +
                                                          std::to_string(self->max_inbox) +
                                                          " were waiting (max_pending_messages)");
  } else {
    self->post_event_locked(LinkEvent::async_error, std::string(natsStatus_GetText(err)) + where);
  }
}

// ---- the link's thread ------------------------------------------------------

void NatsLink::Shared::run() {
  const auto due = [](const std::optional<std::chrono::steady_clock::time_point>& at) {
    return at && std::chrono::steady_clock::now() >= *at;
  };
  connect();
  while (true) {
    std::deque<Job> batch;
    bool stop = false;
    bool reopen = false;
    {
      std::unique_lock lock(mutex);
      const auto next = [this]() -> std::optional<std::chrono::steady_clock::time_point> {
        if (reopen_requested && recount_at) return std::min(reopen_at, *recount_at);
        if (reopen_requested) return reopen_at;
        return recount_at;
      };
      while (!(!jobs.empty() || stopping || due(next()))) {
        if (const auto at = next()) wake.wait_until(lock, *at);
        else wake.wait(lock);
      }
      batch.swap(jobs);
      queued_bytes = 0;
      stop = stopping;
      if (!stop && reopen_requested && std::chrono::steady_clock::now() >= reopen_at) {
        reopen = true;
        reopen_requested = false;
      }
    }
    if (due(recount_at)) count_all_drops();
    // At stop, publishes that cannot go out now would die in libnats's
    // reconnect buffer at close: they are counted as dropped instead.
    const bool up = nc && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED;
    std::uint64_t dropped_at_stop = stop && !up ? std::exchange(held_while_down, 0) : 0;
    for (const Job& job : batch) {
      if (stop && job.kind == Job::Kind::publish && !up) ++dropped_at_stop;
      else execute(job);
    }
    if (dropped_at_stop > 0) {
      counters.dropped.add(dropped_at_stop);
      context.logger().warn("dropped ", dropped_at_stop, " messages at stop that were waiting for nats at '",
                            config.endpoints(), "' (disconnected)");
    }
    if (stop) break;
    if (reopen) {
      discard_connection();
      connect();
    }
  }
  shutdown();
}

void NatsLink::Shared::connect() {
  natsConnection* conn = nullptr;
  // Blocks for one round over the servers at most (connect_timeout_ms each);
  // with RetryOnFailedConnect libnats then goes on in the background.
  const natsStatus s = natsConnection_Connect(&conn, options);  // copies the options
  const std::string why = s == NATS_OK ? std::string() : error_text(s);
  const std::string url = s == NATS_OK ? connected_url(conn) : std::string();
  std::lock_guard lock(mutex);
  if (s == NATS_OK || s == NATS_NOT_YET_CONNECTED) {
    nc = conn;
    closed_pending = true;
  } else if (!stopping) {
    request_reopen_locked();
  }
  if (detached) return;
  switch (s) {
    case NATS_OK:
      post_event_locked(LinkEvent::connected, url);
      break;
    case NATS_NOT_YET_CONNECTED:
      post_event_locked(LinkEvent::connect_failed,
                        "no server answered (connection refused or unreachable, or no handshake within "
                        "connect_timeout_ms = " +
                            std::to_string(config.connect_timeout_ms) + " ms)");
      break;
    default:
      post_event_locked(LinkEvent::connect_failed, why);
      break;
  }
}

void NatsLink::Shared::discard_connection() {
  // libnats closed it (and every subscription) already.
  for (const auto& [subject, sub] : subscriptions) {
    count_drops(sub);
    natsSubscription_Destroy(sub);
  }
  subscriptions.clear();  // `wanted` stays: the next connection subscribes again
  drops_counted.clear();
  if (nc) {
    natsConnection_Destroy(nc);
    nc = nullptr;
  }
  if (held_while_down > 0) {
    counters.dropped.add(held_while_down);
    std::uint64_t suppressed = 0;
    if (drop_log.allow(suppressed))
      context.logger().warn("dropped ", held_while_down, " messages held for nats at '", config.endpoints(),
                            "' when libnats gave up on the connection; ", counters.dropped.value(), " dropped so far");
    held_while_down = 0;
  }
}

void NatsLink::Shared::execute(const Job& job) {
  switch (job.kind) {
    case Job::Kind::publish:
      publish(*job.message);
      return;
    case Job::Kind::frame:
      publish_bytes(config.subject_for(job.subject), job.frame);
      return;
    case Job::Kind::subscribe:
      wanted.insert(job.subject);
      subscribe(job.subject);
      return;
    case Job::Kind::unsubscribe:
      wanted.erase(job.subject);
      unsubscribe(job.subject);
      return;
    case Job::Kind::count_drops:
      count_all_drops();
      return;
    case Job::Kind::resync:
      held_while_down = 0;  // connected: libnats has sent what it held
      // Subscriptions libnats refused (say, while its buffer was full) are
      // tried again once connected; the others libnats restores itself.
      for (const auto& subject : wanted)
        if (!subscriptions.contains(subject)) subscribe(subject);
      return;
  }
}

void NatsLink::Shared::publish(const Message& message) {
  std::uint64_t suppressed = 0;
  if (!nc) {  // between two connections: nowhere to hold it
    counters.dropped.add();
    if (drop_log.allow(suppressed))
      context.logger().warn("dropping messages: there is no connection to nats at '", config.endpoints(), "' yet; ",
                            counters.dropped.value(), " dropped so far");
    return;
  }
  publish_bytes(config.subject_per_room ? config.subject_for(message.room) : config.subject, message.envelope());
}

void NatsLink::Shared::publish_bytes(const std::string& subject_name, const std::string& envelope) {
  std::uint64_t suppressed = 0;
  if (!nc) {
    counters.dropped.add();
    return;
  }
  const std::string* subject = &subject_name;
  natsStatus s = NATS_INVALID_ARG;
  if (envelope.size() <= static_cast<std::size_t>(INT_MAX))
    s = natsConnection_Publish(nc, subject->c_str(), envelope.data(), static_cast<int>(envelope.size()));
  switch (s) {
    case NATS_OK:
      counters.published.add();
      // Held in libnats's reconnect buffer until the connection is back.
      if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) ++held_while_down;
      return;
    case NATS_INSUFFICIENT_BUFFER:
      counters.dropped.add();
      if (drop_log.allow(suppressed))
        context.logger().warn("dropping messages: nats at '", config.endpoints(),
                              "' is unreachable and the reconnect buffer of ", config.reconnect_buffer_bytes,
                              " bytes is full (reconnect_buffer_bytes); ", counters.dropped.value(), " dropped so far");
      return;
    default:
      counters.publish_errors.add();
      if (publish_error_log.allow(suppressed))
        context.logger().warn(
            "nats refused a ", envelope.size(), "-byte publish on subject '", *subject, "': ", error_text(s),
            suppressed ? " (" + std::to_string(suppressed) + " more publish errors since the last report)"
                       : std::string());
      return;
  }
}

void NatsLink::Shared::subscribe(const std::string& subject) {
  if (!nc || subscriptions.contains(subject)) return;
  natsSubscription* sub = nullptr;
  const natsStatus s = natsConnection_Subscribe(&sub, nc, subject.c_str(), &Shared::on_message, this);
  if (s != NATS_OK) {
    std::uint64_t suppressed = 0;
    if (subscribe_error_log.allow(suppressed))
      context.logger().warn("cannot subscribe to subject '", subject, "' on nats: ", error_text(s),
                            "; trying again on the next (re)connect");
    return;
  }
  {
    std::lock_guard lock(mutex);
    ++open_subscriptions;
  }
  if (natsSubscription_SetOnCompleteCB(sub, &Shared::on_complete, this) != NATS_OK) {
    std::lock_guard lock(mutex);
    --open_subscriptions;  // already closed: its handler runs no more
  }
  subscriptions.emplace(subject, sub);
}

void NatsLink::Shared::unsubscribe(const std::string& subject) {
  const auto it = subscriptions.find(subject);
  if (it == subscriptions.end()) return;
  // Closes the subscription (no UNSUB is needed while reconnecting: the
  // server forgot it); messages already queued may still be handed over.
  natsSubscription_Unsubscribe(it->second);
  count_drops(it->second);
  drops_counted.erase(it->second);
  natsSubscription_Destroy(it->second);
  subscriptions.erase(it);
}

bool NatsLink::Shared::count_drops(natsSubscription* sub) {
  std::int64_t total = 0;
  if (natsSubscription_GetDropped(sub, &total) != NATS_OK) return false;
  std::int64_t& counted = drops_counted[sub];
  const bool grew = total > counted;
  if (grew) counters.dropped_slow_consumer.add(static_cast<std::uint64_t>(total - counted));
  counted = total;
  return grew;
}

void NatsLink::Shared::count_all_drops() {
  // libnats reports a slow consumer once, when it starts dropping: counted
  // again every 100 ms for as long as the count grows.
  bool grew = false;
  for (const auto& [subject, sub] : subscriptions) grew = count_drops(sub) || grew;
  recount_at.reset();
  if (grew) recount_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
}

void NatsLink::Shared::shutdown() {
  if (nc) {
    for (const auto& [subject, sub] : subscriptions) {
      count_drops(sub);
      natsSubscription_Unsubscribe(sub);
    }
    if (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED) {
      // What was published reaches the server (PING/PONG round trip).
      const natsStatus s = natsConnection_FlushTimeout(nc, std::min<std::int64_t>(config.connect_timeout_ms, 1000));
      if (s != NATS_OK) context.logger().debug("the last flush to nats did not complete: ", error_text(s));
    }
    // Stops reconnecting, joins libnats's threads of this connection and
    // closes every subscription; the closed callback follows.
    natsConnection_Close(nc);
  }
  for (const auto& [subject, sub] : subscriptions) natsSubscription_Destroy(sub);
  subscriptions.clear();
  drops_counted.clear();

  std::unique_lock lock(mutex);
  const bool calm = quiet.wait_for(lock, std::chrono::milliseconds(config.connect_timeout_ms) + kQuietGrace,
                                   [this] { return !closed_pending && open_subscriptions == 0; });
  if (!calm) {
    // libnats may still call back: this state and this code stay alive for
    // it, and nothing more is posted to the executor.
    detached = true;
    new std::shared_ptr<Shared>(shared_from_this());  // deliberately never freed
    pin_self();
    context.logger().warn("libnats did not finish its callbacks within ",
                          config.connect_timeout_ms + std::chrono::milliseconds(kQuietGrace).count(),
                          " ms of closing the connection; leaving it behind");
  }
  if (nc) {
    natsConnection_Destroy(nc);
    nc = nullptr;
  }
  natsOptions_Destroy(options);
  options = nullptr;
  if (detached || !stop_done) return;
  boost::asio::post(executor, [link = link, alive = alive, done = std::move(stop_done)]() mutable {
    if (!alive.expired()) link->finish_stop(std::move(done));
  });
}

// ---- the event loop ---------------------------------------------------------

NatsLink::NatsLink(const NatsConfig& config, Context& context, Listener& listener, Counters counters)
    : listener_(listener) {
  shared_ = std::make_shared<Shared>(config, context, counters, this, alive_);
}

NatsLink::~NatsLink() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(shared_->mutex);
    shared_->detached = true;
    shared_->stopping = true;
    shared_->stop_done = nullptr;
    shared_->wake.notify_all();
  }
  thread_.join();
}

Status NatsLink::start() {
  if (thread_.joinable() || shared_->options)
    return Status::error(StatusCode::internal, "the nats link was started twice");
  pin_libnats();
  const NatsConfig& c = shared_->config;
  std::vector<const char*> urls;
  for (const auto& server : c.servers) urls.push_back(server.url.c_str());
  std::string name = "nudge:";
  name += shared_->context.pipeline_name();
  name += ':';
  name += shared_->context.instance_id();
  void* closure = shared_.get();

  natsOptions* o = nullptr;
  natsStatus s = natsOptions_Create(&o);  // opens the library (its threads) on first use
  if (s == NATS_OK) s = natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetName(o, name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, c.connect_timeout_ms);
  // A socket write that cannot finish in this time fails the connection
  // (which reconnects) instead of holding the connection's lock forever.
  if (s == NATS_OK) s = natsOptions_SetWriteDeadline(o, c.connect_timeout_ms);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, c.reconnect_wait_ms);
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(o, static_cast<int>(c.reconnect_buffer_bytes));
  if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(o, static_cast<int>(c.max_pending_messages));
  // Publishes are buffered and written by libnats's flusher thread.
  if (s == NATS_OK) s = natsOptions_SetSendAsap(o, false);
  // Per-room subscriptions share libnats's delivery pool instead of a thread each.
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(o, true);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, &Shared::on_connected, closure);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, &Shared::on_disconnected, closure);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, &Shared::on_reconnected, closure);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(o, &Shared::on_closed, closure);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, &Shared::on_error, closure);
  if (s != NATS_OK) {
    const std::string why = error_text(s);
    natsOptions_Destroy(o);
    return Status::error(StatusCode::internal, "cannot set up the nats client: " + why);
  }
  shared_->options = o;
  try {
    thread_ = std::thread([shared = shared_] { shared->run(); });
  } catch (const std::exception& e) {
    natsOptions_Destroy(std::exchange(shared_->options, nullptr));
    return Status::error(StatusCode::internal, std::string("cannot start the nats thread: ") + e.what());
  }
  return Status::success();
}

bool NatsLink::publish(const MessagePtr& message) {
  const std::size_t bytes = message->envelope().size();
  std::lock_guard lock(shared_->mutex);
  // One message always fits, however large, so that none is refused forever.
  if (!shared_->jobs.empty() && shared_->queued_bytes + bytes > shared_->max_queued_bytes) return false;
  shared_->queued_bytes += bytes;
  shared_->push_job_locked(Job{Job::Kind::publish, message, {}, {}});
  return true;
}

bool NatsLink::publish_frame(const std::string& room, std::string frame) {
  const std::size_t bytes = frame.size();
  std::lock_guard lock(shared_->mutex);
  if (!shared_->jobs.empty() && shared_->queued_bytes + bytes > shared_->max_queued_bytes) return false;
  shared_->queued_bytes += bytes;
  shared_->push_job_locked(Job{Job::Kind::frame, nullptr, room, std::move(frame)});
  return true;
}

std::size_t NatsLink::queued_bytes() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->queued_bytes;
}

void NatsLink::subscribe(const std::string& subject) {
  std::lock_guard lock(shared_->mutex);
  shared_->push_job_locked(Job{Job::Kind::subscribe, nullptr, subject, {}});
}

void NatsLink::unsubscribe(const std::string& subject) {
  std::lock_guard lock(shared_->mutex);
  shared_->push_job_locked(Job{Job::Kind::unsubscribe, nullptr, subject, {}});
}

void NatsLink::stop(std::function<void()> done) {
  if (!thread_.joinable()) {
    boost::asio::post(shared_->executor, std::move(done));
    return;
  }
  std::lock_guard lock(shared_->mutex);
  shared_->stopping = true;
  shared_->stop_done = std::move(done);
  shared_->wake.notify_all();
}

void NatsLink::finish_stop(std::function<void()> done) {
  // The thread posted this as its last action: it is ending, or has ended.
  if (thread_.joinable()) thread_.join();
  done();
}

void NatsLink::drain() {
  {
    std::lock_guard lock(shared_->mutex);
    spare_.swap(shared_->inbox);
    shared_->inbox_posted = false;
    shared_->overflowing = false;
  }
  listener_.on_inbound(spare_);
  spare_.clear();
}

void NatsLink::deliver_event(LinkEvent event, const std::string& detail) { listener_.on_link_event(event, detail); }

}  // namespace nudge::plugins::nats
