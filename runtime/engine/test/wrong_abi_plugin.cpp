// A plugin that claims another SDK ABI version: the runtime must refuse it,
// naming both numbers, before it reads anything else of its descriptor.
#include <boost/dll/alias.hpp>

#include "nudge/sdk/export.hpp"

namespace wrong_abi {
const nudge::PluginDescriptor* descriptor() {
  static const nudge::PluginDescriptor d{nudge::kAbiVersion + 41,
                                         nudge::PluginKind::sink,
                                         "wrongabi",
                                         "0.0.1",
                                         "built against another SDK",
                                         nullptr,
                                         nullptr};
  return &d;
}
}  // namespace wrong_abi

BOOST_DLL_ALIAS(wrong_abi::descriptor, nudge_plugin_descriptor)
