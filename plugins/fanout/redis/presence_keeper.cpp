#include "presence_keeper.hpp"

#include <algorithm>

#include <hiredis/hiredis.h>

#include <boost/asio/post.hpp>

namespace nudge::plugins::redis {

namespace {

/// Members per refresh call, so one call holds Redis briefly.
constexpr std::size_t kRefreshChunk = 500;
/// Expired entries one sweep removes; the rest go at the next tick.
constexpr int kSweepLimit = 1000;

// KEYS[1]: the room's set. ARGV[1]: op, ARGV[2]: ttl in ms, then per op:
//   join    entries...  -> per entry 1 if it was new (a refresh re-adds what a
//                          sweep removed meanwhile: a join again), else 0;
//                          then the count of the set
//   leave   entries...  -> per entry 1 if it was there
//   sweep               -> {count left, the expired entries it removed}
//   read    limit       -> {count, up to limit entries, the expired entries it removed}
// The server's clock scores entries, so instances' clocks need not agree.
constexpr std::string_view kScript = R"lua(
local key, op, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function sweep()
  local gone = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[#ARGV]))
  for _, e in ipairs(gone) do redis.call('ZREM', key, e) end
  return gone
end
if op == 'join' then
  local added = {}
  for i = 3, #ARGV do added[#added + 1] = redis.call('ZADD', key, now + ttl, ARGV[i]) end
  redis.call('PEXPIRE', key, ttl * 2)
  added[#added + 1] = redis.call('ZCARD', key)
  return added
elseif op == 'leave' then
  local removed = {}
  for i = 3, #ARGV do removed[#removed + 1] = redis.call('ZREM', key, ARGV[i]) end
  return removed
elseif op == 'sweep' then
  local gone = sweep()
  return {redis.call('ZCARD', key), gone}
else
  local gone = sweep()
  return {redis.call('ZCARD', key), redis.call('ZRANGE', key, 0, tonumber(ARGV[3]) - 1), gone}
end
)lua";

}  // namespace

std::string_view PresenceKeeper::script() { return kScript; }

bool PresenceKeeper::is_noscript(const redisReply* reply) {
  return reply && reply->type == REDIS_REPLY_ERROR && std::string_view(reply->str, reply->len).starts_with("NOSCRIPT");
}

PresenceKeeper::PresenceKeeper(Settings settings, Context& context, Host host)
    : settings_(std::move(settings)),
      context_(context),
      host_(std::move(host)),
      timer_(context.executor()),
      expired_(context.metrics().counter("presence_expired",
                                         "Presence members removed because their instance stopped refreshing them")),
      errors_(context.metrics().counter("presence_errors", "Presence calls to Redis that failed")),
      decode_errors_(context.metrics().counter("presence_decode_errors", "Malformed presence frames ignored")),
      members_gauge_(context.metrics().gauge("presence_members", "This instance's members over all rooms")) {}

PresenceKeeper::~PresenceKeeper() { timer_.cancel(); }

std::string PresenceKeeper::key_for(std::string_view room) const {
  std::string key = settings_.key_prefix;
  if (settings_.hash_tag) key += '{';
  key += room;
  if (settings_.hash_tag) key += '}';
  return key;
}

std::string PresenceKeeper::entry(const PresenceMember& member) {
  return encode_presence_frame({PresenceFrame::Kind::join, {}, member.instance, {member}, 1});
}

std::string PresenceKeeper::frame(PresenceFrame::Kind kind, std::string_view room, const PresenceMember& member) {
  return encode_presence_frame({kind, std::string(room), member.instance, {member}, 1});
}

void PresenceKeeper::start(FanoutReceiver& receiver) {
  receiver_ = &receiver;
  schedule();
}

void PresenceKeeper::schedule() {
  if (stopped_) return;
  // Sweeps every ttl/6, refreshes every other tick (ttl/3): a refresh may be
  // late by a tick and an entry still has a third of its life left.
  timer_.expires_after(std::max(settings_.ttl / 6, std::chrono::milliseconds(20)));
  timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired() || stopped_) return;
    tick(++ticks_ % 2 == 0);
    schedule();
  });
}

void PresenceKeeper::tick_now() { tick(true); }

void PresenceKeeper::tick(bool refresh_too) {
  if (refresh_too)
    for (const auto& [room, members] : local_) refresh(room, members);
  // Only rooms that may hold other instances' members: a room nobody joined,
  // or where only this instance's members are (refreshed, so never expired
  // while it lives), costs no sweep.
  for (const auto& [room, generation] : watched_) sweep(room);
}

void PresenceKeeper::watch(std::string_view room) {
  if (!interest_.contains(room)) return;  // no client here to tell
  auto it = watched_.find(room);
  if (it == watched_.end()) it = watched_.emplace(std::string(room), 0).first;
  it->second = ++generation_;
}

void PresenceKeeper::seen(const std::string& room, long long count, std::uint64_t generation) {
  const auto own = local_.find(room);
  const std::size_t mine = own == local_.end() ? 0 : own->second.size();
  auto it = watched_.find(room);
  if (count > static_cast<long long>(mine)) {
    if (it == watched_.end()) watch(room);
    return;
  }
  // No one else's when the call ran; a join heard since (a newer
  // generation) may have come after it, so the room stays watched until a
  // sweep says so. A count off by calls in flight costs a sweep more, or
  // finds another's member a tick later.
  if (it != watched_.end() && it->second == generation) watched_.erase(it);
}

std::uint64_t PresenceKeeper::generation_of(std::string_view room) const {
  const auto it = watched_.find(room);
  return it == watched_.end() ? 0 : it->second;
}

void PresenceKeeper::failed(const char* what, const redisReply* reply) {
  errors_.add();
  std::uint64_t suppressed = 0;
  if (error_log_.allow(suppressed))
    context_.logger().warn("a presence ", what, " failed: ",
                           reply ? std::string(reply->str, reply->len) : std::string("no connection to redis"),
                           "; it is retried at the next refresh",
                           suppressed ? " (" + std::to_string(suppressed) + " more since the last report)" : "");
}

void PresenceKeeper::refresh(const std::string& room, const Members& members) {
  const std::uint64_t generation = generation_of(room);
  auto it = members.begin();
  while (it != members.end()) {
    std::vector<std::string> args{"join", std::to_string(settings_.ttl.count())};
    auto sent = std::make_shared<std::vector<PresenceMember>>();
    for (; it != members.end() && sent->size() < kRefreshChunk; ++it) {
      sent->push_back(member(it->first, it->second));
      args.push_back(entry(sent->back()));
    }
    const bool queued =
        host_.eval(key_for(room), std::move(args),
                   [this, room, sent, generation, alive = std::weak_ptr<int>(alive_)](const redisReply* reply) {
                     if (alive.expired()) return;
                     if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != sent->size() + 1 ||
                         reply->element[sent->size()]->type != REDIS_REPLY_INTEGER)
                       return failed("refresh", reply && reply->type == REDIS_REPLY_ERROR ? reply : nullptr);
                     for (std::size_t i = 0; i < sent->size(); ++i)
                       if (reply->element[i]->type == REDIS_REPLY_INTEGER && reply->element[i]->integer == 1)
                         host_.publish(room, frame(PresenceFrame::Kind::join, room, (*sent)[i]));
                     // More entries than this instance's: others' members, to sweep for.
                     if (interest_.contains(room)) seen(room, reply->element[sent->size()]->integer, generation);
                   });
    if (!queued) return failed("refresh", nullptr);
  }
}

PresenceMember PresenceKeeper::member(const std::string& connection, const std::string& user) const {
  return PresenceMember{user, connection, instance_};
}

void PresenceKeeper::join(std::string_view room, const PresenceMember& member) {
  auto it = local_.find(room);
  if (it == local_.end()) it = local_.emplace(std::string(room), Members{}).first;
  // Every member is this instance's (the runtime names it): kept once.
  if (instance_ != member.instance) instance_ = member.instance;
  if (!it->second.try_emplace(member.connection, member.user).second) return;
  ++local_count_;
  members_gauge_.set(static_cast<std::int64_t>(local_count_));
  // Refreshing the one member adds it, and reports the join when it is new.
  refresh(it->first, Members{{member.connection, member.user}});
}

void PresenceKeeper::leave(std::string_view room, const PresenceMember& member) {
  auto it = local_.find(room);
  if (it == local_.end()) return;
  auto found = it->second.find(member.connection);
  if (found == it->second.end()) return;
  const PresenceMember left = this->member(found->first, found->second);
  it->second.erase(found);
  if (it->second.empty()) local_.erase(it);
  --local_count_;
  members_gauge_.set(static_cast<std::int64_t>(local_count_));
  const std::string r(room);
  const bool queued =
      host_.eval(key_for(r), {"leave", std::to_string(settings_.ttl.count()), entry(left)},
                 [this, r, left, alive = std::weak_ptr<int>(alive_)](const redisReply* reply) {
                   if (alive.expired()) return;
                   if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 1)
                     return failed("leave", reply && reply->type == REDIS_REPLY_ERROR ? reply : nullptr);
                   if (reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1)
                     host_.publish(r, frame(PresenceFrame::Kind::leave, r, left));
                 });
  // Unsent, its entry expires within the TTL and a sweeper reports the leave.
  if (!queued) failed("leave", nullptr);
}

void PresenceKeeper::sweep(const std::string& room) {
  const std::uint64_t generation = generation_of(room);
  host_.eval(key_for(room), {"sweep", std::to_string(settings_.ttl.count()), std::to_string(kSweepLimit)},
             [this, room, generation, alive = std::weak_ptr<int>(alive_)](const redisReply* reply) {
               if (alive.expired()) return;
               if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                   reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_ARRAY)
                 return failed("sweep", reply && reply->type == REDIS_REPLY_ERROR ? reply : nullptr);
               report_gone(room, reply->element[1]);
               seen(room, reply->element[0]->integer, generation);
             });
}

void PresenceKeeper::report_gone(const std::string& room, const redisReply* gone) {
  for (std::size_t i = 0; i < gone->elements; ++i) {
    const redisReply* e = gone->element[i];
    PresenceFrame f;
    if (e->type != REDIS_REPLY_STRING || !decode_presence_frame(std::string_view(e->str, e->len), f).ok() ||
        f.members.size() != 1) {
      decode_errors_.add();
      continue;
    }
    expired_.add();
    host_.publish(room, frame(PresenceFrame::Kind::leave, room, f.members[0]));
  }
}

void PresenceKeeper::read(std::string_view room, PresenceHandler done) {
  const std::string r(room);
  const std::uint64_t generation = generation_of(room);
  auto handler = std::make_shared<PresenceHandler>(std::move(done));
  auto answer = [this, handler](Status status, PresenceList list) {
    boost::asio::post(context_.executor(), [handler, status = std::move(status), list = std::move(list)]() mutable {
      (*handler)(std::move(status), std::move(list));
    });
  };
  const bool queued =
      host_.eval(key_for(r),
                 {"read", std::to_string(settings_.ttl.count()), std::to_string(settings_.max_per_room),
                  std::to_string(kSweepLimit)},
                 [this, r, answer, generation, alive = std::weak_ptr<int>(alive_)](const redisReply* reply) {
                   if (alive.expired()) return;  // freed with its connection: no one to answer
                   if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
                       reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_ARRAY ||
                       reply->element[2]->type != REDIS_REPLY_ARRAY) {
                     errors_.add();
                     return answer(Status::error(StatusCode::unavailable, "reading presence from redis failed: " +
                                                                              (reply && reply->type == REDIS_REPLY_ERROR
                                                                                   ? std::string(reply->str, reply->len)
                                                                                   : std::string("no answer"))),
                                   {});
                   }
                   PresenceList list;
                   list.total = static_cast<std::size_t>(std::max<long long>(reply->element[0]->integer, 0));
                   const redisReply* entries = reply->element[1];
                   for (std::size_t i = 0; i < entries->elements; ++i) {
                     PresenceFrame f;
                     const redisReply* e = entries->element[i];
                     if (e->type == REDIS_REPLY_STRING &&
                         decode_presence_frame(std::string_view(e->str, e->len), f).ok() && f.members.size() == 1)
                       list.members.push_back(std::move(f.members[0]));
                     else decode_errors_.add();
                   }
                   report_gone(r, reply->element[2]);
                   seen(r, reply->element[0]->integer, generation);
                   answer(Status::success(), std::move(list));
                 });
  if (!queued) answer(Status::error(StatusCode::unavailable, "no connection to redis"), {});
}

void PresenceKeeper::set_interest(std::string_view room, bool interested) {
  if (interested) {
    interest_.emplace(room);
    return;
  }
  if (auto it = interest_.find(room); it != interest_.end()) interest_.erase(it);
  if (auto it = watched_.find(room); it != watched_.end()) watched_.erase(it);
}

void PresenceKeeper::on_frame(std::string_view bytes) {
  PresenceFrame f;
  if (!decode_presence_frame(bytes, f).ok() || f.members.size() != 1 || f.kind == PresenceFrame::Kind::snapshot) {
    decode_errors_.add();
    return;
  }
  if (!receiver_) return;
  // Whoever joined is refreshed by its instance; if that instance dies, the
  // rooms' watchers sweep the entry and report the leave.
  if (f.kind == PresenceFrame::Kind::join && f.instance != instance_) watch(f.room);
  receiver_->on_presence(
      f.room, PresenceEvent{f.kind == PresenceFrame::Kind::join ? PresenceChange::join : PresenceChange::leave,
                            std::move(f.members[0])});
}

void PresenceKeeper::stop() {
  if (stopped_) return;
  stopped_ = true;
  receiver_ = nullptr;
  timer_.cancel();
  // Leaving now spares the others a TTL of stale members. The leave goes out
  // with the removal, not after its reply: the reply comes once the
  // connection is closing, too late to publish from. The entries are this
  // instance's own and refreshed, so they are there to remove.
  for (const auto& [room, members] : local_)
    for (const auto& [connection, user] : members) {
      const PresenceMember m = member(connection, user);
      host_.eval(key_for(room), {"leave", std::to_string(settings_.ttl.count()), entry(m)}, [](const redisReply*) {});
      host_.publish(room, frame(PresenceFrame::Kind::leave, room, m));
    }
  local_.clear();
  local_count_ = 0;
  members_gauge_.set(0);
}

}  // namespace nudge::plugins::redis
