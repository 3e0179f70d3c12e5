#include "redis_fanout.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/post.hpp>

#include "recent_window.hpp"

namespace nudge::plugins::redis {

namespace {

/// Channels per SUBSCRIBE command when resubscribing many rooms.
constexpr std::size_t kSubscribeChunk = 256;

/// At most this much in one call of the window's script, so one call holds
/// Redis for about 3 ms at most (2.7 µs a message, measured), not for
/// as long as a backlog is large.
constexpr std::size_t kAppendMessages = 1000;
constexpr std::size_t kAppendBytes = 4 * 1024 * 1024;
constexpr std::size_t kAppendCuts = 1000;
/// Calls of the window's script in flight at once. One at a time left Redis
/// idle between calls: 110-137k messages/s into the window where 3 at a time
/// made 160-169k (MeasuresThroughput, 2 instances on one core).
constexpr std::size_t kAppendCallsInFlight = 3;

bool reply_is(const redisReply* r, const char* text) {
  const std::size_t n = std::strlen(text);
  return r->type == REDIS_REPLY_STRING && r->len == n && std::memcmp(r->str, text, n) == 0;
}

}  // namespace

RedisFanout::RedisFanout(const Config& config, Context& context)
    : config_(RedisConfig::from(config)),
      context_(context),
      metrics_(context),
      window_(static_cast<std::size_t>(config_.max_pending_publishes)),
      max_bytes_(static_cast<std::size_t>(config_.max_pending_bytes)),
      reply_timer_(context.executor()),
      reply_timeouts_(context.metrics().counter(
          "reply_timeouts",
          "Times the publishing connection was dropped because Redis left a command unanswered "
          "for reply_timeout_ms")),
      recent_bytes_(context.metrics().gauge("recent_bytes", "Bytes the recent window takes in Redis, by its count")),
      recent_rooms_(context.metrics().gauge("recent_rooms", "Rooms the recent window holds in Redis")),
      append_retry_timer_(context.executor()) {
  if (config_.cluster) {
    cluster_ = std::make_unique<ClusterFanout>(config_, context);
    return;
  }
  presence_ = std::make_unique<PresenceKeeper>(
      PresenceKeeper::Settings{config_.presence_key_prefix, false, std::chrono::milliseconds(config_.presence_ttl_ms),
                               static_cast<std::size_t>(config_.max_presence_per_room)},
      context,
      PresenceKeeper::Host{
          [this](const std::string& key, std::vector<std::string> args, std::function<void(const redisReply*)> done) {
            return eval_presence(key, std::move(args), std::move(done));
          },
          [this](const std::string& room, std::string frame) { publish_frame(room, std::move(frame)); }});
}

PresenceKeeper& RedisFanout::presence() noexcept { return cluster_ ? cluster_->presence() : *presence_; }

namespace {
void on_presence_reply(redisAsyncContext*, void* reply, void* done_ptr) {
  std::unique_ptr<std::function<void(const redisReply*)>> done(
      static_cast<std::function<void(const redisReply*)>*>(done_ptr));
  (*done)(static_cast<const redisReply*>(reply));
}
}  // namespace

bool RedisFanout::eval_presence(const std::string& key, std::vector<std::string> args,
                                std::function<void(const redisReply*)> done) {
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac) return false;
  // By SHA once SCRIPT LOAD answered: the script's 1 KB is not sent per call.
  const bool by_sha = !presence_sha_.empty();
  // Owns what argv points into, and is kept for a resend.
  struct Call {
    std::string key;
    std::vector<std::string> args;
    std::function<void(const redisReply*)> done;
  };
  auto call = std::make_shared<Call>(Call{key, std::move(args), std::move(done)});
  const std::string_view script = by_sha ? std::string_view(presence_sha_) : PresenceKeeper::script();
  std::vector<const char*> argv{by_sha ? "EVALSHA" : "EVAL", script.data(), "1", call->key.data()};
  std::vector<std::size_t> lens{by_sha ? 7u : 4u, script.size(), 1, call->key.size()};
  for (const auto& a : call->args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto callback =
      std::make_unique<std::function<void(const redisReply*)>>([this, call, by_sha](const redisReply* reply) {
        if (!by_sha || !PresenceKeeper::is_noscript(reply) || stopping_) return call->done(reply);
        // The server lost its scripts (a restart, a failover, SCRIPT FLUSH): this
        // call ran nothing, so it goes again by EVAL while the script is loaded anew.
        presence_sha_.clear();
        load_presence_script();
        if (!eval_presence(call->key, std::move(call->args), call->done)) call->done(nullptr);
      });
  if (redisAsyncCommandArgv(ac, &on_presence_reply, callback.get(), static_cast<int>(argv.size()), argv.data(),
                            lens.data()) != REDIS_OK)
    return false;
  callback.release();  // hiredis hands it back to on_presence_reply, with or without a reply
  return true;
}

void RedisFanout::load_presence_script() {
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac) return;
  const std::string_view text = PresenceKeeper::script();
  const char* argv[3] = {"SCRIPT", "LOAD", text.data()};
  const std::size_t lens[3] = {6, 4, text.size()};
  auto callback = std::make_unique<std::function<void(const redisReply*)>>([this](const redisReply* reply) {
    if (reply && reply->type == REDIS_REPLY_STRING) presence_sha_.assign(reply->str, reply->len);
  });
  if (redisAsyncCommandArgv(ac, &on_presence_reply, callback.get(), 3, argv, lens) == REDIS_OK) callback.release();
}

void RedisFanout::publish_frame(const std::string& room, std::string frame) {
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac) {
    metrics_.dropped.add();  // best-effort like any message; the next sweep or refresh reports again
    return;
  }
  const std::string channel = config_.channel_for(room);
  const char* argv[3] = {"PUBLISH", channel.data(), frame.data()};
  const std::size_t lens[3] = {7, channel.size(), frame.size()};
  if (redisAsyncCommandArgv(ac, &RedisFanout::on_publish_reply, this, 3, argv, lens) != REDIS_OK) return;
  note_sent();
  ++in_flight_;
  in_flight_sizes_.push_back(frame.size());
  in_flight_bytes_ += frame.size();
  update_held();
}

void RedisFanout::presence_join(std::string_view room, const PresenceMember& member) {
  if (!stopping_) presence().join(room, member);
}

void RedisFanout::presence_leave(std::string_view room, const PresenceMember& member) {
  if (!stopping_) presence().leave(room, member);
}

void RedisFanout::read_presence(std::string_view room, PresenceHandler done) { presence().read(room, std::move(done)); }

RedisFanout::~RedisFanout() {
  reply_timer_.cancel();
  // Freed while this object is whole: hiredis runs pending callbacks (with
  // no reply) as it frees, and those reach this object.
  receiver_ = nullptr;
  // First: the replies hiredis hands back empty as it frees find it gone.
  presence_.reset();
  cluster_.reset();
  publisher_.reset();
  subscriber_.reset();
}

bool RedisFanout::connected() const noexcept {
  if (cluster_) return cluster_->connected();
  return publisher_ && subscriber_ && publisher_->ready() && subscriber_->ready();
}

Readiness RedisFanout::readiness() const {
  if (cluster_) return cluster_->readiness();
  if (!publisher_ || !subscriber_) return Readiness::no("not connected to Redis (not started)");
  for (const RedisLink* link : {publisher_.get(), subscriber_.get()}) {
    if (link->ready()) continue;
    const auto& why = link->last_error();
    return Readiness::no("no connection to Redis at '" + config_.url.endpoint() + "'" +
                         (why.empty() ? std::string(" yet") : ": " + why));
  }
  return Readiness::yes();
}

void RedisFanout::update_connected() { metrics_.connected.set(connected() ? 1 : 0); }

Status RedisFanout::start(FanoutReceiver& receiver) {
  if (cluster_) return cluster_->start(receiver);
  if (!config_.url_error.empty())
    return Status::error(StatusCode::invalid_argument,
                         "url: " + config_.url_error + ", got \"" + config_.url_text + "\"");
  if (publisher_) return Status::error(StatusCode::internal, "the redis fanout was started twice");
  receiver_ = &receiver;
  publisher_ =
      std::make_unique<RedisLink>("publishing", config_, context_, /*select_db=*/true, client_name(context_, "pub"),
                                  RedisLink::Hooks{[this] {
                                                     update_connected();
                                                     // A new connection (or server) may not know the script.
                                                     script_sha_.clear();
                                                     if (config_.recent_messages > 0) load_script();
                                                     presence_sha_.clear();
                                                     load_presence_script();
                                                     flush(false);
                                                     schedule_append();
                                                   },
                                                   [this] { update_connected(); }},
                                  metrics_.reconnects);
  subscriber_ =
      std::make_unique<RedisLink>("subscribing", config_, context_, /*select_db=*/false, client_name(context_, "sub"),
                                  RedisLink::Hooks{[this] {
                                                     update_connected();
                                                     if (!config_.channel_per_room) {
                                                       subscribe({config_.channel});
                                                       return;
                                                     }
                                                     std::vector<std::string> channels;
                                                     channels.reserve(rooms_.size());
                                                     for (const auto& room : rooms_)
                                                       channels.push_back(config_.channel_for(room));
                                                     subscribe(channels);
                                                   },
                                                   [this] { update_connected(); }},
                                  metrics_.reconnects);
  if (config_.channel_per_room)
    context_.logger().info("using per-room channels '", config_.channel_prefix, "<room>' on redis at '",
                           config_.url.endpoint(), "'");
  else context_.logger().info("using channel '", config_.channel, "' on redis at '", config_.url.endpoint(), "'");
  publisher_->start();
  subscriber_->start();
  presence_->start(receiver);
  return Status::success();
}

void RedisFanout::publish(const MessagePtr& message) {
  if (cluster_) return cluster_->publish(message);
  if (stopping_ || !message) return;
  if (pending_.empty() && in_flight_ < window_ && fits(*message) && send(message)) return;
  if (pending_.size() >= window_) drop_oldest_pending("max_pending_publishes");
  pending_.push_back(message);
  pending_bytes_ += message->envelope().size();
  // What is sent and unanswered cannot be taken back: the waiting make room.
  while (!pending_.empty() && pending_bytes_ + sent_bytes() > max_bytes_) drop_oldest_pending("max_pending_bytes");
  update_held();
}

void RedisFanout::drop_oldest_pending(const char* limit) {
  const MessagePtr& oldest = pending_.front();
  if (config_.recent_messages > 0 && !is_ephemeral(*oldest)) note_gap(oldest->room, oldest->id);
  pending_bytes_ -= oldest->envelope().size();
  pending_.pop_front();
  metrics_.dropped.add();
  std::uint64_t suppressed = 0;
  if (drop_log_.allow(suppressed))
    context_.logger().warn("dropping the oldest waiting messages: redis at '", config_.url.endpoint(),
                           "' is unreachable or behind and holds ", pending_.size() + 1, " waiting messages and ",
                           held_bytes(), " bytes already (", limit, "); ", metrics_.dropped.value(), " dropped so far",
                           suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : "");
}

std::size_t RedisFanout::cost(const Message& message) const {
  const std::size_t size = message.envelope().size();
  return config_.recent_messages > 0 && !is_ephemeral(message) ? 2 * size : size;
}

bool RedisFanout::fits(const Message& message) const {
  const std::size_t sent = sent_bytes();
  return sent == 0 || sent + cost(message) <= max_bytes_;
}

void RedisFanout::update_held() {
  metrics_.held_bytes.set(static_cast<std::int64_t>(held_bytes()));
  metrics_.held_messages.set(
      static_cast<std::int64_t>(pending_.size() + in_flight_ + recent_queue_.size() + messages_in_flight_));
}

void RedisFanout::note_sent() {
  if (in_flight_ == 0 && calls_in_flight_ == 0) last_answer_ = std::chrono::steady_clock::now();
  arm_reply_timer();
}

void RedisFanout::note_answered() { last_answer_ = std::chrono::steady_clock::now(); }

void RedisFanout::arm_reply_timer() {
  if (reply_timer_armed_ || config_.reply_timeout_ms == 0 || stopping_) return;
  reply_timer_armed_ = true;
  reply_timer_.expires_at(last_answer_ + std::chrono::milliseconds(config_.reply_timeout_ms));
  reply_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    reply_timer_armed_ = false;
    if (stopping_ || (in_flight_ == 0 && calls_in_flight_ == 0) || !publisher_ || !publisher_->ready()) return;
    if (std::chrono::steady_clock::now() - last_answer_ < std::chrono::milliseconds(config_.reply_timeout_ms)) {
      arm_reply_timer();  // answers came meanwhile: wait from the last one
      return;
    }
    // TCP keepalive does not see this: the peer (or a proxy) still ACKs.
    // Dropping answers everything in flight as lost (publish_errors, window
    // gaps) and frees what hiredis held; the link reconnects with backoff.
    reply_timeouts_.add();
    publisher_->drop("no reply within " + std::to_string(config_.reply_timeout_ms) + " ms (reply_timeout_ms) to " +
                     std::to_string(in_flight_ + calls_in_flight_) + " commands");
    update_held();
  });
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
  note_sent();
  ++in_flight_;
  in_flight_sizes_.push_back(envelope.size());
  in_flight_bytes_ += envelope.size();
  // An ephemeral message is never history: it stays out of the recent window.
  if (config_.recent_messages > 0 && !is_ephemeral(*message)) remember(message);
  update_held();
  return true;
}

void RedisFanout::remember(const MessagePtr& message) {
  if (recent_queue_.size() >= window_) {
    // Redis is slower than the bus: the oldest waiting go, and their rooms are cut.
    note_gap(recent_queue_.front()->room, recent_queue_.front()->id);
    recent_queue_bytes_ -= recent_queue_.front()->envelope().size();
    recent_queue_.pop_front();
  }
  recent_queue_.push_back(message);
  recent_queue_bytes_ += message->envelope().size();
  schedule_append();
}

void RedisFanout::schedule_append() {
  if (append_scheduled_ || config_.recent_messages == 0) return;
  append_scheduled_ = true;
  // At the end of this loop turn, so what it published goes in one call.
  boost::asio::post(context_.executor(), [this, alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired()) return;
    append_scheduled_ = false;
    if (!stopping_) append_recent();
  });
}

void RedisFanout::note_gap(const std::string& room, const MessageId& id) {
  metrics_.recent_missed.add();
  auto [it, inserted] = gaps_.try_emplace(room, id);
  if (!inserted && it->second < id) it->second = id;
  if (gaps_.size() <= static_cast<std::size_t>(config_.recent_max_rooms)) return;
  // More rooms than the window holds: cut them all at once instead of
  // keeping a list that grows for as long as Redis is away.
  for (const auto& [r, newest] : gaps_)
    if (!cut_all_ || *cut_all_ < newest) cut_all_ = newest;
  gaps_.clear();
}

/// One call of the window's script, from sending to its reply (hiredis's privdata).
struct RedisFanout::AppendCall {
  RedisFanout* self;
  std::vector<MessagePtr> messages;
  std::vector<std::pair<std::string, MessageId>> cuts;
  std::optional<MessageId> cut_all;
  std::size_t bytes;  // of its messages' envelopes
};

void RedisFanout::regap(AppendCall& call) {
  for (const auto& m : call.messages) note_gap(m->room, m->id);
  for (const auto& [room, id] : call.cuts) {
    auto [it, inserted] = gaps_.try_emplace(room, id);
    if (!inserted && it->second < id) it->second = id;
  }
  if (call.cut_all && (!cut_all_ || *cut_all_ < *call.cut_all)) cut_all_ = call.cut_all;
}

void RedisFanout::append_recent(bool at_stop) {
  if (config_.recent_messages == 0) return;
  if (!at_stop && (append_state_ == AppendState::backing_off || calls_in_flight_ >= kAppendCallsInFlight)) return;
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac) return;  // the connection's on_ready sends what waits
  if (recent_queue_.empty() && gaps_.empty() && !cut_all_) return;

  auto call = std::make_unique<AppendCall>(AppendCall{this, {}, {}, std::exchange(cut_all_, std::nullopt), 0});
  std::deque<std::string> texts;  // what argv points into that nothing else owns (a deque never moves them)
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  auto arg = [&](std::string_view a) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  };
  auto text = [&](std::string t) { arg(texts.emplace_back(std::move(t))); };
  if (script_sha_.empty()) {
    arg("EVAL");
    arg(recent::script());
  } else {
    arg("EVALSHA");
    arg(script_sha_);
  }
  arg("0");
  arg(config_.recent_key_prefix);
  text(std::to_string(config_.recent_messages));
  text(std::to_string(config_.recent_max_room_bytes));
  text(std::to_string(config_.recent_max_bytes));
  text(std::to_string(config_.recent_max_rooms));
  text(std::to_string(config_.recent_ttl_s * 1000));
  text(call->cut_all ? recent::hex(*call->cut_all) : std::string());
  const std::size_t cuts = std::min(gaps_.size(), kAppendCuts);
  text(std::to_string(cuts));
  for (auto it = gaps_.begin(); call->cuts.size() < cuts;) {
    call->cuts.emplace_back(it->first, it->second);
    it = gaps_.erase(it);
  }
  for (const auto& [room, id] : call->cuts) {
    arg(room);
    text(recent::hex(id));
  }
  // Messages go only in a call that cuts every room waiting to be cut: a
  // message of a room cut by a later call would be cut with it.
  std::size_t bytes = 0;
  while (gaps_.empty() && !recent_queue_.empty() && call->messages.size() < kAppendMessages && bytes < kAppendBytes) {
    const MessagePtr& m = recent_queue_.front();
    const std::string& envelope = m->envelope();
    bytes += envelope.size();
    arg(m->room);
    text(recent::hex(m->id));
    arg(envelope);
    call->messages.push_back(m);
    recent_queue_bytes_ -= envelope.size();
    recent_queue_.pop_front();
  }
  call->bytes = bytes;
  if (redisAsyncCommandArgv(ac, &RedisFanout::on_append_reply, call.get(), static_cast<int>(argv.size()), argv.data(),
                            lens.data()) != REDIS_OK) {
    regap(*call);
    update_held();
    return;
  }
  note_sent();
  append_in_flight_bytes_ += call->bytes;
  messages_in_flight_ += call->messages.size();
  cuts_in_flight_ += call->cuts.size();
  call.release();  // hiredis hands it back to on_append_reply, with or without a reply
  ++calls_in_flight_;
  if (at_stop || calls_in_flight_ < kAppendCallsInFlight) append_recent(at_stop);
}

void RedisFanout::load_script() {
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac) return;
  const std::string_view text = recent::script();
  const char* argv[3] = {"SCRIPT", "LOAD", text.data()};
  const std::size_t lens[3] = {6, 4, text.size()};
  // Until it answers, calls go by EVAL (which also caches the script).
  redisAsyncCommandArgv(ac, &RedisFanout::on_script_loaded, this, 3, argv, lens);
}

void RedisFanout::on_script_loaded(redisAsyncContext*, void* reply_ptr, void* self) {
  const auto* reply = static_cast<const redisReply*>(reply_ptr);
  if (reply && reply->type == REDIS_REPLY_STRING)
    static_cast<RedisFanout*>(self)->script_sha_.assign(reply->str, reply->len);
}

void RedisFanout::on_append_reply(redisAsyncContext*, void* reply, void* call_ptr) {
  std::unique_ptr<AppendCall> call(static_cast<AppendCall*>(call_ptr));
  call->self->handle_append_reply(static_cast<const redisReply*>(reply), *call);
}

void RedisFanout::handle_append_reply(const redisReply* reply, AppendCall& call) {
  messages_in_flight_ -= call.messages.size();
  cuts_in_flight_ -= call.cuts.size();
  --calls_in_flight_;
  append_in_flight_bytes_ -= call.bytes;
  update_held();
  if (reply) {
    note_answered();
    // What the window held may have kept messages waiting.
    if (!pending_.empty() && !stopping_) flush(false);
  }
  if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 5) {
    auto number = [&](std::size_t i) {
      const redisReply* r = reply->element[i];
      return r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    };
    metrics_.recent_appended.add(static_cast<std::uint64_t>(number(0)));
    metrics_.recent_skipped.add(static_cast<std::uint64_t>(number(1)));
    metrics_.recent_rooms_evicted.add(static_cast<std::uint64_t>(number(2)));
    recent_bytes_.set(number(3));
    recent_rooms_.set(number(4));
    append_backoff_ms_ = 0;
    if (!stopping_) append_recent();
    return;
  }
  // Refused, or lost with the connection: any of it may be missing from the
  // window. A NOSCRIPT (the server lost its scripts) ran nothing, but a call
  // sent behind it may have run if another client loaded the script again,
  // so it is a gap too; the next calls go by EVAL until SCRIPT LOAD answers.
  metrics_.recent_errors.add();
  std::uint64_t suppressed = 0;
  if (append_error_log_.allow(suppressed))
    context_.logger().warn(
        reply ? "redis refused the recent window's script: " + std::string(reply->str, reply->len)
              : std::string("a call of the recent window's script was in flight when the connection to redis was lost"),
        "; the rooms it touched are cut, so their history is read from the sink",
        suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : "");
  regap(call);
  if (!reply || stopping_) return;  // the connection's on_ready sends what waits
  constexpr std::string_view kNoScript = "NOSCRIPT";
  if (std::string_view(reply->str, reply->len).substr(0, kNoScript.size()) == kNoScript && !script_sha_.empty()) {
    script_sha_.clear();
    load_script();
  }
  if (append_state_ == AppendState::backing_off) return;
  // The cut goes at once; if that is refused too, the next waits, doubling:
  // a Redis refusing every call is not asked in a tight loop.
  if (append_backoff_ms_ == 0) {
    append_backoff_ms_ = config_.reconnect_initial_ms;
    append_recent();
    return;
  }
  append_state_ = AppendState::backing_off;
  append_retry_timer_.expires_after(std::chrono::milliseconds(append_backoff_ms_));
  append_backoff_ms_ = std::min(append_backoff_ms_ * 2, config_.reconnect_max_ms);
  append_retry_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    append_state_ = AppendState::ready;
    if (!stopping_) append_recent();
  });
}

namespace {
/// A read_recent in flight: what to answer and how to decode.
struct RecentRequest {
  HistoryHandler done;
  boost::asio::any_io_executor executor;
};
}  // namespace

void RedisFanout::read_recent(HistoryQuery query, HistoryHandler done) {
  if (cluster_) return cluster_->read_recent(std::move(query), std::move(done));
  redisAsyncContext* ac = publisher_ ? publisher_->context() : nullptr;
  if (!ac || stopping_) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::unavailable, "not connected to redis"), {});
    });
    return;
  }
  const std::string key = recent::stream_key(config_.recent_key_prefix, query.room);
  const std::string count =
      std::to_string(std::min<std::size_t>(query.limit, static_cast<std::size_t>(config_.recent_messages)));
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
  } else {
    messages = recent::messages_of(*reply);
  }
  // hiredis calls back from inside its read handler: answer from the loop.
  boost::asio::post(request->executor,
                    [done = std::move(request->done), status = std::move(status),
                     messages = std::move(messages)]() mutable { done(std::move(status), std::move(messages)); });
}

void RedisFanout::flush(bool ignore_window) {
  while (!pending_.empty() && (ignore_window || (in_flight_ < window_ && fits(*pending_.front())))) {
    const MessagePtr message = pending_.front();
    if (!send(message)) break;
    pending_bytes_ -= message->envelope().size();
    pending_.pop_front();
  }
  update_held();
}

void RedisFanout::on_publish_reply(redisAsyncContext*, void* reply, void* self) {
  static_cast<RedisFanout*>(self)->handle_publish_reply(static_cast<const redisReply*>(reply));
}

void RedisFanout::handle_publish_reply(const redisReply* reply) {
  if (in_flight_ > 0) --in_flight_;
  if (!in_flight_sizes_.empty()) {
    in_flight_bytes_ -= in_flight_sizes_.front();
    in_flight_sizes_.pop_front();
  }
  update_held();
  if (reply) note_answered();
  if (reply && reply->type != REDIS_REPLY_ERROR) {
    metrics_.published.add();
    if (!pending_.empty()) flush(false);
    return;
  }
  metrics_.publish_errors.add();
  std::uint64_t suppressed = 0;
  if (!publish_error_log_.allow(suppressed)) return;
  if (reply)
    context_.logger().warn(
        "redis refused a PUBLISH: ", std::string(reply->str, reply->len),
        suppressed ? " (" + std::to_string(suppressed) + " more publish errors since the last report)" : "");
  else
    context_.logger().warn(
        "a PUBLISH was in flight when the connection to redis was lost; it may not have reached "
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
    if (redisAsyncCommandArgv(ac, &RedisFanout::on_subscription_reply, this, static_cast<int>(argv.size()), argv.data(),
                              lens.data()) != REDIS_OK) {
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
  if (cluster_) return cluster_->set_room_interest(room, interested);
  presence_->set_interest(room, interested);
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
  if (is_presence_frame(std::string_view(payload->str, payload->len))) {
    if (receiver_) presence_->on_frame(std::string_view(payload->str, payload->len));
    return;
  }
  std::shared_ptr<Message> message;
  if (Status s = decode_envelope(std::string_view(payload->str, payload->len), message); !s.ok()) {
    metrics_.decode_errors.add();
    std::uint64_t suppressed = 0;
    if (decode_error_log_.allow(suppressed))
      context_.logger().warn("ignored a ", payload->len, "-byte payload on channel '",
                             std::string(reply->element[1]->str, reply->element[1]->len),
                             "' that is not a Nudge envelope: ", s.message(),
                             suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : "");
    return;
  }
  metrics_.received.add();
  if (receiver_) receiver_->on_fanout_message(std::move(message));
}

void RedisFanout::stop(std::function<void()> done) {
  if (cluster_) return cluster_->stop(std::move(done));
  presence_->stop();  // its leaves go out before the connections close
  stopping_ = true;
  receiver_ = nullptr;
  if (!publisher_) {
    boost::asio::post(context_.executor(), std::move(done));
    return;
  }
  // What can still go out goes out; the disconnect waits for its replies.
  // The window's last calls go behind those in flight, all at once: a call
  // refused now leaves its rooms uncut (see the README).
  append_retry_timer_.cancel();
  if (publisher_->ready()) {
    flush(true);
    append_recent(/*at_stop=*/true);
  }
  if (!pending_.empty()) {
    if (config_.recent_messages > 0)
      metrics_.recent_missed.add(pending_.size());  // and no connection to cut their rooms
    metrics_.dropped.add(pending_.size());
    context_.logger().warn("dropped ", pending_.size(), " messages at stop that were waiting for redis at '",
                           config_.url.endpoint(), "'");
    pending_.clear();
    pending_bytes_ = 0;
    update_held();
  }
  reply_timer_.cancel();
  auto remaining = std::make_shared<int>(2);
  auto one_done = [this, remaining, done = std::move(done)] {
    if (--*remaining > 0) return;
    metrics_.connected.set(0);
    done();
  };
  publisher_->stop(one_done);
  subscriber_->stop(one_done);
  metrics_.connected.set(0);
}

}  // namespace nudge::plugins::redis
