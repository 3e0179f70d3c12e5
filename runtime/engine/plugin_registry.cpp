#include "engine/plugin_registry.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

#include <dlfcn.h>

#include <boost/dll/runtime_symbol_info.hpp>

namespace nudge::runtime {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "nudge-";
constexpr std::string_view kSuffix = ".so";

std::optional<PluginFile> parse_file_name(const fs::path& path) {
  const std::string file = path.filename().string();
  if (file.size() <= kPrefix.size() + kSuffix.size() || !file.starts_with(kPrefix) || !file.ends_with(kSuffix))
    return std::nullopt;
  const std::string stem = file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
  const auto dash = stem.find('-');
  if (dash == std::string::npos) return std::nullopt;
  const auto kind = parse_plugin_kind(stem.substr(0, dash));
  if (!kind || dash + 1 >= stem.size()) return std::nullopt;
  return PluginFile{path, *kind, stem.substr(dash + 1)};
}

std::string describe_search_path(const std::vector<fs::path>& dirs) {
  std::string out;
  for (const auto& d : dirs) out += "\n  " + d.string();
  return out.empty() ? "\n  (no directories)" : out;
}

}  // namespace

PluginRegistry::PluginRegistry(std::vector<fs::path> search_path) : search_path_(std::move(search_path)) {}

std::vector<fs::path> PluginRegistry::default_search_path(const std::vector<fs::path>& command_line_dirs) {
  std::vector<fs::path> dirs = command_line_dirs;
  if (const char* env = std::getenv("NUDGE_PLUGIN_PATH")) {
    std::stringstream list(env);
    std::string dir;
    while (std::getline(list, dir, ':'))
      if (!dir.empty()) dirs.emplace_back(dir);
  }
  boost::system::error_code ec;
  const fs::path exe = boost::dll::program_location(ec);
  if (!ec) dirs.push_back((exe.parent_path() / NUDGE_PLUGIN_DIR_FROM_BIN).lexically_normal());
  return dirs;
}

std::vector<PluginFile> PluginRegistry::discover() const {
  std::vector<PluginFile> found;
  // A name may be taken once per kind: a `kafka` source and a `kafka` log
  // are different plugins.
  std::set<std::pair<PluginKind, std::string>> seen;
  for (const auto& dir : search_path_) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      auto parsed = parse_file_name(file);
      if (parsed && seen.emplace(parsed->kind, parsed->name).second) found.push_back(std::move(*parsed));
    }
  }
  return found;
}

std::shared_ptr<LoadedPlugin> PluginRegistry::load_file(const fs::path& path, std::string& error) {
  auto plugin = std::make_shared<LoadedPlugin>();
  plugin->path = path;
  boost::system::error_code ec;
  // A plugin stays mapped once its last handle goes (RTLD_NODELETE), until the
  // process exits, as in most plugin hosts: the libraries a plugin pulls in
  // may run threads that outlive every object the plugin made. The Kafka log
  // leaves a consumer handle undestroyed on purpose (librdkafka 2.0.2 aborts
  // on it; plugins/log/kafka/consumer.cpp), whose threads run until exit;
  // unmapping librdkafka under them would crash the process. gcc-built
  // plugins were kept mapped by glibc already (their GNU unique symbols make
  // it ignore dlclose); this makes it hold for any compiler. It also lets the
  // sanitizers see the globals of the plugin and of the libraries it pulled
  // in (libmariadb, librdkafka, ...) as roots at exit and name their frames,
  // instead of reporting what they held as leaks "from an unknown module".
  const auto mode = boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local |
                    static_cast<boost::dll::load_mode::type>(RTLD_NODELETE);
  plugin->library.load(path, mode, ec);
  if (ec) {
    // dlerror() says which symbol or dependency is missing; Boost.DLL keeps only the code.
    error = "cannot load plugin library " + path.string() + ": " + ec.message();
    return nullptr;
  }
  if (!plugin->library.has("nudge_plugin_descriptor")) {
    error = path.string() + " is not a Nudge plugin (it exports no 'nudge_plugin_descriptor')";
    return nullptr;
  }
  const auto descriptor = plugin->library.get_alias<const PluginDescriptor*()>("nudge_plugin_descriptor");
  plugin->descriptor = descriptor();
  // The ABI version is read before any other field: the rest of the layout
  // may differ in a plugin built against another SDK.
  if (!plugin->descriptor || plugin->descriptor->abi_version != kAbiVersion) {
    error = "plugin " + path.string() + " was built against SDK ABI version " +
            std::to_string(plugin->descriptor ? plugin->descriptor->abi_version : 0) +
            ", but this nudge uses SDK ABI version " + std::to_string(kAbiVersion) +
            "; rebuild the plugin against this SDK";
    return nullptr;
  }
  return plugin;
}

std::shared_ptr<LoadedPlugin> PluginRegistry::load(PluginKind kind, const std::string& name, std::string& error) const {
  const auto available = discover();
  const PluginFile* match = nullptr;
  const PluginFile* other_kind = nullptr;
  for (const auto& file : available) {
    if (file.name != name) continue;
    if (file.kind == kind) match = &file;
    else if (!other_kind) other_kind = &file;
  }

  if (!match && other_kind) {
    error = "plugin '" + name + "' is a " + std::string(to_string(other_kind->kind)) + " plugin, not a " +
            std::string(to_string(kind)) + "; move it to a [" + std::string(to_string(other_kind->kind)) + "." + name +
            "] table";
    return nullptr;
  }
  if (!match) {
    std::string kinds;
    for (const auto& file : available)
      if (file.kind == kind) kinds += (kinds.empty() ? "" : ", ") + file.name;
    error = "unknown " + std::string(to_string(kind)) + " plugin '" + name + "'; available " +
            std::string(to_string(kind)) + " plugins: " + (kinds.empty() ? "(none)" : kinds) +
            "; searched:" + describe_search_path(search_path_);
    return nullptr;
  }
  auto plugin = load_file(match->path, error);
  if (!plugin) return nullptr;
  if (plugin->kind() != kind || plugin->name() != name) {
    error = "plugin file " + match->path.string() + " declares " + std::string(to_string(plugin->kind())) +
            " plugin '" + plugin->name() + "', which does not match its file name";
    return nullptr;
  }
  return plugin;
}

}  // namespace nudge::runtime
