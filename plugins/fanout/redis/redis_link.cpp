#include "redis_link.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>

#include "hiredis_asio.hpp"

namespace nudge::plugins::redis {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uintptr_t kAuth = 1;
constexpr std::uintptr_t kSelect = 2;
constexpr std::uintptr_t kName = 3;  // not fatal: a proxy or an ACL may refuse it
constexpr auto kReminderInterval = std::chrono::seconds(30);

}  // namespace

RedisLink::RedisLink(std::string role, const RedisConfig& config, Context& context, bool select_db,
                     std::string client_name, Hooks hooks, Counter& reconnects)
    : role_(std::move(role)),
      config_(config),
      context_(context),
      select_db_(select_db),
      client_name_(std::move(client_name)),
      hooks_(std::move(hooks)),
      reconnects_(reconnects),
      resolver_(context.executor()),
      retry_timer_(context.executor()),
      attempt_timer_(context.executor()),
      stop_timer_(context.executor()),
      jitter_(static_cast<std::uint32_t>(Clock::now().time_since_epoch().count() ^
                                         reinterpret_cast<std::uintptr_t>(this))) {}

RedisLink::~RedisLink() {
  stopped_ = true;
  stop_done_ = nullptr;
  abandon();
}

std::int64_t RedisLink::ms_since(Clock::time_point t) const {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

void RedisLink::start() {
  down_since_ = last_reminder_ = Clock::now();
  attempt();
}

void RedisLink::attempt() {
  if (stopped_) return;
  abandon();  // a context left from the previous try, if hiredis had not freed it yet
  const std::uint64_t id = ++attempt_id_;
  std::weak_ptr<int> alive = alive_;
  attempt_timer_.expires_after(milliseconds(config_.connect_timeout_ms));
  attempt_timer_.async_wait([this, id, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired() || id != attempt_id_ || ready_) return;
    abandon();
    failed("no answer within " + std::to_string(config_.connect_timeout_ms) + " ms (connect_timeout_ms)");
  });

  boost::system::error_code ec;
  asio::ip::make_address(config_.url.host, ec);
  if (!ec) {
    connect_to(config_.url.host);
    return;
  }
  // hiredis would resolve the name with a blocking getaddrinfo; Asio does it
  // off the event loop and hiredis is handed an address.
  resolver_.async_resolve(
      config_.url.host, std::to_string(config_.url.port),
      [this, id, alive](const boost::system::error_code& rec, const asio::ip::tcp::resolver::results_type& results) {
        if (alive.expired() || id != attempt_id_ || stopped_) return;
        if (rec || results.empty()) {
          failed("cannot resolve '" + config_.url.host + "': " + (rec ? rec.message() : "no address"));
          return;
        }
        // IPv4 first, as hiredis itself does.
        auto it = std::find_if(results.begin(), results.end(),
                               [](const auto& entry) { return entry.endpoint().address().is_v4(); });
        if (it == results.end()) it = results.begin();
        connect_to(it->endpoint().address().to_string());
      });
}

void RedisLink::connect_to(const std::string& address) {
  redisAsyncContext* ac = redisAsyncConnect(address.c_str(), config_.url.port);
  if (!ac) {
    failed("cannot allocate a hiredis context");
    return;
  }
  if (ac->err) {
    const std::string why = ac->errstr;
    redisAsyncFree(ac);
    failed(why);
    return;
  }
  ac->data = this;
  std::string error;
  const bool attached = AsioAdapter::attach(
      ac, context_.executor(),
      [this](redisAsyncContext* freed) {
        if (freed->data != this) return;  // abandoned: nothing of it reaches the link
        freed->data = nullptr;
        if (ac_ == freed) ac_ = nullptr;
        handle_freed(freed->err ? freed->errstr : "the connection was closed");
      },
      error);
  if (!attached) {
    ac->data = nullptr;
    redisAsyncFree(ac);
    failed(error);
    return;
  }
  ac_ = ac;
  // Registering the connect callback asks for the first write event, which
  // tells that the non-blocking connect finished.
  redisAsyncSetConnectCallback(ac, &RedisLink::on_connect);
}

void RedisLink::on_connect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisLink*>(ac->data);
  // On failure hiredis frees the context right after this; the cleanup hook
  // reports it with the error (handle_freed).
  if (self && status == REDIS_OK) self->handle_connected();
}

void RedisLink::handle_connected() {
  redisEnableKeepAlive(&ac_->c);
  std::vector<std::pair<std::uintptr_t, std::vector<std::string>>> login;
  if (config_.url.has_password) {
    if (config_.url.username.empty()) login.push_back({kAuth, {"AUTH", config_.url.password}});
    else login.push_back({kAuth, {"AUTH", config_.url.username, config_.url.password}});
  }
  if (select_db_ && config_.url.db != 0) login.push_back({kSelect, {"SELECT", std::to_string(config_.url.db)}});
  if (!client_name_.empty()) login.push_back({kName, {"CLIENT", "SETNAME", client_name_}});
  if (login.empty()) {
    became_ready();
    return;
  }
  login_pending_ = static_cast<int>(login.size());
  for (const auto& [kind, args] : login) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAsyncCommandArgv(ac_, &RedisLink::on_login_reply, reinterpret_cast<void*>(kind),
                              static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK) {
      abandon();
      failed("cannot queue the login commands");
      return;
    }
  }
}

void RedisLink::on_login_reply(redisAsyncContext* ac, void* reply, void* command) {
  auto* self = static_cast<RedisLink*>(ac->data);
  if (!self || !reply) return;  // abandoned, or the connection is going away
  const auto* r = static_cast<const redisReply*>(reply);
  const auto kind = reinterpret_cast<std::uintptr_t>(command);
  if (r->type == REDIS_REPLY_ERROR && kind == kName) {
    self->context_.logger().debug("redis refused CLIENT SETNAME: ", std::string(r->str, r->len));
  } else if (r->type == REDIS_REPLY_ERROR) {
    self->drop(std::string(kind == kAuth ? "AUTH" : "SELECT") + " was refused: " + std::string(r->str, r->len));
    return;
  }
  if (--self->login_pending_ == 0) self->became_ready();
}

void RedisLink::became_ready() {
  ++attempt_id_;
  attempt_timer_.cancel();
  ready_ = true;
  const std::string endpoint = config_.url.endpoint();
  if (ever_ready_) {
    reconnects_.add();
    context_.logger().info("reconnected the ", role_, " connection to redis at '", endpoint, "' after ", attempts_ + 1,
                           " attempts / ", ms_since(down_since_), " ms");
  } else if (attempts_ > 0) {
    context_.logger().info("connected the ", role_, " connection to redis at '", endpoint, "' after ", attempts_ + 1,
                           " attempts / ", ms_since(down_since_), " ms");
  } else {
    context_.logger().info("connected the ", role_, " connection to redis at '", endpoint, "'");
  }
  ever_ready_ = true;
  attempts_ = 0;
  backoff_ms_ = 0;
  if (hooks_.on_ready) hooks_.on_ready();
}

void RedisLink::handle_freed(const std::string& why) {
  if (stopped_) finish_stop();
  else failed(why);
}

void RedisLink::drop(const std::string& why) {
  abandon();
  failed(why);
}

void RedisLink::abandon() {
  if (!ac_) return;
  redisAsyncContext* ac = std::exchange(ac_, nullptr);
  ac->data = nullptr;  // its callbacks and cleanup no longer reach the link
  redisAsyncFree(ac);  // hiredis defers this to the end of its callback when inside one
}

void RedisLink::failed(const std::string& why) {
  if (!stopped_) last_error_ = why;
  ++attempt_id_;
  attempt_timer_.cancel();
  resolver_.cancel();
  const bool was_ready = std::exchange(ready_, false);
  login_pending_ = 0;
  if (stopped_) {
    finish_stop();
    return;
  }
  const std::string endpoint = config_.url.endpoint();
  if (was_ready) {
    down_since_ = last_reminder_ = Clock::now();
    attempts_ = 0;
    backoff_ms_ = 0;
    context_.logger().warn("lost the ", role_, " connection to redis at '", endpoint, "': ", why,
                           "; reconnecting in the background");
    if (hooks_.on_lost) hooks_.on_lost();
  } else {
    ++attempts_;
    if (!ever_ready_ && attempts_ == 1) {
      context_.logger().warn("cannot connect the ", role_, " connection to redis at '", endpoint, "': ", why,
                             "; retrying in the background");
    } else if (Clock::now() - last_reminder_ >= kReminderInterval) {
      last_reminder_ = Clock::now();
      context_.logger().warn("the ", role_, " connection to redis at '", endpoint, "' is still down after ", attempts_,
                             " attempts / ", ms_since(down_since_), " ms: ", why);
    } else {
      context_.logger().debug("connect attempt ", attempts_, " of the ", role_, " connection to redis at '", endpoint,
                              "' failed: ", why);
    }
  }
  schedule_retry();
}

void RedisLink::schedule_retry() {
  backoff_ms_ = backoff_ms_ == 0 ? config_.reconnect_initial_ms : std::min(backoff_ms_ * 2, config_.reconnect_max_ms);
  // Up to a fifth less, so instances that lost the same server spread out.
  std::uniform_int_distribution<std::int64_t> jitter(0, backoff_ms_ / 5);
  const std::int64_t delay = backoff_ms_ - jitter(jitter_);
  std::weak_ptr<int> alive = alive_;
  retry_timer_.expires_after(milliseconds(delay));
  retry_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    attempt();
  });
}

void RedisLink::stop(std::function<void()> done) {
  stopped_ = true;
  const bool was_ready = std::exchange(ready_, false);
  ++attempt_id_;
  retry_timer_.cancel();
  attempt_timer_.cancel();
  resolver_.cancel();
  stop_done_ = std::move(done);
  if (!was_ready) abandon();  // still connecting or logging in: nothing to wait for
  if (!ac_) {
    finish_stop();
    return;
  }
  std::weak_ptr<int> alive = alive_;
  stop_timer_.expires_after(milliseconds(config_.connect_timeout_ms));
  stop_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired() || !ac_) return;
    context_.logger().warn("the ", role_, " connection to redis did not close within ", config_.connect_timeout_ms,
                           " ms; closing it now");
    abandon();
    finish_stop();
  });
  // Waits for replies already due (publishes in flight), then closes; the
  // cleanup hook calls finish_stop.
  redisAsyncDisconnect(ac_);
}

void RedisLink::finish_stop() {
  if (ac_ || !stop_done_) return;
  stop_timer_.cancel();
  asio::post(context_.executor(), std::exchange(stop_done_, nullptr));
}

std::string client_name(const Context& context, std::string_view suffix) {
  std::string name = "nudge:";
  name += context.pipeline_name();
  name += ':';
  name += context.instance_id();
  name += ':';
  name += suffix;
  for (char& c : name)
    if (c <= ' ' || c > '~') c = '_';
  return name;
}

}  // namespace nudge::plugins::redis
