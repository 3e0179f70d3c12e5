#pragma once

#include <functional>
#include <string>
#include <utility>

#include "nudge/sdk/message.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// What a transform decided about one message.
struct Verdict {
  enum class Action {
    pass,    ///< go on with `message` (the same, or a changed copy)
    drop,    ///< discard it quietly: the sender is acknowledged, nobody receives it, nothing stores it
    reject,  ///< refuse it: the sender gets an error with `reason`; nobody receives it, nothing stores it
  };
  Action action = Action::pass;
  MessagePtr message;
  std::string reason;

  /// Goes on with `message` to the next transform, then the fanout and log.
  static Verdict pass(MessagePtr message) { return {Action::pass, std::move(message), {}}; }
  static Verdict drop() { return {Action::drop, nullptr, {}}; }
  /// `reason` is shown to the sender (a sentence: "messages are limited to 500 characters").
  static Verdict reject(std::string reason) { return {Action::reject, nullptr, std::move(reason)}; }
};

/// Receives a transform's verdict; call it exactly once.
using VerdictHandler = std::function<void(Verdict)>;

/// Sits between the source and the fanout/log, and may change, enrich, drop
/// or reject each message a source takes in (`filter`, `rate-limit`). The
/// pipeline runs its transforms in the order the pipeline file lists them;
/// a message goes on only when each passed it. A transform never sees
/// messages replayed from the log or received from the fanout.
class Transform : public Plugin {
 public:
  static constexpr PluginKind kind = PluginKind::transform;

  /// Prepares the transform (loads a word list, connects to a lookup
  /// service). A failure stops the startup with its message.
  virtual Status start() { return Status::success(); }

  /// Decides about `message` and calls `done` exactly once, on the executor,
  /// inline or later (an asynchronous lookup). A changed message is a new
  /// Message (messages are shared and immutable): copy, change, pass the copy.
  /// Keep the id: it is what the sender is acknowledged with.
  virtual void process(MessagePtr message, VerdictHandler done) = 0;
};

}  // namespace nudge
