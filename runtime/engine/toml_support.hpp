#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "engine/diagnostics.hpp"

namespace nudge::runtime {

/// What a TOML value is, as a diagnostic says it: "expected a table, got an integer".
inline std::string type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
  }
  return "a value";
}

/// Parses a TOML document; on a syntax error adds `file:line:col: invalid
/// TOML: ...` to `diags` and returns nullopt.
inline std::optional<toml::table> parse_toml(std::string_view text, const std::string& display_name,
                                             Diagnostics& diags) {
  try {
    return toml::parse(text, display_name);
  } catch (const toml::parse_error& e) {
    diags.add({display_name, static_cast<int>(e.source().begin.line), static_cast<int>(e.source().begin.column), "",
               "invalid TOML: " + std::string(e.description())});
    return std::nullopt;
  }
}

}  // namespace nudge::runtime
