#include "cli/cli.hpp"

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "cli/admin_client.hpp"
#include "engine/admin_server.hpp"
#include "engine/logging.hpp"
#include "engine/pipeline.hpp"
#include "engine/pipeline_config.hpp"
#include "engine/plugin_registry.hpp"
#include "cli/scaffold/scaffold.hpp"
#include "cli/deploy/deploy.hpp"
#include "cli/top/top.hpp"

namespace nudge::runtime {

namespace {

constexpr const char* kUsage = R"(nudge — a plugin-based message pipeline

Usage:
  nudge run PIPELINE.toml [--set table.key=value ...]   run a pipeline until SIGINT/SIGTERM
  nudge validate PIPELINE.toml [--set ...]               check a pipeline without connecting anywhere
  nudge plugins                                          list the plugins found, with kind, version, path
  nudge describe PLUGIN | KIND.PLUGIN | all [--markdown] print a plugin's config keys (as Markdown:
                                                         the pipeline reference, docs/reference.md);
                                                         `pipeline` and `admin` the runtime's own tables
  nudge new plugin NAME --kind KIND [--dir DIR]          write a plugin folder (KIND: source, transform,
                                                         fanout, log or sink) that builds against the installed SDK
  nudge reload [ADMIN_URL | PIPELINE.toml] [--token T]   re-read a running instance's pipeline file and apply
                                                         what can change live (default http://127.0.0.1:9100;
                                                         given the pipeline, its [admin] listen and token)
  nudge top [ADMIN_URL]                                  a live view of a running instance's stages
  nudge deploy up|down|status DEPLOYMENT.toml            run a deployment's instances, supervised, behind nginx
  nudge --version | --help

Options:
  --set table.key=value   override a key of the pipeline file (repeatable), e.g.
                          --set source.websocket.listen=127.0.0.1:9000
  --plugin-dir DIR        look for plugins in DIR first (repeatable); then in
                          $NUDGE_PLUGIN_PATH (colon-separated), then in the
                          install's own plugin folder
  --log-level LEVEL       trace, debug, info (default), warn, error
  --log-format FORMAT     text, logfmt or json (default: the pipeline's log_format, "text")
  --token TOKEN           reload: the admin token (default: $NUDGE_ADMIN_TOKEN, else the
                          pipeline file's [admin] token or token_file when given the file)

A running instance (with an [admin] table) answers on its admin endpoint:
GET /healthz, GET /readyz, GET /metrics (Prometheus), and POST /reload with
the [admin] token. SIGHUP reloads too. See docs/operations.md.

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

/// `nudge reload PIPELINE.toml`: a file, not an admin URL.
bool names_pipeline_file(const std::string& argument) {
  std::error_code ec;
  return argument.ends_with(".toml") || (argument.find("://") == std::string::npos &&
                                         std::filesystem::is_regular_file(argument, ec));
}

int cmd_reload(const CommandLine& cl) {
  std::string target = cl.argument.empty() ? "http://127.0.0.1:9100" : cl.argument;
  std::optional<AdminSettings> from_file;
  if (names_pipeline_file(cl.argument)) {
    Diagnostics diags;
    LoadOptions options;
    options.overrides = cl.overrides;
    from_file = load_admin_settings(cl.argument, options, diags);
    if (!from_file) {
      if (diags.empty())
        std::cerr << "nudge reload: " << cl.argument
                  << " has no [admin] table, so its instances serve no admin endpoint; send them SIGHUP instead\n";
      else
        std::cerr << diags.to_string();
      return 2;
    }
    std::string host;
    std::uint16_t port = 0;
    nudge::parse_host_port(from_file->listen, host, port);
    if (port == 0) {
      std::cerr << "nudge reload: " << cl.argument << ": admin.listen '" << from_file->listen
                << "' picks a free port; give the admin URL the instance logged (nudge reload URL --token ...)\n";
      return 2;
    }
    // An instance listening on every address is reached on loopback.
    if (host == "0.0.0.0") host = "127.0.0.1";
    else if (host == "::") host = "::1";
    target = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
  std::string error;
  const auto url = parse_admin_url(target, error);
  if (!url) {
    std::cerr << "nudge reload: " << error << "\n";
    return 2;
  }
  std::string token = cl.token;
  if (const char* env = std::getenv("NUDGE_ADMIN_TOKEN"); token.empty() && env) token = env;
  if (token.empty() && from_file) {
    if (auto status = read_admin_token(*from_file, token); !status.ok()) {
      std::cerr << "nudge reload: " << status.message() << "\n";
      return 2;
    }
  }
  AdminHeaders headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  // A reload re-reads the file and may wait on plugins: more time than a status request.
  const auto response = admin_request("POST", *url, "/reload", std::chrono::seconds(30), {}, headers);
  if (!response.answered()) {
    std::cerr << "nudge reload: cannot reach the admin endpoint at " << url->base << ": " << response.error
              << "\n(is the instance running with an [admin] table? SIGHUP reloads it too)\n";
    return 1;
  }
  (response.status == 200 ? std::cout : std::cerr) << response.body;
  if (response.status == 401 && token.empty())
    std::cerr << "(nudge reload sent no token: give it with --token, $NUDGE_ADMIN_TOKEN, or the pipeline file: "
                 "nudge reload PIPELINE.toml)\n";
  return response.status == 200 ? 0 : 1;
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
           "The admin endpoint: /healthz, /readyz, /metrics and POST /reload; without this table there is none "
           "(docs/operations.md).",
           admin_schema()}};
}

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

  auto& output = LogOutput::instance();
  output.set_identity(spec->settings.name, spec->settings.instance_id);
  if (cl.log_format.empty()) output.set_format(*parse_log_format(spec->settings.log_format));

  MetricsRegistry metrics;
  metrics.set_common_labels({{"pipeline", spec->settings.name}, {"instance", spec->settings.instance_id}});
  metrics.gauge("nudge_build_info", "The running nudge's version and SDK ABI (value 1)",
                {{"version", NUDGE_VERSION}, {"abi", std::to_string(kAbiVersion)}})
      .set(1);
  metrics.gauge("nudge_process_start_time_seconds", "When this process started, in Unix seconds")
      .set(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
               .count());
  boost::asio::io_context io(1);
  const std::optional<AdminSettings> admin_settings = spec->admin;
  std::string admin_token;
  if (admin_settings)
    if (auto status = read_admin_token(*admin_settings, admin_token); !status.ok()) {
      std::cerr << "nudge: not starting: " << status.message() << "\n";
      return 1;
    }
  Pipeline pipeline(io, std::move(*spec), metrics);
  pipeline.set_fail_points(std::move(*fail_points));
  if (!pipeline.create()) return 1;

  // Reloading: the same file and --set overrides, read again; a refusal changes nothing.
  auto reload = [&](const char* why) -> std::pair<unsigned, std::string> {
    logger.info("reloading ", cl.argument, " (", why, ")");
    Diagnostics reload_diags;
    auto next = load_pipeline(cl.argument, registry, options, reload_diags);
    if (!next) {
      const std::string text = reload_diags.to_string();
      logger.error("reload refused: ", reload_diags.items().size(), " error(s) in ", cl.argument,
                   "; the running configuration stays:\n", text);
      return {400, "reload refused: " + std::to_string(reload_diags.items().size()) + " error(s) in " +
                       cl.argument + "; nothing changed\n" + text};
    }
    const std::string next_format = next->settings.log_format;
    const auto outcome = pipeline.reload(std::move(*next));
    if (!outcome.applied) {
      std::string text = "reload refused; nothing changed:\n";
      for (const auto& r : outcome.refusals) text += "  " + r + "\n";
      logger.error(text);
      return {409, text};
    }
    if (cl.log_format.empty()) LogOutput::instance().set_format(*parse_log_format(next_format));
    if (outcome.changes.empty()) {
      logger.info("reload: no changes");
      return {200, "reloaded: no changes\n"};
    }
    std::string text = "reloaded: " + std::to_string(outcome.changes.size()) + " change(s) applied:\n";
    for (const auto& c : outcome.changes) text += "  " + c + "\n";
    logger.info(text);
    return {200, text};
  };

  std::unique_ptr<AdminServer> admin;
  if (admin_settings) {
    AdminAccess access;
    access.token = std::move(admin_token);
    access.allowed_hosts = admin_settings->allowed_hosts;
    access.max_connections = admin_settings->max_connections;
    admin = std::make_unique<AdminServer>(
        io, AdminHandlers{
                [&metrics] { return metrics.prometheus(); },
                [&pipeline] {
                  std::vector<std::string> lines;
                  for (const auto& n : pipeline.not_ready()) lines.push_back(n.stage + ": " + n.reason);
                  return lines;
                },
                [&reload](std::function<void(unsigned, std::string)> answer) {
                  auto [status, body] = reload("POST /reload");
                  answer(status, std::move(body));
                }},
        std::move(access), metrics);
    // Before the stages start, so /healthz answers (and /readyz says "starting") during a slow start.
    if (auto status = admin->start(admin_settings->listen); !status.ok()) {
      std::cerr << "nudge: not starting: " << status.message() << "\n";
      return 1;
    }
  }
  // A server that resets a connection while a plugin writes to it must cost
  // that connection, not the process: hiredis writes with write(2), which
  // raises SIGPIPE (Asio, libpq and librdkafka avoid it on their own).
  std::signal(SIGPIPE, SIG_IGN);
  if (auto status = pipeline.start(); !status.ok()) {
    // Let stages that had started close cleanly before we exit.
    io.run_for(std::chrono::seconds(2));
    std::cerr << "nudge: not starting: " << status.message() << "\n";
    return 1;
  }

  boost::asio::signal_set hangups(io, SIGHUP);
  std::function<void(boost::system::error_code, int)> on_hangup = [&](boost::system::error_code ec, int) {
    if (ec) return;
    reload("SIGHUP");
    hangups.async_wait(on_hangup);
  };
  hangups.async_wait(on_hangup);

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
    hangups.cancel();
    pipeline.stop([&](bool drained) {
      exit_code = drained ? 0 : 1;
      signals.cancel();
      if (admin) admin->stop();
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
    else if (a == "--log-format") cl.log_format = need_value(i, a);
    else if (a.starts_with("--log-format=")) cl.log_format = a.substr(13);
    else if (a == "--token") cl.token = need_value(i, a);
    else if (a.starts_with("--token=")) cl.token = a.substr(8);
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
      cl.command != "new" && cl.command != "reload" && cl.command != "help" && cl.command != "version")
    cl.error = "unknown command '" + cl.command + "'";
  if (!cl.token.empty() && cl.command != "reload") cl.error = "--token is for 'nudge reload'";
  if (!parse_log_level(cl.log_level)) cl.error = "unknown log level '" + cl.log_level + "'";
  if (!cl.log_format.empty() && !parse_log_format(cl.log_format))
    cl.error = "unknown log format '" + cl.log_format + "' (text, logfmt or json)";
  return cl;
}

int run_cli(const std::vector<std::string>& args) {
  // Commands with arguments of their own parse them themselves.
  if (!args.empty() && args[0] == "top") return run_top({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "deploy") return run_deploy({args.begin() + 1, args.end()});
  const CommandLine cl = parse_command_line(args);
  if (!cl.error.empty()) {
    std::cerr << "nudge: " << cl.error << "\nRun 'nudge --help' for usage.\n";
    return 2;
  }
  LogOutput::instance().set_level(*parse_log_level(cl.log_level));
  if (!cl.log_format.empty()) LogOutput::instance().set_format(*parse_log_format(cl.log_format));
  if (cl.command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cl.command == "version") {
    std::cout << "nudge " << NUDGE_VERSION << " (SDK ABI " << kAbiVersion << ")\n";
    return 0;
  }
  if (cl.command == "new") return cmd_new_plugin(cl);
  if (cl.command == "reload") return cmd_reload(cl);
  const PluginRegistry registry(PluginRegistry::default_search_path(cl.plugin_dirs));
  if (cl.command == "plugins") return cmd_plugins(registry);
  if (cl.command == "describe") return cmd_describe(cl, registry);
  if (cl.command == "validate") return cmd_validate(cl, registry);
  return cmd_run(cl, registry);
}

}  // namespace nudge::runtime
