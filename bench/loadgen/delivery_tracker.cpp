#include "delivery_tracker.hpp"

namespace nudge::bench {

Arrival PairTracker::on_receive(std::uint64_t seq, bool in_window) noexcept {
  if (next_ == 0 || seq >= next_) {
    // Forward: forget the bits of the numbers skipped over (they now stand for
    // seq - kWindow .. seq), then mark seq.
    const std::uint64_t from = next_;
    if (next_ == 0 || seq - from + 1 >= kWindow) {
      bits_ = {};
    } else {
      for (std::uint64_t s = from; s < seq; ++s) clear(s);
    }
    set(seq);
    next_ = seq + 1;
    if (in_window) ++unique_in_window_;
    return Arrival::in_order;
  }
  ++reordered_;
  const std::uint64_t behind = next_ - 1 - seq;
  if (behind >= kWindow) {
    // Could be either; counted as unique, so a loss is never invented.
    ++too_late_;
    if (in_window) ++unique_in_window_;
    return Arrival::too_late;
  }
  if (test(seq)) {
    --reordered_;
    ++duplicates_;
    return Arrival::duplicate;
  }
  set(seq);
  if (in_window) ++unique_in_window_;
  return Arrival::late;
}

}  // namespace nudge::bench
