#pragma once

#include <chrono>
#include <cstdint>

namespace nudge::plugins::nats {

/// Lets one log line through per interval and counts the ones held back, so
/// a fault that repeats per message (bad bytes, a refused publish) is logged
/// without flooding. Not thread-safe: each thread keeps its own.
class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::milliseconds interval) : interval_(interval) {}

  /// True when a line may be written now; then `suppressed` is how many were
  /// held back since the last line written.
  bool allow(std::uint64_t& suppressed) {
    const auto now = std::chrono::steady_clock::now();
    if (written_ && now - last_ < interval_) {
      ++held_;
      return false;
    }
    written_ = true;
    last_ = now;
    suppressed = held_;
    held_ = 0;
    return true;
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_{};
  bool written_ = false;
  std::uint64_t held_ = 0;
};

}  // namespace nudge::plugins::nats
