// The smallest loadable plugin, built without GNU unique symbols (which make
// glibc keep a gcc-built library mapped on its own): whether it stays mapped
// once its last handle goes is up to the registry alone.
#include <boost/dll/alias.hpp>

#include "nudge/sdk/export.hpp"

namespace plain {
const nudge::PluginDescriptor* descriptor() {
  static const nudge::PluginDescriptor d{
      nudge::kAbiVersion, nudge::PluginKind::sink, "plain", "0.0.1", "loads and makes nothing", nullptr, nullptr};
  return &d;
}
}  // namespace plain

BOOST_DLL_ALIAS(plain::descriptor, nudge_plugin_descriptor)
