#pragma once

#include <ostream>
#include <string>

#include "result.hpp"

namespace nudge::bench {

inline constexpr std::string_view kVersion = "0.1.0";

/// The human table of a run.
void print_table(std::ostream& out, const RunResult& r);
/// The run as JSON (see bench/README.md for the fields).
std::string to_json(const RunResult& r);
/// "412 µs", "1.10 ms", "2.31 s".
std::string format_ns(std::int64_t ns);
/// Warnings about the run's validity: near the generator's ceiling, senders
/// behind schedule, connections failed or lost, messages lost.
std::vector<std::string> flags(const RunResult& r);

}  // namespace nudge::bench
