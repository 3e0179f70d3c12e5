#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace nudge::runtime {

/// A duration as the runtime's log lines write it: "0.3 s", "42 s", "1.5 h".
std::string seconds_text(double seconds);

/// Turns the consumer lag, read once a second, into the lines an operator
/// reads while a backlog drains: its start, progress every interval (rows/s,
/// the lag, an ETA), its end. Decides only; the caller logs what it returns.
///
/// A backlog starts when the lag reaches `threshold`, and is over once the
/// lag falls below half of it: under steady traffic the lag rarely reads 0,
/// and the margin keeps a lag hovering at the threshold from starting and
/// ending a backlog every second.
class BacklogProgress {
 public:
  using Clock = std::chrono::steady_clock;
  struct Settings {
    std::int64_t threshold = 1000;
    std::chrono::milliseconds interval{5000};
    std::string from;  ///< the log's key path
    std::string into;  ///< the sink's key path
  };

  /// `lag`: the consumer's backlog now; `written`: the sink's rows so far
  /// (a counter). The line to log, if any.
  std::optional<std::string> observe(Clock::time_point now, std::int64_t lag, std::uint64_t written,
                                     const Settings& settings);
  bool draining() const noexcept { return backlog_.has_value(); }

 private:
  struct Backlog {
    Clock::time_point since;
    Clock::time_point last_report;
    std::int64_t lag_at_start = 0;
    std::int64_t lag_at_last_report = 0;
    std::uint64_t written_at_start = 0;
    std::uint64_t written_at_last_report = 0;
  };
  std::optional<Backlog> backlog_;
};

}  // namespace nudge::runtime
