#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>

#include <boost/dll/alias.hpp>

#include "nudge/sdk/abi.hpp"
#include "nudge/sdk/config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/fanout.hpp"
#include "nudge/sdk/log.hpp"
#include "nudge/sdk/sink.hpp"
#include "nudge/sdk/source.hpp"
#include "nudge/sdk/transform.hpp"

namespace nudge {

/// What a plugin library publishes. Plain data so the runtime can read the
/// first two fields of a plugin built against any SDK version: `abi_version`
/// and `kind` must stay first, in this order, forever.
struct PluginDescriptor {
  std::uint32_t abi_version;
  PluginKind kind;
  const char* name;
  const char* version;
  const char* description;
  /// The plugin's config schema.
  ConfigSchema (*schema)();
  /// Constructs an instance; never throws. On failure returns null and sets
  /// `*error`. The returned object is of the kind's interface type (Source,
  /// Fanout, Log, Sink or Transform) and is destroyed with `delete` through Plugin.
  Plugin* (*create)(const Config& config, Context& context, std::string* error) noexcept;
};

namespace detail {

template <class T>
constexpr PluginKind plugin_kind_of() {
  constexpr int kinds = std::is_base_of_v<Source, T> + std::is_base_of_v<Fanout, T> + std::is_base_of_v<Log, T> +
                        std::is_base_of_v<Sink, T> + std::is_base_of_v<Transform, T>;
  static_assert(kinds == 1, "a plugin class derives from exactly one of Source, Fanout, Log, Sink, Transform");
  if constexpr (std::is_base_of_v<Source, T>) return PluginKind::source;
  else if constexpr (std::is_base_of_v<Fanout, T>) return PluginKind::fanout;
  else if constexpr (std::is_base_of_v<Log, T>) return PluginKind::log;
  else if constexpr (std::is_base_of_v<Transform, T>) return PluginKind::transform;
  else return PluginKind::sink;
}

template <class T>
Plugin* create_plugin(const Config& config, Context& context, std::string* error) noexcept {
  try {
    return new T(config, context);
  } catch (const std::exception& e) {
    if (error) *error = e.what();
  } catch (...) {
    if (error) *error = "unknown exception while constructing the plugin";
  }
  return nullptr;
}

}  // namespace detail
}  // namespace nudge

/// Publishes a plugin class through Boost.DLL. Use once per plugin library,
/// in its plugin.cpp:
///
///     NUDGE_PLUGIN(nudge::plugins::SqliteSink, "sqlite", "0.1.0",
///                  "Stores messages in a SQLite database file")
///
/// `Class` derives from exactly one of Source, Fanout, Log, Sink or Transform (its kind),
/// has a constructor `Class(const nudge::Config&, nudge::Context&)` that does
/// no I/O, and a `static nudge::ConfigSchema schema()`.
#define NUDGE_PLUGIN(Class, NAME, VERSION, DESCRIPTION)                                             \
  namespace nudge_plugin_export {                                                                   \
  const ::nudge::PluginDescriptor* descriptor() {                                                   \
    static const ::nudge::PluginDescriptor d{                                                       \
        ::nudge::kAbiVersion, ::nudge::detail::plugin_kind_of<Class>(), NAME, VERSION, DESCRIPTION, \
        &Class::schema,       &::nudge::detail::create_plugin<Class>};                              \
    return &d;                                                                                      \
  }                                                                                                 \
  }                                                                                                 \
  BOOST_DLL_ALIAS(nudge_plugin_export::descriptor, nudge_plugin_descriptor)
