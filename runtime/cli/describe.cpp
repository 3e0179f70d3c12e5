// `nudge describe PLUGIN | KIND.PLUGIN | all | pipeline | admin [--markdown]`:
// config keys as text, or as the Markdown of docs/reference.md.
#include <algorithm>
#include <array>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "engine/admin_server.hpp"
#include "engine/pipeline_config.hpp"
#include "engine/plugin_registry.hpp"

namespace nudge::runtime {

namespace {

/// A table cell: `|` escaped, on one line.
std::string cell(std::string text) {
  for (std::size_t at = text.find('|'); at != std::string::npos; at = text.find('|', at + 2))
    text.replace(at, 1, "\\|");
  return text;
}

void schema_markdown(const ConfigSchema& schema) {
  if (schema.fields().empty()) {
    std::cout << "No keys.\n";
    return;
  }
  std::cout << "| key | type | default | description |\n|---|---|---|---|\n";
  for (const auto& f : schema.fields()) {
    std::string description = f.description;
    if (f.min || f.max)
      description += "; range " + (f.min ? std::to_string(*f.min) : std::string("…")) + " to " +
                     (f.max ? std::to_string(*f.max) : std::string("…"));
    if (!f.allowed.empty()) {
      description += "; one of";
      for (const auto& a : f.allowed) description += " `" + a + "`";
    }
    if (!f.example.empty()) description += "; e.g. `" + f.key + " = " + f.example + "`";
    if (f.live) description += "; reloadable live";
    std::cout << "| `" << f.key << "` | " << to_string(f.type) << " | "
              << (f.required() ? std::string("required") : "`" + cell(to_toml(*f.default_value)) + "`") << " | "
              << cell(description) << " |\n";
  }
}

void describe_markdown(const LoadedPlugin& plugin, const ConfigSchema& schema) {
  std::cout << "## `" << to_string(plugin.kind()) << "." << plugin.name() << "`\n\n"
            << plugin.descriptor->description << " (version " << plugin.descriptor->version << ")\n\n";
  schema_markdown(schema);
}

void schema_text(const ConfigSchema& schema) {
  for (const auto& f : schema.fields()) {
    std::cout << f.key << " (" << to_string(f.type) << ", "
              << (f.required() ? std::string("required") : "default " + to_toml(*f.default_value)) << ")\n";
    std::cout << "    " << f.description << "\n";
    if (f.min || f.max)
      std::cout << "    range: [" << (f.min ? std::to_string(*f.min) : "") << ", "
                << (f.max ? std::to_string(*f.max) : "") << "]\n";
    if (!f.allowed.empty()) {
      std::cout << "    one of:";
      for (const auto& a : f.allowed) std::cout << " \"" << a << "\"";
      std::cout << "\n";
    }
    if (!f.example.empty()) std::cout << "    example: " << f.key << " = " << f.example << "\n";
    if (f.live) std::cout << "    reloadable live (nudge reload, SIGHUP)\n";
  }
}

/// The tables the runtime reads itself, before any plugin's.
struct RuntimeTable {
  const char* name;
  const char* about;
  const ConfigSchema& schema;
};

std::vector<RuntimeTable> runtime_tables() {
  return {{"pipeline", "The runtime's own settings of a pipeline (docs/architecture.md).", pipeline_schema()},
          {"admin",
           "The admin endpoint: /healthz, /readyz, /metrics, POST /reload and GET /tap; without this table there "
           "is none (docs/operations.md).",
           admin_schema()}};
}

}  // namespace

int cmd_describe(const CommandLine& cl, const PluginRegistry& registry) {
  // `NAME` describes every kind of that name; `KIND.NAME` just the one; `all` every plugin;
  // `pipeline` and `admin` the runtime's own tables.
  std::string name = cl.argument;
  const bool all = name == "all";
  std::optional<PluginKind> kind;
  if (const auto dot = name.find('.'); dot != std::string::npos) {
    kind = parse_plugin_kind(name.substr(0, dot));
    if (kind) name = name.substr(dot + 1);
  }
  auto files = registry.discover();
  std::erase_if(files, [&](const PluginFile& f) { return !all && (f.name != name || (kind && f.kind != *kind)); });
  // Pipeline order (source, transform, fanout, log, sink), then by name: the same text every time.
  auto position = [](PluginKind k) {
    constexpr std::array order{PluginKind::source, PluginKind::transform, PluginKind::fanout, PluginKind::log,
                               PluginKind::sink};
    return std::find(order.begin(), order.end(), k) - order.begin();
  };
  std::sort(files.begin(), files.end(), [&](const PluginFile& a, const PluginFile& b) {
    return std::pair(position(a.kind), a.name) < std::pair(position(b.kind), b.name);
  });
  if (cl.markdown && all)
    std::cout << "# Pipeline reference\n\n"
                 "Every key of the runtime's own tables and of every plugin, generated from their\n"
                 "schemas by `nudge describe all --markdown` (do not edit: `scripts/gen-reference`\n"
                 "rewrites it; the test `docs.reference` fails when it is stale). How a pipeline\n"
                 "file is laid out is in [architecture.md](architecture.md).\n\n";
  int described = 0;
  for (const auto& table : runtime_tables()) {
    if (!all && (kind || name != table.name)) continue;
    if (described++) std::cout << "\n";
    if (cl.markdown) {
      std::cout << "## `[" << table.name << "]`\n\n" << table.about << "\n\n";
      schema_markdown(table.schema);
    } else {
      std::cout << "[" << table.name << "]  (the runtime's own)\n" << table.about << "\n\n";
      schema_text(table.schema);
    }
  }
  for (const auto& file : files) {
    if (described++) std::cout << "\n";
    std::string error;
    auto plugin = PluginRegistry::load_file(file.path, error);
    if (!plugin) {
      std::cerr << "nudge: " << error << "\n";
      return 1;
    }
    const auto schema = effective_schema(*plugin);
    if (cl.markdown) {
      describe_markdown(*plugin, schema);
      continue;
    }
    std::cout << "[" << to_string(plugin->kind()) << "." << plugin->name() << "]  version "
              << plugin->descriptor->version << "\n"
              << plugin->descriptor->description << "\n\n";
    schema_text(schema);
  }
  if (described) return 0;
  std::cerr << "nudge: unknown plugin '" << cl.argument << "'; available:";
  for (const auto& file : registry.discover()) std::cerr << " " << to_string(file.kind) << "." << file.name;
  std::cerr << "\n";
  return 1;
}

}  // namespace nudge::runtime
