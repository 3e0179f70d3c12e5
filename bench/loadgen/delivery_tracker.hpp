#pragma once

#include <array>
#include <cstdint>

namespace nudge::bench {

/// What arrived, as one receiver saw one sender's sequence numbers.
enum class Arrival {
  in_order,   ///< above every sequence number seen so far (perhaps past a gap)
  late,       ///< below the highest seen, not seen before: it overtook nothing, something overtook it
  duplicate,  ///< seen before
  too_late,   ///< more than kWindow below the highest seen: cannot tell late from duplicate
};

/// Counts one (sender, receiver) pair's deliveries: duplicates and reordering
/// from the sequence numbers, and the unique deliveries inside the measured
/// window, from which losses follow (sent in the window − unique received).
/// Remembers the last kWindow sequence numbers in a ring of bits; O(1) per
/// arrival, 64 bytes.
class PairTracker {
 public:
  static constexpr std::uint64_t kWindow = 256;

  /// One arrival of `seq`; `in_window` says whether its scheduled time lies in
  /// the measured window (only those count as unique deliveries).
  Arrival on_receive(std::uint64_t seq, bool in_window) noexcept;

  std::uint64_t unique_in_window() const noexcept { return unique_in_window_; }
  std::uint32_t duplicates() const noexcept { return duplicates_; }
  /// Arrivals below the highest sequence number seen (late and too_late).
  std::uint32_t reordered() const noexcept { return reordered_; }
  std::uint32_t too_late() const noexcept { return too_late_; }

  /// Losses of this pair, given how many messages the sender sent in the window.
  std::uint64_t lost(std::uint64_t sent_in_window) const noexcept {
    return sent_in_window > unique_in_window_ ? sent_in_window - unique_in_window_ : 0;
  }

 private:
  bool test(std::uint64_t seq) const noexcept { return (bits_[(seq / 64) % 4] >> (seq % 64)) & 1u; }
  void set(std::uint64_t seq) noexcept { bits_[(seq / 64) % 4] |= std::uint64_t{1} << (seq % 64); }
  void clear(std::uint64_t seq) noexcept { bits_[(seq / 64) % 4] &= ~(std::uint64_t{1} << (seq % 64)); }

  std::uint64_t next_ = 0;  ///< one past the highest sequence number seen; 0: none yet
  std::array<std::uint64_t, 4> bits_{};
  std::uint64_t unique_in_window_ = 0;
  std::uint32_t duplicates_ = 0;
  std::uint32_t reordered_ = 0;
  std::uint32_t too_late_ = 0;
  std::uint32_t unused_ = 0;  // padding, spelled out
};

static_assert(PairTracker::kWindow == 4 * 64);

}  // namespace nudge::bench
