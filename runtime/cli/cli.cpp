#include "cli/cli.hpp"

#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/deploy/deploy.hpp"
#include "cli/top/top.hpp"
#include "engine/logging.hpp"
#include "engine/plugin_registry.hpp"

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
