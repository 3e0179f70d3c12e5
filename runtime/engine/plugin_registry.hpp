#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include "nudge/sdk/export.hpp"

namespace nudge::runtime {

/// A plugin library loaded into the process. Plugin instances made from it
/// must be destroyed before it is (hold the shared_ptr longer than them).
struct LoadedPlugin {
  std::filesystem::path path;
  boost::dll::shared_library library;
  const PluginDescriptor* descriptor = nullptr;

  std::string name() const { return descriptor->name; }
  PluginKind kind() const { return descriptor->kind; }
};

/// A plugin library file found on the search path, before loading.
struct PluginFile {
  std::filesystem::path path;
  PluginKind kind;
  std::string name;
};

/// Finds and loads plugin libraries. Search order: the directories given on
/// the command line, then NUDGE_PLUGIN_PATH (colon-separated), then the
/// install's own plugin folder next to the executable. A plugin file is named
/// `nudge-<kind>-<name>.so`; the first directory holding a kind and name wins.
class PluginRegistry {
 public:
  explicit PluginRegistry(std::vector<std::filesystem::path> search_path);

  /// The default search path for `command_line_dirs` (see class comment).
  static std::vector<std::filesystem::path> default_search_path(
      const std::vector<std::filesystem::path>& command_line_dirs);

  const std::vector<std::filesystem::path>& search_path() const noexcept { return search_path_; }

  /// Every plugin file on the search path, the first of each kind and name only.
  std::vector<PluginFile> discover() const;

  /// Loads the plugin `name` for a `[kind.name]` table. On failure returns
  /// null and sets `error` to a message naming what is available and where
  /// it looked, or the wrong kind, or an ABI mismatch.
  std::shared_ptr<LoadedPlugin> load(PluginKind kind, const std::string& name, std::string& error) const;

  /// Loads one library file and checks its descriptor (ABI first).
  static std::shared_ptr<LoadedPlugin> load_file(const std::filesystem::path& path, std::string& error);

 private:
  std::vector<std::filesystem::path> search_path_;
};

}  // namespace nudge::runtime
