#pragma once

#include <chrono>
#include <cstdint>

namespace nudge::bench {

/// CLOCK_MONOTONIC in nanoseconds: the time base of every scheduled send and
/// every receive. Comparable across processes on one machine.
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline std::chrono::steady_clock::time_point to_time_point(std::int64_t ns) noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace nudge::bench
