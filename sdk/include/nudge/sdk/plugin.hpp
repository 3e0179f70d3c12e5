#pragma once

#include <functional>
#include <string>

#include "nudge/sdk/abi.hpp"
#include "nudge/sdk/config.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// Whether a stage can do its work now, as the admin endpoint's /readyz
/// reports it. Not ready means connected to nothing (the database is down,
/// every broker unreachable) or unable to make progress; `reason` says which,
/// in a few words an operator can act on ("no connection to PostgreSQL:
/// connection refused").
struct Readiness {
  bool ready = true;
  std::string reason;

  static Readiness yes() { return {}; }
  static Readiness no(std::string why) { return {false, std::move(why)}; }
};

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

  /// Whether this stage is connected and making progress. Called on the
  /// executor, about once a second while someone watches /readyz; must be
  /// cheap and must not block (report what the plugin last learnt, e.g. from
  /// a periodic probe of its own). The default: always ready.
  virtual Readiness readiness() const { return Readiness::yes(); }

  /// Applies a changed configuration live (`nudge reload`, SIGHUP). The
  /// runtime calls it only when every key that changed is declared live()
  /// in the plugin's schema, with the whole new Config (validated, defaults
  /// applied). Existing connections and messages in flight must be kept; the
  /// new values apply from now on. An error refuses the reload (its message
  /// is shown to the operator) and must leave the old configuration in force.
  /// The default refuses: a plugin that declares live keys overrides this.
  virtual Status reconfigure(const Config& config) {
    (void)config;
    return Status::error(StatusCode::invalid_argument, "this plugin cannot change its configuration live");
  }
};

}  // namespace nudge
