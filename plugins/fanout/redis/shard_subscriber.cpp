#include "shard_subscriber.hpp"

#include <algorithm>
#include <utility>

#include <hiredis/hiredis.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include "cluster_slots.hpp"

namespace nudge::plugins::redis {

namespace asio = boost::asio;
using asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

std::string_view str(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
             ? std::string_view(r->str, r->len)
             : std::string_view();
}

bool is(const redisReply* r, std::string_view word) {
  const std::string_view s = str(r);
  return s.size() == word.size() &&
         std::equal(s.begin(), s.end(), word.begin(), [](char a, char b) { return (a | 0x20) == b; });
}

}  // namespace

ShardSubscriber::ShardSubscriber(std::string host, std::uint16_t port, const RedisConfig& config, Context& context,
                                 std::string client_name, Hooks hooks, Counter& reconnects)
    : host_(std::move(host)),
      port_(port),
      config_(config),
      context_(context),
      client_name_(std::move(client_name)),
      hooks_(std::move(hooks)),
      reconnects_(reconnects),
      resolver_(context.executor()),
      socket_(context.executor()),
      timer_(context.executor()),
      reader_(nullptr, &redisReaderFree),
      jitter_(static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count() ^
                                         reinterpret_cast<std::uintptr_t>(this))) {}

ShardSubscriber::~ShardSubscriber() {
  state_ = State::stopped;
  close();
}

std::string ShardSubscriber::endpoint() const {
  const bool v6 = host_.find(':') != std::string::npos;
  return (v6 ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
}

void ShardSubscriber::start() {
  if (state_ == State::idle) attempt();
}

void ShardSubscriber::stop() {
  state_ = State::stopped;
  close();
}

void ShardSubscriber::close() {
  ++generation_;
  resolver_.cancel();
  timer_.cancel();
  boost::system::error_code ignored;
  socket_.close(ignored);
  out_.clear();
  write_pending_ = false;
  reader_.reset();
}

void ShardSubscriber::attempt() {
  close();
  state_ = State::connecting;
  const std::uint64_t generation = generation_;
  std::weak_ptr<int> alive = alive_;
  timer_.expires_after(milliseconds(config_.connect_timeout_ms));
  timer_.async_wait([this, alive, generation](const boost::system::error_code& ec) {
    if (ec || alive.expired() || generation != generation_) return;
    fail("no connection within connect_timeout_ms (" + std::to_string(config_.connect_timeout_ms) + " ms)");
  });
  resolver_.async_resolve(
      host_, std::to_string(port_),
      [this, alive, generation](const boost::system::error_code& ec, const tcp::resolver::results_type& results) {
        if (alive.expired() || generation != generation_) return;
        if (ec) {
          fail("cannot resolve '" + host_ + "': " + ec.message());
          return;
        }
        asio::async_connect(socket_, results,
                            [this, alive, generation](const boost::system::error_code& ec2, const tcp::endpoint&) {
                              if (alive.expired() || generation != generation_) return;
                              if (ec2) {
                                fail(ec2.message());
                                return;
                              }
                              on_connected();
                            });
      });
}

void ShardSubscriber::on_connected() {
  timer_.cancel();
  boost::system::error_code ignored;
  socket_.set_option(asio::socket_base::keep_alive(true), ignored);
  reader_.reset(redisReaderCreate());
  state_ = State::ready;
  if (config_.url.has_password) {
    if (config_.url.username.empty()) send({"AUTH", config_.url.password});
    else send({"AUTH", config_.url.username, config_.url.password});
  }
  if (!client_name_.empty()) send({"CLIENT", "SETNAME", client_name_});
  // One SSUBSCRIBE per channel, pipelined: the channels of one command must
  // share a slot (CROSSSLOT otherwise).
  for (const auto& channel : channels_) send({"SSUBSCRIBE", channel});
  read_some();
  if (ever_ready_) {
    reconnects_.add();
    context_.logger().info("reconnected the subscribed connection to redis cluster node '", endpoint(), "'");
  }
  ever_ready_ = true;
  backoff_ms_ = 0;
  if (hooks_.on_ready) hooks_.on_ready();
}

void ShardSubscriber::subscribe(const std::string& channel) {
  if (!channels_.insert(channel).second) return;
  if (state_ == State::ready) send({"SSUBSCRIBE", channel});
}

void ShardSubscriber::unsubscribe(const std::string& channel) {
  if (channels_.erase(channel) == 0) return;
  if (state_ == State::ready) send({"SUNSUBSCRIBE", channel});
}

void ShardSubscriber::send(const std::vector<std::string_view>& args) {
  out_ += '*';
  out_ += std::to_string(args.size());
  out_ += "\r\n";
  for (const auto& a : args) {
    out_ += '$';
    out_ += std::to_string(a.size());
    out_ += "\r\n";
    out_ += a;
    out_ += "\r\n";
  }
  write_some();
}

void ShardSubscriber::write_some() {
  if (write_pending_ || out_.empty() || state_ != State::ready) return;
  write_pending_ = true;
  writing_ = std::exchange(out_, std::string());
  std::weak_ptr<int> alive = alive_;
  asio::async_write(socket_, asio::buffer(writing_),
                    [this, alive, generation = generation_](const boost::system::error_code& ec, std::size_t) {
                      if (alive.expired() || generation != generation_) return;
                      write_pending_ = false;
                      if (ec) {
                        fail("write failed: " + ec.message());
                        return;
                      }
                      write_some();
                    });
}

void ShardSubscriber::read_some() {
  std::weak_ptr<int> alive = alive_;
  socket_.async_read_some(
      asio::buffer(in_), [this, alive, generation = generation_](const boost::system::error_code& ec, std::size_t n) {
        if (alive.expired() || generation != generation_) return;
        if (ec) {
          fail(ec == asio::error::eof ? std::string("the server closed the connection") : ec.message());
          return;
        }
        if (redisReaderFeed(reader_.get(), in_.data(), n) != REDIS_OK) {
          fail("cannot parse the reply");
          return;
        }
        for (;;) {
          void* reply = nullptr;
          if (redisReaderGetReply(reader_.get(), &reply) != REDIS_OK) {
            fail("protocol error from the server");
            return;
          }
          if (!reply) break;
          std::unique_ptr<redisReply, void (*)(void*)> owned(static_cast<redisReply*>(reply), &freeReplyObject);
          const std::uint64_t before = generation_;
          handle(owned.get());
          if (generation_ != before || state_ != State::ready) return;  // a hook closed or failed the connection
        }
        read_some();
      });
}

void ShardSubscriber::handle(const redisReply* reply) {
  if (reply->type == REDIS_REPLY_ERROR) {
    const std::string_view text = str(reply);
    cluster::Redirect redirect;
    if (cluster::parse_redirect(text, redirect)) {
      // An SSUBSCRIBE sent to a node that does not own the slot (any more).
      if (hooks_.on_moved) hooks_.on_moved({});
      return;
    }
    fail("redis refused a command: " + std::string(text));
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;  // AUTH, CLIENT SETNAME
  const redisReply* kind = reply->element[0];
  if (is(kind, "smessage")) {
    if (hooks_.on_message) hooks_.on_message(str(reply->element[1]), str(reply->element[2]));
  } else if (is(kind, "sunsubscribe")) {
    // Redis sends this on its own to every subscriber of a slot that moved
    // away; our own SUNSUBSCRIBEs removed the channel before they went.
    const std::string channel(str(reply->element[1]));
    if (channels_.count(channel) && hooks_.on_moved) hooks_.on_moved(channel);
  }
}

void ShardSubscriber::fail(const std::string& why) {
  if (state_ == State::stopped) return;
  const bool was_ready = state_ == State::ready;
  last_error_ = why;
  close();
  state_ = State::backing_off;
  std::uint64_t suppressed = 0;
  if (error_log_.allow(suppressed))
    context_.logger().warn(was_ready ? "lost" : "cannot open", " the subscribed connection to redis cluster node '",
                           endpoint(), "': ", why, "; reconnecting in the background",
                           suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : "");
  backoff_ms_ = backoff_ms_ == 0 ? config_.reconnect_initial_ms : std::min(backoff_ms_ * 2, config_.reconnect_max_ms);
  std::uniform_int_distribution<std::int64_t> jitter(0, backoff_ms_ / 5);
  std::weak_ptr<int> alive = alive_;
  timer_.expires_after(milliseconds(backoff_ms_ - jitter(jitter_)));
  timer_.async_wait([this, alive, generation = generation_](const boost::system::error_code& ec) {
    if (ec || alive.expired() || generation != generation_) return;
    attempt();
  });
  if (was_ready && hooks_.on_lost) hooks_.on_lost();
}

}  // namespace nudge::plugins::redis
