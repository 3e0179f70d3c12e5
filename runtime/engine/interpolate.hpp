#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::runtime {

/// Looks up a variable; nullopt when unset.
using VariableLookup = std::function<std::optional<std::string>(std::string_view name)>;

/// The process environment as a VariableLookup.
std::optional<std::string> environment_variable(std::string_view name);

/// Replaces `${VAR}` and `${VAR:-default}` in `text` (`$$` is a literal `$`).
/// `${VAR:-default}` uses the default when VAR is unset or empty, as a shell
/// does. Returns false and sets `error` when a variable is unset without a
/// default, or a `${` is not closed.
bool interpolate(std::string_view text, const VariableLookup& lookup, std::string& out, std::string& error);

}  // namespace nudge::runtime
