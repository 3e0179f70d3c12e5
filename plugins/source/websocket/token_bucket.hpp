#pragma once

#include <algorithm>
#include <chrono>

namespace nudge::plugins::websocket {

/// A token bucket: holds up to `burst` tokens, refilled at `rate_per_second`;
/// each allowed event takes one. A rate of 0 allows everything. Time is passed
/// in, so the bucket runs no timers and tests drive it with any clock.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate_per_second, double burst, Clock::time_point now) noexcept
      : rate_(rate_per_second), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}

  /// Takes a new rate and burst at `now` (a live reconfiguration): tokens
  /// earned so far at the old rate are kept, capped to the new burst; the
  /// new rate refills from `now` on.
  void reconfigure(double rate_per_second, double burst, Clock::time_point now) noexcept {
    if (rate_ > 0 && now > last_) {
      const std::chrono::duration<double> elapsed = now - last_;
      tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
    }
    if (now > last_) last_ = now;
    rate_ = rate_per_second;
    burst_ = std::max(burst, 1.0);
    tokens_ = std::min(tokens_, burst_);
  }

  /// Whether the bucket has refilled to its burst by `now`: it then behaves
  /// exactly as a new one would, so a table of buckets may forget it.
  bool full(Clock::time_point now) const noexcept {
    if (rate_ <= 0) return true;
    const std::chrono::duration<double> elapsed = now > last_ ? now - last_ : Clock::duration::zero();
    return tokens_ + elapsed.count() * rate_ >= burst_;
  }

  /// Takes a token if one is available at `now`.
  bool allow(Clock::time_point now) noexcept {
    if (rate_ <= 0) return true;
    if (now > last_) {
      const std::chrono::duration<double> elapsed = now - last_;
      tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
      last_ = now;
    }
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace nudge::plugins::websocket
