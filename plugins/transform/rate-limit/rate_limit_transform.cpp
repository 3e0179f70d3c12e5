#include "rate_limit_transform.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <utility>

namespace nudge::plugins::rate_limit {

RateLimitTransform::RateLimitTransform(const Config& config, Context& context)
    : rate_(config.get_number("messages_per_second")),
      burst_(static_cast<double>(config.get_int("burst"))),
      max_senders_(static_cast<std::size_t>(config.get_int("max_senders"))),
      action_(config.get_string("action")),
      passed_(context.metrics().counter("passed", "Messages within their sender's limit")),
      limited_(context.metrics().counter("limited", "Messages over their sender's limit, refused or dropped")),
      evicted_(context.metrics().counter(
          "evicted",
          "Senders forgotten before their bucket refilled, to keep within max_senders (each then "
          "starts again with a full bucket)")),
      senders_(context.metrics().gauge("senders", "Senders whose bucket is tracked (at most max_senders)")) {
  reason_ = make_reason();
}

std::string RateLimitTransform::make_reason() const {
  char rate[32];
  std::snprintf(rate, sizeof rate, "%g", rate_);
  return "too many messages: at most " + std::to_string(static_cast<long long>(burst_)) + " at once and " + rate +
         " per second; slow down";
}

Status RateLimitTransform::reconfigure(const Config& config, Clock::time_point now) {
  double rate = 0;
  double burst = 0;
  std::size_t max_senders = 0;
  std::string action;
  try {
    rate = config.get_number("messages_per_second");
    burst = static_cast<double>(config.get_int("burst"));
    max_senders = static_cast<std::size_t>(config.get_int("max_senders"));
    action = config.get_string("action");
  } catch (const std::exception& e) {
    return Status::error(StatusCode::invalid_argument, std::string("the new rate limit cannot apply: ") + e.what());
  }
  if (!(rate > 0) || burst < 1 || max_senders < 1)
    return Status::error(StatusCode::invalid_argument,
                         "the new rate limit cannot apply: rate and burst must be positive");
  // Tokens earned so far are earned at the old rate; from now on the new
  // rate refills, and no bucket holds more than the new burst.
  for (auto& [sender, bucket] : buckets_) {
    refill(bucket, now);
    bucket.tokens = std::min(burst, bucket.tokens);
  }
  rate_ = rate;
  burst_ = burst;
  max_senders_ = max_senders;
  action_ = std::move(action);
  reason_ = make_reason();
  // A new rate or burst moves every bucket's full time.
  by_full_at_.clear();
  for (auto it = buckets_.begin(); it != buckets_.end(); ++it) file(it);
  if (buckets_.size() > max_senders_) make_room(max_senders_, now);
  senders_.set(static_cast<std::int64_t>(buckets_.size()));
  return Status::success();
}

ConfigSchema RateLimitTransform::schema() {
  ConfigSchema s;
  s.number("messages_per_second", 1, "Messages per second a sender may send on average (the refill rate)")
      .with_check([](const ConfigValue& v) {
        return std::get<double>(v) > 0 ? std::string() : std::string("must be more than 0");
      })
      .reloadable();
  s.integer("burst", 5, "Messages a sender may send at once (the bucket's size)").range(1, 1000000).reloadable();
  s.integer("max_senders", 100000,
            "Senders tracked at most; past it, senders whose bucket refilled are forgotten (as good as new), then "
            "those nearest to full")
      .range(1, 100000000)
      .reloadable();
  s.string("action", "reject", "What happens over the limit: \"reject\" (the sender is told to slow down) or \"drop\"")
      .with_check([](const ConfigValue& v) {
        const auto& a = std::get<std::string>(v);
        return a == "reject" || a == "drop" ? std::string() : std::string("must be \"reject\" or \"drop\"");
      })
      .reloadable();
  return s;
}

void RateLimitTransform::process(MessagePtr message, VerdictHandler done) { done(decide(message, Clock::now())); }

Verdict RateLimitTransform::decide(const MessagePtr& message, Clock::time_point now) {
  auto it = buckets_.find(message->sender);
  const bool added = it == buckets_.end();
  if (added) {
    if (buckets_.size() >= max_senders_) make_room(max_senders_ - 1, now);
    it = buckets_.emplace(message->sender, Bucket{burst_, now}).first;
    senders_.set(static_cast<std::int64_t>(buckets_.size()));
  } else {
    refill(it->second, now);
  }
  Bucket& bucket = it->second;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    file(it);
    passed_.add();
    return Verdict::pass(message);
  }
  // Refused: the refill moved no full time, so the bucket stays where it is filed.
  if (added) file(it);
  limited_.add();
  return action_ == "drop" ? Verdict::drop() : Verdict::reject(reason_);
}

void RateLimitTransform::refill(Bucket& bucket, Clock::time_point now) const noexcept {
  const double elapsed = std::max(0.0, std::chrono::duration<double>(now - bucket.refilled).count());
  bucket.tokens = std::min(burst_, bucket.tokens + elapsed * rate_);
  bucket.refilled = std::max(bucket.refilled, now);
}

void RateLimitTransform::file(Buckets::iterator it) {
  Bucket& bucket = it->second;
  by_full_at_.erase({bucket.full_at, &it->first});  // a new bucket is in no place yet
  bucket.full_at = seconds(bucket.refilled) + (burst_ - bucket.tokens) / rate_;
  by_full_at_.emplace(bucket.full_at, &it->first);
}

void RateLimitTransform::make_room(std::size_t keep, Clock::time_point now) {
  // A full bucket is what a new sender gets: forgetting it changes nothing.
  // Past those, the bucket nearest to full changes least by starting over.
  const double at = seconds(now);
  while (!by_full_at_.empty() && (by_full_at_.begin()->first <= at || buckets_.size() > keep)) {
    const auto soonest = by_full_at_.begin();
    if (soonest->first > at) evicted_.add();
    const auto it = buckets_.find(*soonest->second);
    by_full_at_.erase(soonest);
    buckets_.erase(it);
  }
  senders_.set(static_cast<std::int64_t>(buckets_.size()));
}

}  // namespace nudge::plugins::rate_limit
