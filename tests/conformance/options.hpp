#pragma once

// The command line of nudge-conformance (what is left after GoogleTest took
// its own --gtest_* flags).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nudge/sdk/abi.hpp"
#include "nudge/sdk/config.hpp"

namespace nudge::conformance {

struct Options {
  PluginKind kind = PluginKind::fanout;
  std::string plugin;
  /// --set key=value, in order, values as written (after ${VAR} expansion).
  std::vector<std::pair<std::string, std::string>> sets;
  std::vector<std::filesystem::path> plugin_dirs;
  std::string outage_begin;
  std::string outage_end;
  std::size_t max_payload = 65536;
  bool single_instance = false;
  /// --require-server: host:port or a URL; empty when not given.
  std::string require_server;
  /// --readiness-within-ms: how soon a plugin must report that it lost (or
  /// regained) its server without traffic.
  std::int64_t readiness_within_ms = 5000;
  bool help = false;
};

/// The usage text, generated from the grammar (printed for --help).
std::string usage();

/// Parses `args`. On a bad argument returns nullopt and sets `error` to one
/// sentence saying what is wrong.
std::optional<Options> parse_options(const std::vector<std::string>& args, std::string& error);

/// Converts the text of `--set key=text` to `field`'s type: integers and
/// numbers in full, booleans as true/false, string lists comma-separated.
/// Returns false and sets `error` when the text is not of that type.
bool parse_value(const ConfigField& field, std::string_view text, ConfigValue& out, std::string& error);

/// Finds host and port in "host:port", "[v6]:port", "a:1,b:2" (the first),
/// or a URL "scheme://[user[:password]@]host:port[/...]".
bool parse_server_address(std::string_view text, std::string& host, std::uint16_t& port, std::string& error);

}  // namespace nudge::conformance
