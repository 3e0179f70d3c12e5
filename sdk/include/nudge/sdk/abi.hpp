#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace nudge {

/// Version of the binary interface between the runtime and its plugins.
///
/// Plugins share C++ vtables and standard-library types with the runtime, so
/// any change to a public SDK header that alters a class layout, a virtual
/// function or an inline function's behaviour must bump this number. The
/// runtime refuses a plugin built against another number (docs/plugin-guide.md
/// lists what counts as such a change).
inline constexpr std::uint32_t kAbiVersion = 7;

/// The role a plugin plays in a pipeline. The numeric values are part of the
/// ABI: they are read from a plugin's descriptor before anything else.
enum class PluginKind : std::uint32_t {
  source = 1,     ///< takes messages in from clients and delivers to its clients
  fanout = 2,     ///< the real-time bus between runtime instances
  log = 3,        ///< the durable, replayable buffer in front of the sink
  sink = 4,       ///< the final store, written in batches
  transform = 5,  ///< between the source and the fanout/log: changes, drops or rejects messages
};

/// The lower-case name of a kind, as used for pipeline tables (`[sink.sqlite]`).
constexpr std::string_view to_string(PluginKind kind) noexcept {
  switch (kind) {
    case PluginKind::source:
      return "source";
    case PluginKind::fanout:
      return "fanout";
    case PluginKind::log:
      return "log";
    case PluginKind::sink:
      return "sink";
    case PluginKind::transform:
      return "transform";
  }
  return "unknown";
}

/// Parses a kind name; nullopt when `name` is not one of the five kinds.
constexpr std::optional<PluginKind> parse_plugin_kind(std::string_view name) noexcept {
  if (name == "source") return PluginKind::source;
  if (name == "fanout") return PluginKind::fanout;
  if (name == "log") return PluginKind::log;
  if (name == "sink") return PluginKind::sink;
  if (name == "transform") return PluginKind::transform;
  return std::nullopt;
}

}  // namespace nudge
