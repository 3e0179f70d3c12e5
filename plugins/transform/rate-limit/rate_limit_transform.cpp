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
      limited_(context.metrics().counter("limited", "Messages over their sender's limit, refused or dropped")) {
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
    return Status::error(StatusCode::invalid_argument, "the new rate limit cannot apply: rate and burst must be positive");
  // Tokens earned so far are earned at the old rate; from now on the new
  // rate refills, and no bucket holds more than the new burst.
  for (auto& [sender, bucket] : buckets_) {
    const double elapsed = std::max(0.0, std::chrono::duration<double>(now - bucket.refilled).count());
    bucket.tokens = std::min(burst, std::min(burst_, bucket.tokens + elapsed * rate_));
    bucket.refilled = std::max(bucket.refilled, now);
  }
  rate_ = rate;
  burst_ = burst;
  max_senders_ = max_senders;
  action_ = std::move(action);
  reason_ = make_reason();
  return Status::success();
}

ConfigSchema RateLimitTransform::schema() {
  ConfigSchema s;
  s.number("messages_per_second", 1, "Messages per second a sender may send on average (the refill rate)")
      .with_check([](const ConfigValue& v) {
        return std::get<double>(v) > 0 ? std::string() : std::string("must be more than 0");
      })
      .reloadable();
  s.integer("burst", 5, "Messages a sender may send at once (the bucket's size)").range(1, 1000000)
      .reloadable();
  s.integer("max_senders", 100000,
            "Senders tracked at most; past it, senders whose bucket refilled are forgotten")
      .range(1, 100000000)
      .reloadable();
  s.string("action", "reject",
           "What happens over the limit: \"reject\" (the sender is told to slow down) or \"drop\"")
      .with_check([](const ConfigValue& v) {
        const auto& a = std::get<std::string>(v);
        return a == "reject" || a == "drop" ? std::string() : std::string("must be \"reject\" or \"drop\"");
      })
      .reloadable();
  return s;
}

void RateLimitTransform::process(MessagePtr message, VerdictHandler done) { done(decide(message, Clock::now())); }

Verdict RateLimitTransform::decide(const MessagePtr& message, Clock::time_point now) {
  // A new sender past max_senders makes room first (the reference below
  // must not be erased).
  if (buckets_.size() >= max_senders_ && !buckets_.contains(message->sender)) forget_full_buckets(now);
  auto [it, added] = buckets_.try_emplace(message->sender, Bucket{burst_, now});
  Bucket& bucket = it->second;
  if (!added) {
    const double elapsed = std::chrono::duration<double>(now - bucket.refilled).count();
    bucket.tokens = std::min(burst_, bucket.tokens + elapsed * rate_);
    bucket.refilled = now;
  }
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    passed_.add();
    return Verdict::pass(message);
  }
  limited_.add();
  return action_ == "drop" ? Verdict::drop() : Verdict::reject(reason_);
}

void RateLimitTransform::forget_full_buckets(Clock::time_point now) {
  std::erase_if(buckets_, [&](const auto& entry) {
    const double elapsed = std::chrono::duration<double>(now - entry.second.refilled).count();
    return entry.second.tokens + elapsed * rate_ >= burst_;
  });
}

}  // namespace nudge::plugins::rate_limit
