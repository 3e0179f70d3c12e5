#pragma once

#include <optional>
#include <ostream>

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

/// The ceiling recorded for this protocol and thread count (or, failing
/// that, for this protocol), from `file`.
std::optional<double> read_ceiling(const std::string& file, Protocol protocol, std::uint32_t threads);

}  // namespace nudge::bench
