#include "cli.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "logging.hpp"
#include "pipeline.hpp"
#include "pipeline_config.hpp"
#include "plugin_registry.hpp"
#include "scaffold.hpp"

namespace nudge::runtime {

namespace {

constexpr const char* kUsage = R"(nudge — a plugin-based message pipeline

Usage:
  nudge run PIPELINE.toml [--set table.key=value ...]   run a pipeline until SIGINT/SIGTERM
  nudge validate PIPELINE.toml [--set ...]               check a pipeline without connecting anywhere
  nudge plugins                                          list the plugins found, with kind, version, path
  nudge describe PLUGIN | KIND.PLUGIN | all [--markdown] print a plugin's config keys (as Markdown:
                                                         the pipeline reference, docs/reference.md)
  nudge new plugin NAME --kind KIND [--dir DIR]          write a plugin folder (KIND: source, transform,
                                                         fanout, log or sink) that builds against the installed SDK
  nudge --version | --help

Options:
  --set table.key=value   override a key of the pipeline file (repeatable), e.g.
                          --set source.websocket.listen=127.0.0.1:9000
  --plugin-dir DIR        look for plugins in DIR first (repeatable); then in
                          $NUDGE_PLUGIN_PATH (colon-separated), then in the
                          install's own plugin folder
  --log-level LEVEL       trace, debug, info (default), warn, error

Pipeline strings may use ${VAR} and ${VAR:-default} from the environment, and
${PIPELINE_DIR} for the pipeline file's folder. See docs/architecture.md.
)";

int cmd_validate(const CommandLine& cl, const PluginRegistry& registry) {
  Diagnostics diags;
  LoadOptions options;
  options.overrides = cl.overrides;
  auto spec = load_pipeline(cl.argument, registry, options, diags);
  if (!spec) {
    std::cerr << diags.to_string();
    std::cerr << "nudge: " << diags.items().size() << " error" << (diags.items().size() == 1 ? "" : "s") << " in "
              << cl.argument << "\n";
    return 1;
  }
  std::cout << cl.argument << ": ok (";
  std::vector<std::string> stages;
  if (spec->source) stages.push_back(spec->source->key_path);
  for (const auto& t : spec->transforms) stages.push_back(t.key_path);
  for (const auto* stage : {&spec->fanout, &spec->log, &spec->sink})
    if (*stage) stages.push_back((*stage)->key_path);
  for (std::size_t i = 0; i < stages.size(); ++i) std::cout << (i ? " -> " : "") << stages[i];
  std::cout << ")\n";
  // Constructing the stages does no I/O; it tells what only an instance knows.
  boost::asio::io_context io;
  MetricsRegistry metrics;
  Pipeline pipeline(io, std::move(*spec), metrics);
  if (!pipeline.create()) return 1;
  if (const auto note = pipeline.history_note(); !note.empty()) std::cout << "  " << note << "\n";
  return 0;
}

int cmd_new_plugin(const CommandLine& cl) {
  ScaffoldRequest request{cl.subject, cl.kind, std::filesystem::path(cl.dir.empty() ? cl.subject : cl.dir)};
  if (const auto problems = scaffold_problems(request); !problems.empty()) {
    for (const auto& p : problems) std::cerr << "nudge: " << p << "\n";
    return 2;
  }
  try {
    const auto files = write_plugin_scaffold(request);
    std::cout << "wrote the " << request.kind << " plugin '" << request.name << "' in " << request.dir.string()
              << "/:\n";
    for (const auto& f : files) std::cout << "  " << f.string() << "\n";
    std::cout << "build and test it against the installed SDK:\n"
              << "  cmake -S " << request.dir.string() << " -B " << request.dir.string() << "/build"
              << " && cmake --build " << request.dir.string() << "/build"
              << " && ctest --test-dir " << request.dir.string() << "/build\n";
  } catch (const std::exception& e) {
    std::cerr << "nudge: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

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

/// A table cell: `|` escaped, on one line.
std::string cell(std::string text) {
  for (std::size_t at = text.find('|'); at != std::string::npos; at = text.find('|', at + 2)) text.replace(at, 1, "\\|");
  return text;
}

void describe_markdown(const LoadedPlugin& plugin, const ConfigSchema& schema) {
  std::cout << "## `" << to_string(plugin.kind()) << "." << plugin.name() << "`\n\n"
            << plugin.descriptor->description << " (version " << plugin.descriptor->version << ")\n\n";
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
    std::cout << "| `" << f.key << "` | " << to_string(f.type) << " | "
              << (f.required() ? std::string("required") : "`" + cell(to_toml(*f.default_value)) + "`") << " | "
              << cell(description) << " |\n";
  }
}

int cmd_describe(const CommandLine& cl, const PluginRegistry& registry) {
  // `NAME` describes every kind of that name; `KIND.NAME` just the one; `all` every plugin.
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
                 "Every key of every plugin, generated from the plugins' own schemas by\n"
                 "`nudge describe all --markdown` (do not edit: `scripts/gen-reference` rewrites it;\n"
                 "the test `docs.reference` fails when it is stale). How a pipeline file is laid\n"
                 "out, and the `[pipeline]` table, are in [architecture.md](architecture.md).\n\n";
  int described = 0;
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
    }
  }
  if (described) return 0;
  std::cerr << "nudge: unknown plugin '" << cl.argument << "'; available:";
  for (const auto& file : registry.discover()) std::cerr << " " << to_string(file.kind) << "." << file.name;
  std::cerr << "\n";
  return 1;
}

int cmd_run(const CommandLine& cl, const PluginRegistry& registry) {
  NamedLogger logger("runtime");
  Diagnostics diags;
  LoadOptions options;
  options.overrides = cl.overrides;
  auto spec = load_pipeline(cl.argument, registry, options, diags);
  if (!spec) {
    std::cerr << diags.to_string();
    std::cerr << "nudge: not starting: " << diags.items().size() << " error"
              << (diags.items().size() == 1 ? "" : "s") << " in " << cl.argument << "\n";
    return 1;
  }

  // Destruction order matters: the pipeline (plugin instances) goes first,
  // then the event loop with any handlers plugin code left in it, and only
  // then may the plugin libraries be unloaded.
  std::vector<std::shared_ptr<LoadedPlugin>> libraries;
  for (const auto* stage : {&spec->source, &spec->fanout, &spec->log, &spec->sink})
    if (*stage) libraries.push_back((*stage)->library);
  std::string fail_points_error;
  auto fail_points = FailPoints::from_environment(fail_points_error);
  if (!fail_points) {
    std::cerr << "nudge: not starting: NUDGE_FAILPOINTS: " << fail_points_error << "\n";
    return 1;
  }
  if (fail_points->any_armed())
    logger.warn("test-only fail points armed from NUDGE_FAILPOINTS='", std::getenv("NUDGE_FAILPOINTS"), "'");

  MetricsRegistry metrics;
  boost::asio::io_context io(1);
  Pipeline pipeline(io, std::move(*spec), metrics);
  pipeline.set_fail_points(std::move(*fail_points));
  if (!pipeline.create()) return 1;
  if (auto status = pipeline.start(); !status.ok()) {
    // Let stages that had started close cleanly before we exit.
    io.run_for(std::chrono::seconds(2));
    std::cerr << "nudge: not starting: " << status.message() << "\n";
    return 1;
  }

  int exit_code = 0;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (exit_code == -1) {
      logger.error("second signal: exiting without draining");
      std::_Exit(1);
    }
    logger.info("received ", sig == SIGINT ? "SIGINT" : "SIGTERM", "; shutting down");
    exit_code = -1;
    signals.async_wait(on_signal);
    pipeline.stop([&](bool drained) {
      exit_code = drained ? 0 : 1;
      signals.cancel();
      io.stop();
    });
  };
  signals.async_wait(on_signal);
  io.run();
  logger.info("exited ", exit_code == 0 ? "cleanly" : "with messages not drained");
  return exit_code < 0 ? 1 : exit_code;
}

}  // namespace

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine cl;
  auto need_value = [&](std::size_t& i, const std::string& flag) -> std::string {
    if (i + 1 >= args.size()) {
      cl.error = flag + " needs a value";
      return {};
    }
    return args[++i];
  };
  for (std::size_t i = 0; i < args.size() && cl.error.empty(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h" || a == "help") cl.command = "help";
    else if (a == "--version" || a == "-V" || a == "version") cl.command = "version";
    else if (a == "--set") cl.overrides.push_back(need_value(i, a));
    else if (a.starts_with("--set=")) cl.overrides.push_back(a.substr(6));
    else if (a == "--plugin-dir") cl.plugin_dirs.emplace_back(need_value(i, a));
    else if (a.starts_with("--plugin-dir=")) cl.plugin_dirs.emplace_back(a.substr(13));
    else if (a == "--markdown") cl.markdown = true;
    else if (a == "--kind") cl.kind = need_value(i, a);
    else if (a.starts_with("--kind=")) cl.kind = a.substr(7);
    else if (a == "--dir") cl.dir = need_value(i, a);
    else if (a.starts_with("--dir=")) cl.dir = a.substr(6);
    else if (a == "--log-level") cl.log_level = need_value(i, a);
    else if (a.starts_with("--log-level=")) cl.log_level = a.substr(12);
    else if (a.starts_with("-")) cl.error = "unknown option '" + a + "'";
    else if (cl.command.empty()) cl.command = a;
    else if (cl.argument.empty()) cl.argument = a;
    else if (cl.command == "new" && cl.subject.empty()) cl.subject = a;
    else cl.error = "unexpected argument '" + a + "'";
  }
  if (!cl.error.empty()) return cl;
  if (cl.command.empty()) cl.command = "help";
  const bool needs_argument = cl.command == "run" || cl.command == "validate" || cl.command == "describe";
  if (needs_argument && cl.argument.empty())
    cl.error = "'" + cl.command + "' needs " + (cl.command == "describe" ? "a plugin name" : "a pipeline file");
  if (cl.command == "new" && (cl.argument != "plugin" || cl.subject.empty()))
    cl.error = "usage: nudge new plugin NAME --kind source|transform|fanout|log|sink [--dir DIR]";
  if (cl.command != "run" && cl.command != "validate" && cl.command != "plugins" && cl.command != "describe" &&
      cl.command != "new" && cl.command != "help" && cl.command != "version")
    cl.error = "unknown command '" + cl.command + "'";
  if (!parse_log_level(cl.log_level)) cl.error = "unknown log level '" + cl.log_level + "'";
  return cl;
}

int run_cli(const std::vector<std::string>& args) {
  const CommandLine cl = parse_command_line(args);
  if (!cl.error.empty()) {
    std::cerr << "nudge: " << cl.error << "\nRun 'nudge --help' for usage.\n";
    return 2;
  }
  LogOutput::instance().set_level(*parse_log_level(cl.log_level));
  if (cl.command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cl.command == "version") {
    std::cout << "nudge " << NUDGE_VERSION << " (SDK ABI " << kAbiVersion << ")\n";
    return 0;
  }
  if (cl.command == "new") return cmd_new_plugin(cl);
  const PluginRegistry registry(PluginRegistry::default_search_path(cl.plugin_dirs));
  if (cl.command == "plugins") return cmd_plugins(registry);
  if (cl.command == "describe") return cmd_describe(cl, registry);
  if (cl.command == "validate") return cmd_validate(cl, registry);
  return cmd_run(cl, registry);
}

}  // namespace nudge::runtime
