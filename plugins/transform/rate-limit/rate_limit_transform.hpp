#pragma once

#include <chrono>
#include <string>
#include <unordered_map>

#include "nudge/sdk.hpp"

namespace nudge::plugins::rate_limit {

/// A token bucket per sender: `burst` messages at once, refilled at
/// `messages_per_second`. A message finding the bucket empty is refused
/// (`action`: reject with a reason, or drop). Buckets live in memory, per
/// instance: N instances let a sender through N times as fast.
class RateLimitTransform final : public Transform {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimitTransform(const Config& config, Context& context);
  static ConfigSchema schema();

  // Transform
  void process(MessagePtr message, VerdictHandler done) override;
  void stop(std::function<void()> done) override { done(); }

  // Plugin
  /// Every key is live. Existing buckets keep their tokens (refilled at the
  /// old rate up to now), capped to the new burst; the new rate refills them
  /// from now on.
  Status reconfigure(const Config& config) override { return reconfigure(config, Clock::now()); }

  /// process() at a given time (tests).
  Verdict decide(const MessagePtr& message, Clock::time_point now);
  /// reconfigure() at a given time (tests).
  Status reconfigure(const Config& config, Clock::time_point now);
  std::size_t senders_tracked() const noexcept { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point refilled;
  };
  /// Forgets senders whose bucket has refilled: they are as if new.
  void forget_full_buckets(Clock::time_point now);
  /// The reason told to a refused sender, from rate_ and burst_.
  std::string make_reason() const;

  double rate_;
  double burst_;
  std::size_t max_senders_;
  std::string action_;
  std::string reason_;
  std::unordered_map<std::string, Bucket> buckets_;
  Counter& passed_;
  Counter& limited_;
};

}  // namespace nudge::plugins::rate_limit
