#pragma once

#include "options.hpp"
#include "result.hpp"

namespace nudge::bench {

/// Runs one load test as `options` say: opens the connections, sends on the
/// schedule through the warmup and the window, waits for the last
/// deliveries, closes, and returns what was measured. Throws
/// std::runtime_error when the run cannot start (a bad URL, no connection).
RunResult run_load(const Options& options);

/// Raises this process's open-file limit to its hard limit; returns the new soft limit.
std::uint64_t raise_file_limit();

}  // namespace nudge::bench
