#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace nudge {

/// Why an operation failed. Sources map these to the error codes their
/// clients see, so keep them coarse and stable.
enum class StatusCode {
  ok,
  invalid_argument,  ///< the input can never succeed as given
  unavailable,       ///< a server or resource is down; retrying later may work
  timeout,           ///< no answer in time; the outcome may be unknown
  rejected,          ///< refused by policy (limits, filters)
  cancelled,         ///< the pipeline is shutting down
  internal,          ///< a bug or an unexpected state
};

constexpr std::string_view to_string(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::ok:
      return "ok";
    case StatusCode::invalid_argument:
      return "invalid_argument";
    case StatusCode::unavailable:
      return "unavailable";
    case StatusCode::timeout:
      return "timeout";
    case StatusCode::rejected:
      return "rejected";
    case StatusCode::cancelled:
      return "cancelled";
    case StatusCode::internal:
      return "internal";
  }
  return "unknown";
}

/// The outcome of an operation: ok, or a code with a human-readable message.
/// Cheap to copy when ok. Exceptions never cross the plugin boundary; a
/// Status does.
class Status {
 public:
  Status() = default;

  /// A success.
  static Status success() { return Status(); }
  /// A failure with `code` (not StatusCode::ok) and a sentence for logs and clients.
  static Status error(StatusCode code, std::string message) { return Status(code, std::move(message)); }

  bool ok() const noexcept { return code_ == StatusCode::ok; }
  StatusCode code() const noexcept { return code_; }
  /// Empty when ok.
  const std::string& message() const noexcept { return message_; }
  /// True for failures that may succeed when tried again later.
  bool retryable() const noexcept { return code_ == StatusCode::unavailable || code_ == StatusCode::timeout; }

 private:
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

/// Completion callback of an asynchronous operation. Unless a method says
/// otherwise it is invoked exactly once, on the runtime's executor.
using Completion = std::function<void(Status)>;

}  // namespace nudge
