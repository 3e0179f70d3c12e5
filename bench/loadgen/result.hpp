#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "options.hpp"

namespace nudge::bench {

/// Above this share of its calibrated ceiling the generator may be what a run
/// measured: such a run is flagged near_ceiling and bench/run does not use it.
inline constexpr double kCeilingShare = 0.7;

/// CPU time and memory of one watched process and its descendants over the measured window.
struct ProcessUsage {
  int pid = 0;  ///< as given to --watch-pid
  std::string name;
  double cpu_seconds = 0;                ///< user + system, during the window, descendants included
  double system_cpu_seconds = 0;         ///< of which in the kernel (system calls, and the loopback's network stack)
  std::int64_t rss_bytes = 0;            ///< at the end of the window, descendants included
  std::uint32_t processes_at_start = 0;  ///< in the tree when the window opened
  std::uint32_t processes_at_end = 0;    ///< and when it closed (re-read: forks during the window count)
  std::string note;  ///< why the figures are not the pid's own (a thread id, a pid given twice), or empty
};

/// What one run measured. Counts named *_window concern messages whose
/// scheduled send time lies in the measured window (after the warmup).
struct RunResult {
  Options options;
  std::uint32_t run_id = 0;
  double connect_seconds = 0;  ///< from the first attempt to the last connection settled
  double window_seconds = 0;

  std::uint32_t connections_open = 0;
  std::uint32_t senders_open = 0;
  std::uint64_t connect_failures = 0;
  std::map<std::string, std::uint64_t> connect_failure_reasons;
  std::uint64_t disconnects = 0;  ///< connections lost after opening, before the end
  std::map<std::string, std::uint64_t> disconnect_reasons;

  std::uint64_t sent_window = 0;        ///< sends written to the socket
  std::uint64_t skipped_window = 0;     ///< sends not made: the connection's queue was full
  std::uint64_t expected_window = 0;    ///< sent × members of the sender's room that were open
  std::uint64_t deliveries_window = 0;  ///< unique deliveries
  /// Of which the sender and the receiver used different URLs (server instances).
  std::uint64_t cross_instance_window = 0;
  /// Every frame the generator read in the window (deliveries, duplicates,
  /// acks, pings, other rooms' messages): its load, against its ceiling.
  std::uint64_t frames_window = 0;
  std::uint64_t lost = 0;  ///< expected − unique deliveries, over every (sender, receiver)
  std::uint64_t duplicates = 0;
  std::uint64_t reordered = 0;
  std::uint64_t too_late = 0;  ///< reordered by more than the tracker's window (cannot tell duplicates)
  std::uint64_t acks_window = 0;
  std::uint64_t errors_window = 0;  ///< error frames naming a send of the window
  std::uint64_t unanswered = 0;     ///< sends of the window with neither ack nor error (when acks are expected)
  std::uint64_t errors_total = 0;
  std::map<std::string, std::uint64_t> error_codes;
  std::uint64_t foreign = 0;    ///< deliveries of another run's messages, or without a header
  std::uint64_t misrouted = 0;  ///< deliveries from a sender of another room
  std::uint64_t malformed = 0;  ///< frames that were not the protocol's

  LatencyHistogram delivery;  ///< scheduled send → receive, per delivery
  LatencyHistogram ack;       ///< scheduled send → ack
  LatencyHistogram send_lag;  ///< scheduled send → frame written: the generator's own lateness

  double loadgen_cpu_seconds = 0;
  std::int64_t loadgen_rss_bytes = 0;  ///< at the end of the window
  std::vector<ProcessUsage> watched;

  double ceiling = 0;         ///< the generator's calibrated ceiling, frames read/s (0: unknown)
  bool near_ceiling = false;  ///< frames read/s above kCeilingShare of the ceiling: the generator may be the bottleneck
  bool acks_expected = false;

  double deliveries_per_second() const { return window_seconds > 0 ? deliveries_window / window_seconds : 0; }
  double sends_per_second() const { return window_seconds > 0 ? sent_window / window_seconds : 0; }
  double acks_per_second() const { return window_seconds > 0 ? acks_window / window_seconds : 0; }
  double frames_per_second() const { return window_seconds > 0 ? frames_window / window_seconds : 0; }
  /// The share of deliveries that crossed instances; 0 without deliveries.
  double cross_instance_share() const {
    return deliveries_window > 0 ? static_cast<double>(cross_instance_window) / deliveries_window : 0;
  }
  /// The share of the ceiling this run's reading took; 0 when the ceiling is unknown.
  double ceiling_share() const { return ceiling > 0 ? frames_per_second() / ceiling : 0; }
  /// Whether the senders kept their schedule (sent at least 99% of what was offered).
  bool senders_kept_up() const;
};

}  // namespace nudge::bench
