#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nudge/sdk/log.hpp"

namespace nudge::runtime {

/// A time on the command line, in ms since the Unix epoch: ISO 8601
/// (`2026-12-06`, `2026-12-06T14:05`, `2026-12-06T14:05:30.250Z`,
/// `...+01:00`; no zone means UTC), or a duration ago (`90s`, `15m`, `2h`,
/// `7d`). nullopt with `error` set otherwise.
std::optional<std::int64_t> parse_replay_time(std::string_view text, std::chrono::system_clock::time_point now,
                                              std::string& error);

/// `--from earliest | TIME | P:OFFSET[,P:OFFSET...]` and `--to now | TIME`
/// into the range a log replays; `group` is `--group` (empty: the log picks
/// a new one). nullopt with `error` set when either is not understood, or
/// the range ends before it starts.
std::optional<LogReplay> parse_replay_range(std::string_view from, std::string_view to, std::string group,
                                            std::chrono::system_clock::time_point now, std::string& error);

}  // namespace nudge::runtime
