#include "cluster_fanout.hpp"

#include <algorithm>
#include <utility>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/post.hpp>

#include "cluster_slots.hpp"
#include "recent_window.hpp"

namespace nudge::plugins::redis {

namespace {

/// MOVED/ASK followed at most this often for one command; more means the
/// topology is changing under it, and the command fails (counted).
constexpr int kMaxRedirects = 5;
/// While a slot has no reachable master, the topology is read this often.
constexpr auto kTick = std::chrono::milliseconds(100);
/// A burst of MOVEDs or losses makes one topology read, this long after the first.
constexpr auto kRefreshDelay = std::chrono::milliseconds(50);
/// After slots changed owner, publishes wait this long, so the subscribers of
/// other instances, which learn the new map on their own, reach the new
/// owners before the messages held for them do. Without it, an instance
/// that learnt first sent its whole backlog for a failed master to the
/// promoted replica before anyone listened there: 730 of 730 lost in one
/// run of the failover test, against the 6 in flight at the kill otherwise.
constexpr auto kHandover = std::chrono::milliseconds(300);

std::string suppressed_note(std::uint64_t suppressed) {
  return suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : std::string();
}

}  // namespace

/// One master (or seed): its own copy of the config with its address, which
/// the link and the subscriber keep a reference to.
struct ClusterFanout::Node {
  std::string address;
  RedisConfig config;
  std::unique_ptr<RedisLink> link;
  std::unique_ptr<ShardSubscriber> sub;
  std::string script_sha;    // SCRIPT LOAD on this connection; EVAL until known
  std::string presence_sha;  // the presence script's, likewise
  bool owns_slots = false;

  bool ready() const { return link && link->ready(); }
};

/// A command on its way, from dispatch to its reply (hiredis's privdata).
struct ClusterFanout::Request {
  ClusterFanout* self;
  Kind kind;
  std::uint16_t slot = 0;
  int redirects = 0;
  std::string address;  // where it was sent
  MessagePtr message;   // publish
  std::string room;     // append, read
  std::vector<MessagePtr> messages;
  std::optional<MessageId> cut;
  HistoryQuery query;  // read
  HistoryHandler done;
  std::string key;                                     // presence
  std::vector<std::string> args;                       // presence
  std::function<void(const redisReply*)> on_presence;  // presence: the reply, or null
  bool by_sha = false;                                 // presence: sent as EVALSHA
  std::string frame;                                   // frame
  std::size_t held = 0;                                // publish, append: bytes counted in sent_bytes_ while in flight
};

ClusterFanout::ClusterFanout(const RedisConfig& config, Context& context)
    : config_(config),
      context_(context),
      metrics_(context),
      redirects_(context.metrics().counter("cluster_redirects", "MOVED and ASK replies followed (cluster mode)")),
      topology_changes_(context.metrics().counter("cluster_topology_reads",
                                                  "Slot maps read from the cluster (CLUSTER SHARDS) (cluster mode)")),
      slots_(cluster::kSlots, nullptr),
      refresh_timer_(context.executor()),
      tick_timer_(context.executor()),
      hold_timer_(context.executor()),
      window_(static_cast<std::size_t>(config.max_pending_publishes)),
      max_bytes_(static_cast<std::size_t>(config.max_pending_bytes)) {
  presence_ = std::make_unique<PresenceKeeper>(
      PresenceKeeper::Settings{config_.presence_key_prefix, true, std::chrono::milliseconds(config_.presence_ttl_ms),
                               static_cast<std::size_t>(config_.max_presence_per_room)},
      context,
      PresenceKeeper::Host{
          [this](const std::string& key, std::vector<std::string> args, std::function<void(const redisReply*)> done) {
            auto request = std::make_unique<Request>();
            request->self = this;
            request->kind = Kind::presence;
            request->slot = cluster::key_slot(key);
            request->key = key;
            request->args = std::move(args);
            request->on_presence = std::move(done);
            return dispatch(request, nullptr, false);
          },
          [this](const std::string& room, std::string frame) {
            auto request = std::make_unique<Request>();
            request->self = this;
            request->kind = Kind::frame;
            request->room = room;
            request->slot = cluster::key_slot(config_.channel_for(room));
            request->frame = std::move(frame);
            if (!dispatch(request, nullptr, false)) metrics_.dropped.add();  // best-effort, like a message
          }});
}

ClusterFanout::~ClusterFanout() {
  // Freed while this object is whole: hiredis runs pending callbacks (with
  // no reply) as it frees, and those reach this object.
  presence_.reset();
  stopping_ = true;
  receiver_ = nullptr;
  std::fill(slots_.begin(), slots_.end(), nullptr);
  retired_.clear();
  nodes_.clear();
}

ClusterFanout::Node& ClusterFanout::node(const std::string& address) {
  auto& slot = nodes_[address];
  if (slot) return *slot;
  slot = std::make_unique<Node>();
  Node& n = *slot;
  n.address = address;
  n.config = config_;
  std::string host;
  std::uint16_t port = 0;
  if (parse_host_port(address, host, port)) {
    n.config.url.host = host;
    n.config.url.port = port;
  }
  Node* np = &n;
  n.link = std::make_unique<RedisLink>(
      "publishing", n.config, context_, /*select_db=*/false, client_name(context_, "pub"),
      RedisLink::Hooks{[this, np] {
                         np->script_sha.clear();
                         load_presence_script(*np);
                         if (config_.recent_messages > 0) {
                           const std::string_view text = recent::script();
                           const char* argv[3] = {"SCRIPT", "LOAD", text.data()};
                           const std::size_t lens[3] = {6, 4, text.size()};
                           redisAsyncCommandArgv(np->link->context(), &ClusterFanout::on_script_loaded, np, 3, argv,
                                                 lens);
                         }
                         update_connected();
                         if (topology_reads_ == 0) refresh_topology();
                         flush();
                         schedule_append();
                       },
                       [this] {
                         update_connected();
                         refresh_soon();
                       }},
      metrics_.reconnects);
  n.link->start();
  return n;
}

ClusterFanout::Node* ClusterFanout::owner(std::uint16_t slot) const { return slots_[slot]; }

std::string ClusterFanout::owner_of(std::string_view room) const {
  const Node* n = owner(cluster::key_slot(config_.channel_for(room)));
  return n ? n->address : std::string();
}

std::size_t ClusterFanout::masters() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const auto& entry) { return entry.second->owns_slots; }));
}

bool ClusterFanout::connected() const noexcept { return healthy(); }

void ClusterFanout::update_connected() { metrics_.connected.set(healthy() ? 1 : 0); }

bool ClusterFanout::healthy() const {
  if (topology_reads_ == 0) return false;
  for (const Node* n : slots_)
    if (!n || !n->ready()) return false;
  for (const auto& [address, n] : nodes_)
    if (n->sub && !n->sub->channels().empty() && !n->sub->ready()) return false;
  return true;
}

Readiness ClusterFanout::readiness() const {
  if (nodes_.empty()) return Readiness::no("not connected to the Redis cluster (not started)");
  if (topology_reads_ == 0)
    return Readiness::no("the Redis cluster's topology was not read yet from '" + config_.url.endpoint() + "'");
  for (std::size_t s = 0; s < slots_.size(); ++s)
    if (!slots_[s]) return Readiness::no("no master known for slot " + std::to_string(s));
  for (const auto& [address, n] : nodes_) {
    if (n->owns_slots && !n->ready())
      return Readiness::no("no connection to Redis cluster node '" + address + "'" +
                           (n->link->last_error().empty() ? std::string() : ": " + n->link->last_error()));
    if (n->sub && !n->sub->channels().empty() && !n->sub->ready())
      return Readiness::no("no subscribed connection to Redis cluster node '" + address + "'" +
                           (n->sub->last_error().empty() ? std::string() : ": " + n->sub->last_error()));
  }
  return Readiness::yes();
}

Status ClusterFanout::start(FanoutReceiver& receiver) {
  if (!config_.url_error.empty())
    return Status::error(StatusCode::invalid_argument,
                         "url: " + config_.url_error + ", got \"" + config_.url_text + "\"");
  if (const std::string why = config_.check(); !why.empty()) return Status::error(StatusCode::invalid_argument, why);
  if (!nodes_.empty()) return Status::error(StatusCode::internal, "the redis fanout was started twice");
  receiver_ = &receiver;
  seeds_.insert(config_.url.endpoint());
  for (const auto& seed : config_.cluster_seeds) seeds_.insert(seed);
  context_.logger().info("using redis cluster mode (sharded pub/sub) from '", config_.url.endpoint(), "'",
                         config_.cluster_seeds.empty() ? "" : " and the cluster_seeds");
  for (const auto& seed : seeds_) node(seed);
  tick();
  presence_->start(receiver);
  return Status::success();
}

void ClusterFanout::tick() {
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired() || stopping_) return;
    update_connected();
    if (!healthy()) refresh_topology();
    tick();
  });
}

void ClusterFanout::refresh_soon() {
  if (refresh_armed_ || stopping_) return;
  refresh_armed_ = true;
  refresh_timer_.expires_after(kRefreshDelay);
  refresh_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (alive.expired()) return;
    refresh_armed_ = false;
    if (!ec && !stopping_) refresh_topology();
  });
}

void ClusterFanout::refresh_topology() {
  if (refresh_in_flight_ || stopping_ || nodes_.empty()) return;
  // Round robin over the nodes that answer, so a node that is itself behind
  // (it has not heard of a failover yet) is not the only one asked.
  std::vector<Node*> ready;
  for (const auto& [address, n] : nodes_)
    if (n->ready()) ready.push_back(n.get());
  if (ready.empty()) return;  // the links reconnect; their on_ready or the tick asks again
  Node* n = ready[next_probe_++ % ready.size()];
  if (redisAsyncCommand(n->link->context(), &ClusterFanout::on_shards, this, "CLUSTER SHARDS") == REDIS_OK)
    refresh_in_flight_ = true;
}

void ClusterFanout::on_shards(redisAsyncContext*, void* reply, void* self) {
  auto* me = static_cast<ClusterFanout*>(self);
  me->refresh_in_flight_ = false;
  if (me->stopping_) return;
  // Applied from the loop, not inside the hiredis callback: it may retire
  // the node whose connection this reply came on.
  if (!reply) return;
  me->handle_shards(static_cast<const redisReply*>(reply));
}

void ClusterFanout::handle_shards(const redisReply* reply) {
  std::vector<cluster::Shard> shards;
  std::string error;
  if (reply->type == REDIS_REPLY_ERROR) error = "CLUSTER SHARDS was refused: " + std::string(reply->str, reply->len);
  else cluster::parse_shards(reply, shards, error);
  if (!error.empty()) {
    std::uint64_t suppressed = 0;
    if (topology_log_.allow(suppressed))
      context_.logger().warn("cannot read the redis cluster's topology: ", error, suppressed_note(suppressed));
    return;
  }
  std::vector<Node*> next(cluster::kSlots, nullptr);
  std::set<Node*> owners;
  for (const auto& shard : shards) {
    Node* n = &node(shard.address);
    owners.insert(n);
    for (const auto& [first, last] : shard.ranges)
      for (unsigned s = first; s <= last; ++s) next[s] = n;
  }
  const bool changed = next != slots_;
  slots_ = std::move(next);
  ++topology_reads_;
  topology_changes_.add();
  for (auto& [address, n] : nodes_) n->owns_slots = owners.count(n.get()) != 0;
  if (changed)
    context_.logger().info("redis cluster topology: ", owners.size(), " masters serve ",
                           std::count_if(slots_.begin(), slots_.end(), [](Node* n) { return n != nullptr; }),
                           " of 16384 slots");
  place_subscriptions();
  // Nodes that serve nothing any more and are no seeds: their connections
  // go (a dead master's would retry for ever). Posted, since this may run
  // inside one of their callbacks.
  std::vector<std::unique_ptr<Node>> retired;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (!it->second->owns_slots && !seeds_.count(it->first)) {
      retired.push_back(std::move(it->second));
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
  if (!retired.empty()) {
    for (auto& n : retired) retired_.push_back(std::move(n));
    boost::asio::post(context_.executor(), [this, alive = std::weak_ptr<int>(alive_)] {
      if (!alive.expired()) retired_.clear();  // else the destructor freed them
    });
  }
  update_connected();
  if (changed && topology_reads_ > 1) hold();
  flush();
  schedule_append();
}

void ClusterFanout::hold() {
  hold_until_ = std::chrono::steady_clock::now() + kHandover;
  hold_timer_.expires_at(hold_until_);
  hold_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired() || stopping_) return;
    flush();
  });
}

bool ClusterFanout::holding() const { return std::chrono::steady_clock::now() < hold_until_; }

std::vector<std::string> ClusterFanout::wanted_channels() const {
  if (!config_.channel_per_room) return {config_.channel};
  std::vector<std::string> channels;
  channels.reserve(rooms_.size());
  for (const auto& room : rooms_) channels.push_back(config_.channel_for(room));
  return channels;
}

void ClusterFanout::place_subscriptions() {
  if (stopping_) return;
  std::set<std::string> wanted;
  for (auto& channel : wanted_channels()) {
    Node* target = owner(cluster::key_slot(channel));
    wanted.insert(channel);
    if (!target) continue;  // stays where it is until the slot has a master again
    auto [it, inserted] = placed_.try_emplace(channel, target);
    if (!inserted && it->second == target && target->sub && target->sub->holds(channel)) continue;
    if (!inserted && it->second != target) {
      // An init-capture: clang before 16 cannot capture a structured binding (clang-tidy parses with clang 14).
      auto old = std::find_if(nodes_.begin(), nodes_.end(),
                              [placed = it->second](const auto& e) { return e.second.get() == placed; });
      if (old != nodes_.end() && old->second->sub) old->second->sub->unsubscribe(channel);
    }
    it->second = target;
    if (!target->sub) {
      Node* np = target;
      std::string host = np->config.url.host;
      target->sub = std::make_unique<ShardSubscriber>(
          host, np->config.url.port, np->config, context_, client_name(context_, "sub"),
          ShardSubscriber::Hooks{[this](std::string_view channel_name, std::string_view payload) {
                                   if (is_presence_frame(payload)) {
                                     if (receiver_) presence_->on_frame(payload);
                                     return;
                                   }
                                   std::shared_ptr<Message> message;
                                   if (Status s = decode_envelope(payload, message); !s.ok()) {
                                     metrics_.decode_errors.add();
                                     std::uint64_t suppressed = 0;
                                     if (decode_error_log_.allow(suppressed))
                                       context_.logger().warn("ignored a ", payload.size(),
                                                              "-byte payload on channel '", channel_name,
                                                              "' that is not a Nudge envelope: ", s.message(),
                                                              suppressed_note(suppressed));
                                     return;
                                   }
                                   metrics_.received.add();
                                   if (receiver_) receiver_->on_fanout_message(std::move(message));
                                 },
                                 [this] { update_connected(); },
                                 [this] {
                                   update_connected();
                                   refresh_soon();
                                 },
                                 [this](std::string_view) { refresh_soon(); }},
          metrics_.reconnects);
      target->sub->start();
    }
    target->sub->subscribe(channel);
  }
  for (auto it = placed_.begin(); it != placed_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    for (auto& [address, n] : nodes_)
      if (n.get() == it->second && n->sub) n->sub->unsubscribe(it->first);
    it = placed_.erase(it);
  }
  // Channels held by nodes about to be retired have been moved above; a
  // node that serves nothing keeps no subscriber.
  for (auto& [address, n] : nodes_)
    if (!n->owns_slots && n->sub) {
      for (auto it = placed_.begin(); it != placed_.end();)
        it = it->second == n.get() ? placed_.erase(it) : std::next(it);
      n->sub->stop();
      n->sub.reset();
    }
}

void ClusterFanout::set_room_interest(std::string_view room, bool interested) {
  if (stopping_) return;
  presence_->set_interest(room, interested);
  if (!config_.channel_per_room) return;
  if (interested) {
    if (!rooms_.emplace(room).second) return;
  } else {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    rooms_.erase(it);
  }
  place_subscriptions();
}

// Publishing.

void ClusterFanout::publish(const MessagePtr& message) {
  if (stopping_ || !message) return;
  // While holding, everything queues behind what waits, so a room keeps its order.
  // Behind messages waiting for bytes to be answered, a message waits too, so a room keeps its order.
  if (!holding() && in_flight_ < window_ && !bytes_full_ && fits(*message) && send(message)) return;
  if (!fits(*message)) bytes_full_ = true;
  if (pending_.size() >= window_) drop_oldest_pending("max_pending_publishes");
  pending_.push_back(message);
  pending_bytes_ += message->envelope().size();
  // What is sent and unanswered cannot be taken back: the waiting make room.
  while (!pending_.empty() && held_bytes() > max_bytes_) drop_oldest_pending("max_pending_bytes");
  update_held();
}

void ClusterFanout::drop_oldest_pending(const char* limit) {
  const MessagePtr& oldest = pending_.front();
  if (config_.recent_messages > 0 && !is_ephemeral(*oldest)) note_gap(oldest->room, oldest->id);
  pending_bytes_ -= oldest->envelope().size();
  pending_.pop_front();
  metrics_.dropped.add();
  std::uint64_t suppressed = 0;
  if (drop_log_.allow(suppressed))
    context_.logger().warn(
        "dropping the oldest waiting messages: a redis cluster master is unreachable or "
        "behind and ",
        pending_.size() + 1, " messages and ", held_bytes(), " bytes are held already (", limit, "); ",
        metrics_.dropped.value(), " dropped so far", suppressed_note(suppressed));
}

std::size_t ClusterFanout::cost(const Message& message) const {
  const std::size_t size = message.envelope().size();
  return config_.recent_messages > 0 && !is_ephemeral(message) ? 2 * size : size;
}

bool ClusterFanout::fits(const Message& message) const {
  const std::size_t sent = sent_bytes_ + recent_queue_bytes_;
  return sent == 0 || sent + cost(message) <= max_bytes_;
}

void ClusterFanout::release(Request& request) {
  sent_bytes_ -= std::exchange(request.held, 0);
  update_held();
  // What waited for bytes to be answered may go; in order, so only while the first fits.
  if (bytes_full_ && !stopping_ && !pending_.empty() && fits(*pending_.front())) {
    bytes_full_ = false;
    flush();
  }
}

void ClusterFanout::update_held() {
  metrics_.held_bytes.set(static_cast<std::int64_t>(held_bytes()));
  metrics_.held_messages.set(static_cast<std::int64_t>(pending() + in_flight_ + recent_queue_.size()));
}

bool ClusterFanout::send(const MessagePtr& message) {
  auto request = std::make_unique<Request>();
  request->self = this;
  request->kind = Kind::publish;
  request->message = message;
  request->slot = cluster::key_slot(config_.channel_for(message->room));
  request->held = message->envelope().size();
  const std::size_t held = request->held;
  if (!dispatch(request, nullptr, false)) return false;
  ++in_flight_;
  sent_bytes_ += held;
  // An ephemeral message is never history: it stays out of the recent window.
  if (config_.recent_messages > 0 && !is_ephemeral(*message)) remember(message);
  update_held();
  return true;
}

void ClusterFanout::flush() {
  if (holding() && !stopping_) return;
  // Whatever's master is up goes; the rest keeps its order and waits.
  // Redirected publishes were sent before anything queued: they go first.
  std::deque<MessagePtr> waiting;
  // Once one does not fit in max_pending_bytes the rest wait too, in order.
  auto go = [&](const MessagePtr& m) {
    if (bytes_full_ || in_flight_ >= window_) return false;
    if (!fits(*m)) {
      bytes_full_ = true;
      return false;
    }
    return send(m);
  };
  for (auto& m : redirected_)
    if (!go(m)) waiting.push_back(std::move(m));
  redirected_.clear();
  while (!pending_.empty()) {
    MessagePtr m = std::move(pending_.front());
    pending_.pop_front();
    if (!go(m)) waiting.push_back(std::move(m));
  }
  pending_ = std::move(waiting);
  pending_bytes_ = 0;
  for (const auto& m : pending_) pending_bytes_ += m->envelope().size();
  update_held();
}

/// Sends the request to `target`, or to the owner of its slot. False (the
/// request left with the caller) when there is no connection to send it on.
bool ClusterFanout::dispatch(std::unique_ptr<Request>& request, Node* target, bool asking) {
  if (!target) target = owner(request->slot);
  redisAsyncContext* ac = target ? target->link->context() : nullptr;
  if (!ac) return false;
  std::deque<std::string> texts;
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  auto arg = [&](std::string_view a) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  };
  auto text = [&](std::string t) { arg(texts.emplace_back(std::move(t))); };
  switch (request->kind) {
    case Kind::publish: {
      text(config_.channel_for(request->message->room));
      argv.insert(argv.begin(), "SPUBLISH");
      lens.insert(lens.begin(), 8);
      arg(request->message->envelope());
      break;
    }
    case Kind::append: {
      if (target->script_sha.empty()) {
        arg("EVAL");
        arg(recent::script());
      } else {
        arg("EVALSHA");
        arg(target->script_sha);
      }
      arg("3");
      for (auto& key : recent::cluster_keys(config_.recent_key_prefix, request->room)) text(std::move(key));
      arg(config_.recent_key_prefix);
      text(std::to_string(config_.recent_messages));
      text(std::to_string(config_.recent_max_room_bytes));
      text(std::to_string(config_.recent_max_bytes));
      text(std::to_string(config_.recent_max_rooms));
      text(std::to_string(config_.recent_ttl_s * 1000));
      text(std::string());  // no cut of every room: rooms are kept apart
      text(request->cut ? "1" : "0");
      if (request->cut) {
        arg(request->room);
        text(recent::hex(*request->cut));
      }
      for (const auto& m : request->messages) {
        arg(m->room);
        text(recent::hex(m->id));
        arg(m->envelope());
      }
      break;
    }
    case Kind::presence: {
      request->by_sha = !target->presence_sha.empty();
      arg(request->by_sha ? "EVALSHA" : "EVAL");
      arg(request->by_sha ? std::string_view(target->presence_sha) : PresenceKeeper::script());
      arg("1");
      arg(request->key);
      for (const auto& a : request->args) arg(a);
      break;
    }
    case Kind::frame: {
      arg("SPUBLISH");
      text(config_.channel_for(request->room));
      arg(request->frame);
      break;
    }
    case Kind::read: {
      arg("XREVRANGE");
      text(recent::cluster_keys(config_.recent_key_prefix, request->room)[0]);
      arg("+");
      arg("-");
      arg("COUNT");
      text(std::to_string(
          std::min<std::size_t>(request->query.limit, static_cast<std::size_t>(config_.recent_messages))));
      break;
    }
  }
  if (asking) redisAsyncCommand(ac, nullptr, nullptr, "ASKING");
  if (redisAsyncCommandArgv(ac, &ClusterFanout::on_reply, request.get(), static_cast<int>(argv.size()), argv.data(),
                            lens.data()) != REDIS_OK)
    return false;
  request->address = target->address;
  request.release();  // hiredis hands it back to on_reply, with or without a reply
  return true;
}

void ClusterFanout::on_reply(redisAsyncContext*, void* reply, void* request_ptr) {
  std::unique_ptr<Request> request(static_cast<Request*>(request_ptr));
  ClusterFanout* self = request->self;  // read before the move, plainly
  self->handle_reply(static_cast<const redisReply*>(reply), std::move(request));
}

void ClusterFanout::handle_reply(const redisReply* reply, std::unique_ptr<Request> request) {
  cluster::Redirect redirect;
  if (reply && reply->type == REDIS_REPLY_ERROR && !stopping_ &&
      cluster::parse_redirect(std::string_view(reply->str, reply->len), redirect)) {
    redirects_.add();
    if (!redirect.ask) {
      // The slot moved: the map is stale, for this slot at least.
      Node& moved_to = node(redirect.address);
      moved_to.owns_slots = true;
      slots_[redirect.slot] = &moved_to;
      refresh_soon();
    }
    if (request->kind == Kind::publish && !redirect.ask && request->redirects < kMaxRedirects) {
      // The slot was handed over: this and what follows wait kHandover, so
      // the other instances' subscribers move first. Replies come in the
      // order the publishes went, ahead of anything queued since.
      --in_flight_;
      pending_bytes_ += request->message->envelope().size();
      redirected_.push_back(std::move(request->message));
      hold();
      release(*request);
      return;
    }
    if (++request->redirects <= kMaxRedirects) {
      Node* target = redirect.ask ? &node(redirect.address) : nullptr;
      if (dispatch(request, target, redirect.ask)) return;  // in flight again, counted as before
      if (request->kind == Kind::publish) {
        // No connection to the new owner yet: it waits with the others.
        --in_flight_;
        pending_.push_front(request->message);
        pending_bytes_ += request->message->envelope().size();
        release(*request);
        return;
      }
    }
  }
  if (request->kind == Kind::presence && request->by_sha && PresenceKeeper::is_noscript(reply) && !stopping_) {
    // The node lost its scripts (a restart, a failover): the call ran
    // nothing, so it goes again by EVAL while the script is loaded anew.
    if (auto it = nodes_.find(request->address); it != nodes_.end()) {
      it->second->presence_sha.clear();
      load_presence_script(*it->second);
    }
    if (!dispatch(request, nullptr, false)) request->on_presence(nullptr);
    return;
  }
  finish(reply, *request);
}

void ClusterFanout::finish(const redisReply* reply, Request& request) {
  if (request.held) release(request);
  if (request.kind == Kind::presence) return request.on_presence(reply);  // errors too: the keeper says what failed
  if (!reply || reply->type == REDIS_REPLY_ERROR) {
    fail_request(request, reply ? std::string(reply->str, reply->len)
                                : std::string("the connection to '" + request.address + "' was lost"));
    return;
  }
  switch (request.kind) {
    case Kind::publish: {
      // Only a full window held messages back that a reply now lets go;
      // else what waits waits for its master, and scanning it per reply
      // would cost as much as the queue is long.
      const bool was_full = in_flight_ >= window_;
      if (in_flight_ > 0) --in_flight_;
      metrics_.published.add();
      if (was_full && !pending_.empty() && !stopping_) flush();
      return;
    }
    case Kind::append:
      if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 5) {
        auto number = [&](std::size_t i) {
          const redisReply* r = reply->element[i];
          return r->type == REDIS_REPLY_INTEGER ? static_cast<std::uint64_t>(std::max<long long>(r->integer, 0)) : 0;
        };
        metrics_.recent_appended.add(number(0));
        metrics_.recent_skipped.add(number(1));
        metrics_.recent_rooms_evicted.add(number(2));
      }
      return;
    case Kind::presence:
      return;  // answered above
    case Kind::frame:
      metrics_.published.add();
      return;
    case Kind::read: {
      std::vector<MessagePtr> messages = recent::messages_of(*reply);
      boost::asio::post(context_.executor(),
                        [done = std::move(request.done), messages = std::move(messages)]() mutable {
                          done(Status::success(), std::move(messages));
                        });
      return;
    }
  }
}

void ClusterFanout::fail_request(Request& request, const std::string& why) {
  switch (request.kind) {
    case Kind::publish: {
      if (in_flight_ > 0) --in_flight_;
      metrics_.publish_errors.add();
      std::uint64_t suppressed = 0;
      if (publish_error_log_.allow(suppressed))
        context_.logger().warn("an SPUBLISH to redis cluster node '", request.address, "' failed: ", why,
                               "; it may not have reached other instances", suppressed_note(suppressed));
      return;
    }
    case Kind::append: {
      metrics_.recent_errors.add();
      std::uint64_t suppressed = 0;
      if (append_error_log_.allow(suppressed))
        context_.logger().warn("a call of the recent window's script on redis cluster node '", request.address,
                               "' failed: ", why, "; the room is cut, so its history is read from the sink",
                               suppressed_note(suppressed));
      for (const auto& m : request.messages) note_gap(m->room, m->id);
      if (request.cut) {
        auto [it, inserted] = gaps_.try_emplace(request.room, *request.cut);
        if (!inserted && it->second < *request.cut) it->second = *request.cut;
      }
      if (why.rfind("NOSCRIPT", 0) == 0)
        if (auto it = nodes_.find(request.address); it != nodes_.end()) it->second->script_sha.clear();
      return;
    }
    case Kind::presence:
      request.on_presence(nullptr);
      return;
    case Kind::frame: {
      metrics_.publish_errors.add();
      std::uint64_t suppressed = 0;
      if (publish_error_log_.allow(suppressed))
        context_.logger().warn("a presence event's SPUBLISH to redis cluster node '", request.address,
                               "' failed: ", why, suppressed_note(suppressed));
      return;
    }
    case Kind::read:
      boost::asio::post(context_.executor(), [done = std::move(request.done), why] {
        done(Status::error(StatusCode::unavailable, "redis cluster read failed: " + why), {});
      });
      return;
  }
}

void ClusterFanout::load_presence_script(Node& n) {
  const std::string_view text = PresenceKeeper::script();
  const char* argv[3] = {"SCRIPT", "LOAD", text.data()};
  const std::size_t lens[3] = {6, 4, text.size()};
  redisAsyncContext* ac = n.link ? n.link->context() : nullptr;
  if (ac) redisAsyncCommandArgv(ac, &ClusterFanout::on_presence_script_loaded, &n, 3, argv, lens);
}

void ClusterFanout::on_presence_script_loaded(redisAsyncContext*, void* reply_ptr, void* node_ptr) {
  const auto* reply = static_cast<const redisReply*>(reply_ptr);
  if (reply && reply->type == REDIS_REPLY_STRING)
    static_cast<Node*>(node_ptr)->presence_sha.assign(reply->str, reply->len);
}

void ClusterFanout::on_script_loaded(redisAsyncContext*, void* reply_ptr, void* node_ptr) {
  const auto* reply = static_cast<const redisReply*>(reply_ptr);
  // No reply: the connection (and maybe the node) is going away.
  if (reply && reply->type == REDIS_REPLY_STRING)
    static_cast<Node*>(node_ptr)->script_sha.assign(reply->str, reply->len);
}

// The recent window.

void ClusterFanout::remember(const MessagePtr& message) {
  if (recent_queue_.size() >= window_) {
    note_gap(recent_queue_.front()->room, recent_queue_.front()->id);
    recent_queue_bytes_ -= recent_queue_.front()->envelope().size();
    recent_queue_.pop_front();
  }
  recent_queue_.push_back(message);
  recent_queue_bytes_ += message->envelope().size();
  schedule_append();
}

void ClusterFanout::note_gap(const std::string& room, const MessageId& id) {
  metrics_.recent_missed.add();
  auto [it, inserted] = gaps_.try_emplace(room, id);
  if (!inserted && it->second < id) it->second = id;
}

void ClusterFanout::schedule_append() {
  if (append_scheduled_ || config_.recent_messages == 0) return;
  append_scheduled_ = true;
  boost::asio::post(context_.executor(), [this, alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired()) return;
    append_scheduled_ = false;
    if (!stopping_) append_recent();
  });
}

void ClusterFanout::append_recent() {
  // One call per room: its keys are its slot's alone. A room's cut goes in
  // the same call as its messages, before them.
  std::map<std::string, std::unique_ptr<Request>> calls;
  auto call_for = [&](const std::string& room) -> Request& {
    auto& r = calls[room];
    if (!r) {
      r = std::make_unique<Request>();
      r->self = this;
      r->kind = Kind::append;
      r->room = room;
      r->slot = cluster::key_slot(recent::cluster_keys(config_.recent_key_prefix, room)[0]);
    }
    return *r;
  };
  for (auto it = gaps_.begin(); it != gaps_.end();) {
    Request& r = call_for(it->first);
    r.cut = it->second;
    it = gaps_.erase(it);
  }
  for (auto& m : recent_queue_) {
    Request& r = call_for(m->room);
    r.held += m->envelope().size();
    r.messages.push_back(std::move(m));
  }
  recent_queue_.clear();
  recent_queue_bytes_ = 0;
  for (auto& [room, request] : calls) {
    const std::size_t held = request->held;
    if (dispatch(request, nullptr, false)) {
      sent_bytes_ += held;
      continue;
    }
    // The owner is not reachable: what it would have held is a gap, cut when it is.
    for (const auto& m : request->messages) note_gap(m->room, m->id);
    if (request->cut) {
      auto [it, inserted] = gaps_.try_emplace(room, *request->cut);
      if (!inserted && it->second < *request->cut) it->second = *request->cut;
    }
  }
  update_held();
}

void ClusterFanout::read_recent(HistoryQuery query, HistoryHandler done) {
  auto request = std::make_unique<Request>();
  request->self = this;
  request->kind = Kind::read;
  request->room = query.room;
  request->slot = cluster::key_slot(recent::cluster_keys(config_.recent_key_prefix, query.room)[0]);
  request->query = std::move(query);
  request->done = std::move(done);
  if (!stopping_ && dispatch(request, nullptr, false)) return;
  boost::asio::post(context_.executor(), [done = std::move(request->done)] {
    done(Status::error(StatusCode::unavailable, "no connection to the redis cluster node that owns the room"), {});
  });
}

void ClusterFanout::stop(std::function<void()> done) {
  presence_->stop();  // its leaves go out before the connections close
  hold_until_ = {};
  hold_timer_.cancel();
  if (!pending_.empty() && !nodes_.empty()) flush();
  if (config_.recent_messages > 0 && !nodes_.empty()) append_recent();
  stopping_ = true;
  receiver_ = nullptr;
  refresh_timer_.cancel();
  tick_timer_.cancel();
  for (auto& m : redirected_) pending_.push_front(std::move(m));
  redirected_.clear();
  if (!pending_.empty()) {
    if (config_.recent_messages > 0) metrics_.recent_missed.add(pending_.size());
    metrics_.dropped.add(pending_.size());
    context_.logger().warn("dropped ", pending_.size(), " messages at stop that were waiting for the redis cluster");
    pending_.clear();
    pending_bytes_ = 0;
    update_held();
  }
  metrics_.connected.set(0);
  auto remaining = std::make_shared<std::size_t>(nodes_.size() + 1);
  auto one_done = [remaining, done = std::move(done)] {
    if (--*remaining == 0) done();
  };
  for (auto& [address, n] : nodes_) {
    if (n->sub) n->sub->stop();
    n->link->stop(one_done);
  }
  one_done();
}

}  // namespace nudge::plugins::redis
