#pragma once

#include <chrono>
#include <cstdint>

namespace nudge {

/// Lets one log line through per interval and counts the ones held back, so
/// a fault that repeats per message (bad bytes, a refused publish) is logged
/// without flooding:
///
///     std::uint64_t suppressed = 0;
///     if (decode_error_log_.allow(suppressed))
///       logger.warn("ignored a payload that could not be decoded (", suppressed, " more since the last report)");
///
/// Header-only. Not thread-safe: one per thread (a plugin's are used on the
/// event loop only).
class LogLimiter {
 public:
  /// `interval`: the least time between two lines let through.
  explicit LogLimiter(std::chrono::milliseconds interval) : interval_(interval) {}

  /// True when a line may be written now; then `suppressed` is how many were
  /// held back since the last line written. When false, `suppressed` is left
  /// as it was and the line is counted as held back.
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

}  // namespace nudge
