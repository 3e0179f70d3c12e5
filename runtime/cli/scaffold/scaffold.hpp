#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace nudge::runtime {

/// `nudge new plugin NAME --kind KIND [--dir DIR]`: what to write.
struct ScaffoldRequest {
  std::string name;           ///< the plugin's name: lower case letters, digits and _
  std::string kind;           ///< source, transform, fanout, log or sink
  std::filesystem::path dir;  ///< the folder to create (must not exist or be empty)
};

/// Why `request` cannot be scaffolded, one sentence each; empty when it can.
std::vector<std::string> scaffold_problems(const ScaffoldRequest& request);

/// Writes a plugin folder that builds against an installed Nudge
/// (find_package(Nudge)) and passes its own test as generated: CMakeLists.txt,
/// src/ (the plugin class with a config schema, and its registration),
/// test/ (GoogleTest, driving the plugin through the SDK's testing.hpp) and a
/// README with the config reference. Returns the files written, relative to
/// `request.dir`; throws std::runtime_error when a file cannot be written.
std::vector<std::filesystem::path> write_plugin_scaffold(const ScaffoldRequest& request);

}  // namespace nudge::runtime
