#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nudge/sdk/context.hpp"

namespace nudge::runtime {

/// Test-only fault injection (docs/architecture.md, "Fail points"): named
/// places in the runtime where a fault test can make the process fail on
/// purpose, at the worst moment, instead of hoping a signal lands there.
/// Armed only through the environment, read once at startup:
///
///   NUDGE_FAILPOINTS=after_sink_commit:kill      SIGKILL at the first hit
///   NUDGE_FAILPOINTS=after_sink_commit:kill@5    ... at the fifth hit
///
/// Unarmed (the variable unset, as in production) a point is one test of a
/// bool, and the code it guards is not reached.
class FailPoint {
 public:
  enum class Action { none, kill };

  FailPoint() = default;
  FailPoint(std::string name, Action action, std::uint64_t at_hit)
      : name_(std::move(name)), action_(action), at_hit_(at_hit) {}

  bool armed() const noexcept { return action_ != Action::none; }
  const std::string& name() const noexcept { return name_; }

  /// Counts a pass through the point; on the armed hit, logs one line and
  /// performs the action (kill: SIGKILL to this process, which never returns).
  void hit(Logger& logger);

 private:
  std::string name_;
  Action action_ = Action::none;
  std::uint64_t at_hit_ = 1;
  std::uint64_t hits_ = 0;
};

/// Every fail point the runtime has; each is unarmed unless named in NUDGE_FAILPOINTS.
struct FailPoints {
  /// Reached when the sink confirmed a batch from the log, before the log is
  /// told, so before the batch's log position is stored and committed.
  FailPoint after_sink_commit;

  /// Parses a NUDGE_FAILPOINTS value: comma-separated `name:action[@N]`.
  /// nullopt, with `error` set, for an unknown name or action or a bad count,
  /// so a typo in a test fails loudly instead of testing nothing.
  static std::optional<FailPoints> parse(std::string_view spec, std::string& error);
  /// parse(getenv("NUDGE_FAILPOINTS")); all unarmed when it is unset or empty.
  static std::optional<FailPoints> from_environment(std::string& error);

  bool any_armed() const noexcept { return after_sink_commit.armed(); }
};

}  // namespace nudge::runtime
