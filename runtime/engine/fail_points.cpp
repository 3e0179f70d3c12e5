#include "engine/fail_points.hpp"

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <unistd.h>

namespace nudge::runtime {

void FailPoint::hit(Logger& logger) {
  if (!armed() || ++hits_ != at_hit_) return;
  switch (action_) {
    case Action::none:
      return;
    case Action::kill:
      logger.error("fail point '", name_, "' reached (hit ", hits_, "): killing this process with SIGKILL (test only)");
      std::fflush(stderr);
      ::kill(::getpid(), SIGKILL);
      std::_Exit(137);  // not reached
  }
}

std::optional<FailPoints> FailPoints::parse(std::string_view spec, std::string& error) {
  FailPoints points;
  while (!spec.empty()) {
    const auto comma = spec.find(',');
    const std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    const auto colon = item.find(':');
    if (colon == std::string_view::npos) {
      error = "'" + std::string(item) + "' is not name:action[@N]";
      return std::nullopt;
    }
    const std::string_view name = item.substr(0, colon);
    std::string_view action = item.substr(colon + 1);
    std::uint64_t at_hit = 1;
    if (const auto at = action.find('@'); at != std::string_view::npos) {
      const std::string_view count = action.substr(at + 1);
      const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), at_hit);
      if (ec != std::errc() || end != count.data() + count.size() || at_hit == 0) {
        error = "'" + std::string(item) + "': the hit count after '@' must be a positive integer";
        return std::nullopt;
      }
      action = action.substr(0, at);
    }
    if (action != "kill") {
      error = "'" + std::string(item) + "': unknown action '" + std::string(action) + "' (known: kill)";
      return std::nullopt;
    }
    if (name != "after_sink_commit") {
      error = "unknown fail point '" + std::string(name) + "' (known: after_sink_commit)";
      return std::nullopt;
    }
    points.after_sink_commit = FailPoint(std::string(name), FailPoint::Action::kill, at_hit);
  }
  return points;
}

std::optional<FailPoints> FailPoints::from_environment(std::string& error) {
  const char* spec = std::getenv("NUDGE_FAILPOINTS");
  return parse(spec ? spec : "", error);
}

}  // namespace nudge::runtime
