#include "nudge/sdk/startup_retry.hpp"

#include <algorithm>
#include <thread>

namespace nudge {

namespace {
constexpr std::chrono::milliseconds kLongestPause{2000};
}  // namespace

StartupRetry::StartupRetry(std::chrono::milliseconds wait_for)
    : wait_for_(wait_for), deadline_(std::chrono::steady_clock::now() + wait_for) {}

bool StartupRetry::expired() const { return std::chrono::steady_clock::now() >= deadline_; }

void StartupRetry::wait() {
  const auto left = deadline_ - std::chrono::steady_clock::now();
  if (left > std::chrono::steady_clock::duration::zero())
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause_, left));
  pause_ = std::min(pause_ * 2, kLongestPause);
  ++attempts_;
}

std::string StartupRetry::waited() const {
  if (wait_for_.count() <= 0) return " (";
  return " within " + std::to_string(wait_for_.count()) + " ms (" + std::to_string(attempts_) +
         " attempts; last error: ";
}

}  // namespace nudge
