#include "redis_fanout.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/post.hpp>

namespace nudge::plugins::redis {

namespace {

/// Channels per SUBSCRIBE command when resubscribing many rooms.
constexpr std::size_t kSubscribeChunk = 256;

/// `nudge:<pipeline>:<instance>:<suffix>`, with what CLIENT SETNAME cannot take replaced.
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

bool reply_is(const redisReply* r, const char* text) {
  const std::size_t n = std::strlen(text);
  return r->type == REDIS_REPLY_STRING && r->len == n && std::memcmp(r->str, text, n) == 0;
}

}  // namespace

RedisFanout::RedisFanout(const Config& config, Context& context)
    : config_(RedisConfig::from(config)),
      context_(context),
      published_(context.metrics().counter("published", "Messages Redis accepted (PUBLISH replied)")),
      publish_errors_(context.metrics().counter(
          "publish_errors", "PUBLISHes refused by Redis, or in flight when the connection was lost")),
      received_(context.metrics().counter("received", "Messages received from Redis and handed to the pipeline")),
      decode_errors_(context.metrics().counter("decode_errors", "Payloads on the channel that were not envelopes")),
      reconnects_(context.metrics().counter("reconnects", "Connections re-established after being lost")),
      dropped_(context.metrics().counter(
          "dropped_while_disconnected", "Messages dropped because more than max_pending_publishes were waiting")),
      connected_(context.metrics().gauge("connected", "1 while both Redis connections are up, else 0")),
      window_(static_cast<std::size_t>(config_.max_pending_publishes)) {}

RedisFanout::~RedisFanout() {
  // Freed while this object is whole: hiredis runs pending callbacks (with
  // no reply) as it frees, and those reach this object.
  receiver_ = nullptr;
  publisher_.reset();
  subscriber_.reset();
}

bool RedisFanout::connected() const noexcept {
  return publisher_ && subscriber_ && publisher_->ready() && subscriber_->ready();
}

Readiness RedisFanout::readiness() const {
  if (!publisher_ || !subscriber_) return Readiness::no("not connected to Redis (not started)");
  for (const RedisLink* link : {publisher_.get(), subscriber_.get()}) {
    if (link->ready()) continue;
    const auto& why = link->last_error();
    return Readiness::no("no connection to Redis at '" + config_.url.endpoint() + "'" +
                         (why.empty() ? std::string(" yet") : ": " + why));
  }
  return Readiness::yes();
}

void RedisFanout::update_connected() { connected_.set(connected() ? 1 : 0); }

Status RedisFanout::start(FanoutReceiver& receiver) {
  if (!config_.url_error.empty())
    return Status::error(StatusCode::invalid_argument, "url: " + config_.url_error + ", got \"" + config_.url_text + "\"");
  if (publisher_) return Status::error(StatusCode::internal, "the redis fanout was started twice");
  receiver_ = &receiver;
  publisher_ = std::make_unique<RedisLink>(
      "publishing", config_, context_, /*select_db=*/true, client_name(context_, "pub"),
      RedisLink::Hooks{[this] {
                         update_connected();
                         flush(false);
                       },
                       [this] { update_connected(); }},
      reconnects_);
  subscriber_ = std::make_unique<RedisLink>(
      "subscribing", config_, context_, /*select_db=*/false, client_name(context_, "sub"),
      RedisLink::Hooks{[this] {
                         update_connected();
                         if (!config_.channel_per_room) {
                           subscribe({config_.channel});
                           return;
                         }
                         std::vector<std::string> channels;
                         channels.reserve(rooms_.size());
                         for (const auto& room : rooms_) channels.push_back(config_.channel_for(room));
                         subscribe(channels);
                       },
                       [this] { update_connected(); }},
      reconnects_);
  if (config_.channel_per_room)
    context_.logger().info("using per-room channels '", config_.channel_prefix, "<room>' on redis at '",
                           config_.url.endpoint(), "'");
  else
    context_.logger().info("using channel '", config_.channel, "' on redis at '", config_.url.endpoint(), "'");
  publisher_->start();
  subscriber_->start();
  return Status::success();
}

void RedisFanout::publish(const MessagePtr& message) {
  if (stopping_ || !message) return;
  if (pending_.empty() && in_flight_ < window_ && send(message)) return;
  if (pending_.size() >= window_) {
    pending_.pop_front();
    dropped_.add();
    std::uint64_t suppressed = 0;
    if (drop_log_.allow(suppressed))
      context_.logger().warn("dropping the oldest waiting messages: redis at '", config_.url.endpoint(),
                             "' is unreachable or behind and ", window_,
                             " are waiting already (max_pending_publishes); ", dropped_.value(),
                             " dropped so far");
  }
  pending_.push_back(message);
}

bool RedisFanout::send(const MessagePtr& message) {
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac) return false;
  const std::string& envelope = message->envelope();
  std::string room_channel;
  const std::string* channel = &config_.channel;
  if (config_.channel_per_room) {
    room_channel = config_.channel_for(message->room);
    channel = &room_channel;
  }
  const char* argv[3] = {"PUBLISH", channel->data(), envelope.data()};
  const std::size_t lens[3] = {7, channel->size(), envelope.size()};
  // hiredis appends to its output buffer and writes when the socket is ready:
  // publishes made in one turn of the loop go out together, pipelined.
  if (redisAsyncCommandArgv(ac, &RedisFanout::on_publish_reply, this, 3, argv, lens) != REDIS_OK) return false;
  ++in_flight_;
  if (config_.recent_messages > 0) remember(ac, message, envelope);
  return true;
}

void RedisFanout::remember(redisAsyncContext* ac, const MessagePtr& message, const std::string& envelope) {
  const std::string key = config_.recent_key_prefix + message->room;
  const std::string max = std::to_string(config_.recent_messages);
  // "~": Redis trims whole nodes, far cheaper than an exact MAXLEN.
  const char* argv[7] = {"XADD", key.data(), "MAXLEN", "~", max.data(), "*", "m"};
  std::vector<const char*> args(argv, argv + 7);
  std::vector<std::size_t> lens{4, key.size(), 6, 1, max.size(), 1, 1};
  args.push_back(envelope.data());
  lens.push_back(envelope.size());
  // The reply is not waited for: the window is best-effort, like the bus.
  redisAsyncCommandArgv(ac, nullptr, nullptr, static_cast<int>(args.size()), args.data(), lens.data());
  const auto now = std::chrono::steady_clock::now();
  auto& last = recent_expiry_set_[message->room];
  if (now - last >= std::chrono::minutes(1)) {
    last = now;
    const std::string ttl = std::to_string(config_.recent_ttl_s);
    const char* expire[3] = {"EXPIRE", key.data(), ttl.data()};
    const std::size_t expire_lens[3] = {6, key.size(), ttl.size()};
    redisAsyncCommandArgv(ac, nullptr, nullptr, 3, expire, expire_lens);
  }
}

namespace {
/// A read_recent in flight: what to answer and how to decode.
struct RecentRequest {
  HistoryHandler done;
  boost::asio::any_io_executor executor;
};
}  // namespace

void RedisFanout::read_recent(HistoryQuery query, HistoryHandler done) {
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac || stopping_) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::unavailable, "not connected to redis"), {});
    });
    return;
  }
  const std::string key = config_.recent_key_prefix + query.room;
  const std::string count = std::to_string(std::min<std::size_t>(query.limit, static_cast<std::size_t>(config_.recent_messages)));
  const char* argv[6] = {"XREVRANGE", key.data(), "+", "-", "COUNT", count.data()};
  const std::size_t lens[6] = {9, key.size(), 1, 1, 5, count.size()};
  auto* request = new RecentRequest{std::move(done), context_.executor()};
  if (redisAsyncCommandArgv(ac, &RedisFanout::on_recent_reply, request, 6, argv, lens) != REDIS_OK) {
    on_recent_reply(ac, nullptr, request);
  }
}

void RedisFanout::on_recent_reply(redisAsyncContext*, void* reply_ptr, void* request_ptr) {
  std::unique_ptr<RecentRequest> request(static_cast<RecentRequest*>(request_ptr));
  const auto* reply = static_cast<const redisReply*>(reply_ptr);
  Status status = Status::success();
  std::vector<MessagePtr> messages;
  if (!reply) {
    status = Status::error(StatusCode::unavailable, "the connection to redis was lost during the read");
  } else if (reply->type == REDIS_REPLY_ERROR) {
    status = Status::error(StatusCode::unavailable, "redis refused XREVRANGE: " + std::string(reply->str, reply->len));
  } else if (reply->type == REDIS_REPLY_ARRAY) {
    // Newest first: [[stream id, ["m", envelope]], ...]
    for (std::size_t i = reply->elements; i-- > 0;) {
      const redisReply* entry = reply->element[i];
      if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) continue;
      const redisReply* fields = entry->element[1];
      if (fields->type != REDIS_REPLY_ARRAY || fields->elements < 2) continue;
      const redisReply* payload = fields->element[1];
      if (payload->type != REDIS_REPLY_STRING) continue;
      std::shared_ptr<Message> message;
      if (decode_envelope(std::string_view(payload->str, payload->len), message).ok())
        messages.push_back(std::move(message));
    }
  }
  // hiredis calls back from inside its read handler: answer from the loop.
  boost::asio::post(request->executor, [done = std::move(request->done), status = std::move(status),
                                        messages = std::move(messages)]() mutable {
    done(std::move(status), std::move(messages));
  });
}

void RedisFanout::flush(bool ignore_window) {
  while (!pending_.empty() && (ignore_window || in_flight_ < window_)) {
    if (!send(pending_.front())) return;
    pending_.pop_front();
  }
}

void RedisFanout::on_publish_reply(redisAsyncContext*, void* reply, void* self) {
  static_cast<RedisFanout*>(self)->handle_publish_reply(static_cast<const redisReply*>(reply));
}

void RedisFanout::handle_publish_reply(const redisReply* reply) {
  if (in_flight_ > 0) --in_flight_;
  if (reply && reply->type != REDIS_REPLY_ERROR) {
    published_.add();
    if (!pending_.empty()) flush(false);
    return;
  }
  publish_errors_.add();
  std::uint64_t suppressed = 0;
  if (!publish_error_log_.allow(suppressed)) return;
  if (reply)
    context_.logger().warn("redis refused a PUBLISH: ", std::string(reply->str, reply->len),
                           suppressed ? " (" + std::to_string(suppressed) + " more publish errors since the last report)" : "");
  else
    context_.logger().warn("a PUBLISH was in flight when the connection to redis was lost; it may not have reached "
                           "other instances",
                           suppressed ? " (" + std::to_string(suppressed) + " more publish errors since the last report)" : "");
}

void RedisFanout::subscribe(const std::vector<std::string>& channels) {
  redisAsyncContext* ac = subscriber_ ? subscriber_->context() : nullptr;
  if (!ac) return;  // the subscriber subscribes to everything when it is (back) up
  for (std::size_t begin = 0; begin < channels.size(); begin += kSubscribeChunk) {
    const std::size_t end = std::min(channels.size(), begin + kSubscribeChunk);
    std::vector<const char*> argv{"SUBSCRIBE"};
    std::vector<std::size_t> lens{9};
    for (std::size_t i = begin; i < end; ++i) {
      argv.push_back(channels[i].data());
      lens.push_back(channels[i].size());
    }
    if (redisAsyncCommandArgv(ac, &RedisFanout::on_subscription_reply, this, static_cast<int>(argv.size()),
                              argv.data(), lens.data()) != REDIS_OK) {
      subscriber_->drop("cannot queue a SUBSCRIBE command");
      return;
    }
  }
}

void RedisFanout::unsubscribe(const std::string& channel) {
  redisAsyncContext* ac = subscriber_ ? subscriber_->context() : nullptr;
  if (!ac) return;
  const char* argv[2] = {"UNSUBSCRIBE", channel.data()};
  const std::size_t lens[2] = {11, channel.size()};
  // The confirmation goes to the channel's SUBSCRIBE callback. hiredis
  // refuses this only when nothing is subscribed, which leaves nothing to do.
  redisAsyncCommandArgv(ac, nullptr, nullptr, 2, argv, lens);
}

void RedisFanout::set_room_interest(std::string_view room, bool interested) {
  if (!config_.channel_per_room || stopping_) return;
  if (interested) {
    if (rooms_.emplace(room).second) subscribe({config_.channel_for(room)});
  } else if (auto it = rooms_.find(room); it != rooms_.end()) {
    rooms_.erase(it);
    unsubscribe(config_.channel_for(room));
  }
}

void RedisFanout::on_subscription_reply(redisAsyncContext*, void* reply, void* self) {
  // No reply: the connection is going away (its link reconnects).
  if (reply) static_cast<RedisFanout*>(self)->handle_subscription_reply(static_cast<const redisReply*>(reply));
}

void RedisFanout::handle_subscription_reply(const redisReply* reply) {
  // ["message", channel, payload]; subscribe and unsubscribe confirmations
  // have the same shape with a count as the third element.
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || !reply_is(reply->element[0], "message")) return;
  const redisReply* payload = reply->element[2];
  if (payload->type != REDIS_REPLY_STRING) return;
  std::shared_ptr<Message> message;
  if (Status s = decode_envelope(std::string_view(payload->str, payload->len), message); !s.ok()) {
    decode_errors_.add();
    std::uint64_t suppressed = 0;
    if (decode_error_log_.allow(suppressed))
      context_.logger().warn("ignored a ", payload->len, "-byte payload on channel '",
                             std::string(reply->element[1]->str, reply->element[1]->len),
                             "' that is not a Nudge envelope: ", s.message(),
                             suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : "");
    return;
  }
  received_.add();
  if (receiver_) receiver_->on_fanout_message(std::move(message));
}

void RedisFanout::stop(std::function<void()> done) {
  stopping_ = true;
  receiver_ = nullptr;
  if (!publisher_) {
    boost::asio::post(context_.executor(), std::move(done));
    return;
  }
  // What can still go out goes out; the disconnect waits for its replies.
  if (publisher_->ready()) flush(true);
  if (!pending_.empty()) {
    dropped_.add(pending_.size());
    context_.logger().warn("dropped ", pending_.size(), " messages at stop that were waiting for redis at '",
                           config_.url.endpoint(), "'");
    pending_.clear();
  }
  auto remaining = std::make_shared<int>(2);
  auto one_done = [this, remaining, done = std::move(done)] {
    if (--*remaining > 0) return;
    connected_.set(0);
    done();
  };
  publisher_->stop(one_done);
  subscriber_->stop(one_done);
  connected_.set(0);
}

}  // namespace nudge::plugins::redis
