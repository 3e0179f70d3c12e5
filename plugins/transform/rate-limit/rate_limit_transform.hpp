#pragma once

#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "nudge/sdk.hpp"

namespace nudge::plugins::rate_limit {

/// A token bucket per sender: `burst` messages at once, refilled at
/// `messages_per_second`. A message finding the bucket empty is refused
/// (`action`: reject with a reason, or drop). Buckets live in memory, per
/// instance: N instances let a sender through N times as fast. At most
/// `max_senders` buckets are kept: a full bucket is as good as none, so those
/// go first, then the ones nearest to full.
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
    /// When the bucket will be full again (seconds since origin_): its key in by_full_at_.
    double full_at = 0;
  };
  using Buckets = std::unordered_map<std::string, Bucket>;
  /// Buckets by when they will be full, soonest first; the sender points at
  /// its key in buckets_ (node-based: stable until that entry is erased).
  using FullAtEntry = std::pair<double, const std::string*>;
  struct SoonestFirst {
    bool operator()(const FullAtEntry& a, const FullAtEntry& b) const noexcept {
      if (a.first != b.first) return a.first < b.first;
      return std::less<const std::string*>()(a.second, b.second);  // a total order, unlike `<` on pointers
    }
  };
  using FullAtIndex = std::set<FullAtEntry, SoonestFirst>;

  double seconds(Clock::time_point t) const noexcept { return std::chrono::duration<double>(t - origin_).count(); }
  /// Adds the tokens earned since the last refill, up to burst_.
  void refill(Bucket& bucket, Clock::time_point now) const noexcept;
  /// Works out when the bucket will be full and files it under that time.
  void file(Buckets::iterator it);
  /// Forgets every bucket already full, then the nearest to full while more
  /// than `keep` remain.
  void make_room(std::size_t keep, Clock::time_point now);
  /// The reason told to a refused sender, from rate_ and burst_.
  std::string make_reason() const;

  double rate_;
  double burst_;
  std::size_t max_senders_;
  std::string action_;
  std::string reason_;
  const Clock::time_point origin_ = Clock::now();
  Buckets buckets_;
  FullAtIndex by_full_at_;
  Counter& passed_;
  Counter& limited_;
  Counter& evicted_;
  Gauge& senders_;
};

}  // namespace nudge::plugins::rate_limit
