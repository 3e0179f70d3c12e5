#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "options.hpp"

namespace nudge::bench {

/// Starts a DiscardServer in this process, steps the offered rate up until
/// the generator's own p99 (scheduled send → delivery) passes
/// `--calibrate-p99` or it loses or falls behind, prints each step and the
/// ceiling (the highest deliveries/s that held), records it in the
/// calibration file, and returns it. The shape (connections, rooms, senders,
/// threads, protocol, payload) is the command line's, with defaults of its
/// own: 1000 connections, 10 rooms, 100 senders, 3 s steps after 1 s warmup.
double calibrate(const Options& options, std::ostream& out);

/// One calibration step's verdict: whether the generator held `rate`, and why not.
struct StepVerdict {
  bool held = false;
  /// Empty when held; else the first reason ("p99 over the limit", "lost or skipped", …).
  std::string why;
  /// A failure on latency alone can be one scheduling hiccup in a 3 s step, not the ceiling.
  bool latency_only = false;
};

/// The search calibrate() runs, apart from the load so that it can be tested: up by 1.5× from
/// `start_rate` until a step fails, then halving the interval between the last that held and the first
/// that failed 3 times. A step that fails on latency alone is measured once more and fails only if it
/// fails again (one p99 spike in a quiet 3 s window once cut a ceiling to a third). Returns the highest
/// rate that held, or nullopt when even the first failed.
std::optional<double> search_ceiling(double start_rate, const std::function<StepVerdict(double rate)>& measure);

/// The ceiling recorded for this protocol and thread count (or, failing
/// that, for this protocol), from `file`.
std::optional<double> read_ceiling(const std::string& file, Protocol protocol, std::uint32_t threads);

}  // namespace nudge::bench
