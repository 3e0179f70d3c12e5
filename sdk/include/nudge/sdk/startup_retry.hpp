#pragma once

#include <chrono>
#include <string>

namespace nudge {

/// How a plugin's start() waits for a server that is down or still starting
/// (a database started alongside Nudge): attempts 250 ms apart, the pause
/// doubling up to 2 s, until a deadline. The plugin keeps deciding which
/// errors are worth waiting for (a wrong password is not) and what it says;
/// this keeps the schedule, so every plugin retries the same way.
///
///     StartupRetry retry(std::chrono::milliseconds(config.wait_for_database_ms));
///     for (;;) {
///       auto error = connect();
///       if (!error) break;
///       if (permanent(*error)) return refuse(*error);
///       if (retry.expired()) return give_up("cannot connect" + retry.waited() + error->text + ")");
///       if (retry.attempts() == 1) warn_once(...);
///       retry.wait();
///     }
///
/// wait() blocks the calling thread: call it on a BlockingWorker (or any
/// thread of the plugin's own), never on the event loop. One object per
/// start; not shared between threads.
class StartupRetry {
 public:
  /// Starts the clock: attempts go on for `wait_for` from now (none after the
  /// first when it is zero or negative).
  explicit StartupRetry(std::chrono::milliseconds wait_for);

  /// True when the time to wait has run out: give up after the attempt just made.
  bool expired() const;
  /// Sleeps until the next attempt (the current pause, never past the
  /// deadline), then counts that attempt and doubles the pause (at most 2 s).
  void wait();
  /// Attempts made, the one in progress included: 1 before the first wait().
  int attempts() const noexcept { return attempts_; }
  /// For a give-up message, before the last error and a closing ')':
  /// " within 5000 ms (3 attempts; last error: ", or " (" when there was no
  /// time to wait.
  std::string waited() const;

 private:
  std::chrono::milliseconds wait_for_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::milliseconds pause_{250};
  int attempts_ = 1;
};

}  // namespace nudge
