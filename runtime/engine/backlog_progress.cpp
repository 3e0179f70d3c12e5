#include "engine/backlog_progress.hpp"

#include <cstdio>

namespace nudge::runtime {

std::string seconds_text(double seconds) {
  char text[32];
  if (seconds < 10) std::snprintf(text, sizeof text, "%.1f s", seconds);
  else if (seconds < 3600) std::snprintf(text, sizeof text, "%.0f s", seconds);
  else std::snprintf(text, sizeof text, "%.1f h", seconds / 3600);
  return text;
}

std::optional<std::string> BacklogProgress::observe(Clock::time_point now, std::int64_t lag, std::uint64_t written,
                                                    const Settings& settings) {
  if (!backlog_) {
    if (lag < settings.threshold) return std::nullopt;
    backlog_ = Backlog{now, now, lag, lag, written, written};
    return "draining a backlog of " + std::to_string(lag) + " messages from " + settings.from + " into " +
           settings.into + "; progress every " + seconds_text(static_cast<double>(settings.interval.count()) / 1000);
  }
  const auto total = written - backlog_->written_at_start;
  if (lag < (settings.threshold + 1) / 2) {
    const double took = std::chrono::duration<double>(now - backlog_->since).count();
    const auto rate = std::to_string(static_cast<std::uint64_t>(took > 0 ? static_cast<double>(total) / took : 0));
    const auto at_start = backlog_->lag_at_start;
    backlog_.reset();
    // The lag also falls when partitions move to another consumer (or
    // records expire): then this instance did not write the backlog. Half,
    // because the lag is measured a moment before the rows are counted.
    if (2 * total < static_cast<std::uint64_t>(at_start - lag))
      return "backlog gone after " + seconds_text(took) + ", but only " + std::to_string(total) + " of its " +
             std::to_string(at_start) + " messages were written here (" + rate +
             " rows/s): the rest left this instance's partitions (taken over by another consumer, or expired)";
    return "backlog drained: " + std::to_string(total) + " messages written in " + seconds_text(took) + " (" + rate +
           " rows/s)";
  }
  const auto since_report = now - backlog_->last_report;
  if (since_report < settings.interval) return std::nullopt;
  const double elapsed = std::chrono::duration<double>(since_report).count();
  const double rate = static_cast<double>(written - backlog_->written_at_last_report) / elapsed;
  // What is left over how fast it shrinks: messages arriving meanwhile slow the drain.
  const double falling = static_cast<double>(backlog_->lag_at_last_report - lag) / elapsed;
  const std::string eta = rate <= 0 ? "unknown (no rows written)"
                          : falling > 0
                              ? seconds_text(static_cast<double>(lag) / falling)
                              : "unknown (the lag is not falling: messages arrive as fast as they are written)";
  backlog_->last_report = now;
  backlog_->lag_at_last_report = lag;
  backlog_->written_at_last_report = written;
  return "draining backlog: " + std::to_string(static_cast<std::uint64_t>(rate)) + " rows/s, lag " +
         std::to_string(lag) + ", ETA " + eta + ", " + std::to_string(total) + " written so far";
}

}  // namespace nudge::runtime
