// `nudge plugins`: the plugins found, with kind, version and path.
#include <iomanip>
#include <iostream>
#include <string>

#include "cli/commands.hpp"
#include "engine/plugin_registry.hpp"

namespace nudge::runtime {

int cmd_plugins(const PluginRegistry& registry) {
  const auto files = registry.discover();
  if (files.empty()) {
    std::cerr << "nudge: no plugins found; searched:\n";
    for (const auto& d : registry.search_path()) std::cerr << "  " << d.string() << "\n";
    return 1;
  }
  std::cout << std::left << std::setw(12) << "NAME" << std::setw(11) << "KIND" << std::setw(10) << "VERSION"
            << "PATH\n";
  int broken = 0;
  for (const auto& file : files) {
    std::string error;
    auto plugin = PluginRegistry::load_file(file.path, error);
    if (!plugin) {
      ++broken;
      std::cout << std::setw(12) << file.name << std::setw(11) << to_string(file.kind) << std::setw(10) << "-"
                << file.path.string() << "\n    error: " << error << "\n";
      continue;
    }
    std::cout << std::setw(12) << plugin->name() << std::setw(11) << to_string(plugin->kind()) << std::setw(10)
              << plugin->descriptor->version << file.path.string() << "\n    " << plugin->descriptor->description
              << "\n";
  }
  return broken ? 1 : 0;
}

}  // namespace nudge::runtime
