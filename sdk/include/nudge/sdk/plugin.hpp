#pragma once

#include <functional>

#include "nudge/sdk/abi.hpp"

namespace nudge {

/// Base of every plugin instance.
///
/// Lifecycle: the runtime constructs a plugin from its validated Config (the
/// constructor must not do I/O, so `nudge validate` works offline), then
/// calls its kind's `start`, then the kind's methods, then `stop`, then
/// destroys it. All calls happen on the Context's executor.
class Plugin {
 public:
  virtual ~Plugin() = default;

  /// Finishes in-flight work (flush, commit), releases connections and calls
  /// `done` on the executor. Called once, after the stages upstream of this
  /// one have stopped. No other method is called after it.
  virtual void stop(std::function<void()> done) = 0;
};

}  // namespace nudge
