#include "cli/cli.hpp"

#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "cli/deploy/deploy.hpp"
#include "cli/top/top.hpp"
#include "engine/logging.hpp"
#include "engine/plugin_registry.hpp"

namespace nudge::runtime {

namespace {

constexpr const char* kFooter = R"(Run 'nudge COMMAND --help' for a command's options.

A running instance (with an [admin] table) answers on its admin endpoint:
GET /healthz, GET /readyz, GET /metrics (Prometheus), and POST /reload and
GET /tap with the [admin] token. SIGHUP reloads too. See docs/operations.md.

Pipeline strings may use ${VAR} and ${VAR:-default} from the environment, and
${PIPELINE_DIR} for the pipeline file's folder. See docs/architecture.md.)";

constexpr const char* kTopFooter = R"(A live view of a running instance, read from its admin endpoint's /metrics
(default http://127.0.0.1:9100): one row per stage with messages in, out,
errors and retries per second, queue depth and totals; connections, rooms,
consumer lag per partition, and ingest→ack / ingest→persisted p50 and p99.

Rates are the difference between two fetches over the time between them, so
the first frame shows totals and '-' for rates. Latency quantiles are
estimated from the histogram buckets observed during the last interval.

Keys: q quits (Ctrl-C too).)";

constexpr const char* kTapFooter = R"(Watches the messages passing through a running instance, read from its admin
endpoint's GET /tap with the admin token ($NUDGE_ADMIN_TOKEN or --token).
One line per event on stdout: JSON (time, stage, point, at, room, id, sender,
size, text) or, with --format text, a line for people. Points: source
accepted/delivered, transform passed/dropped/rejected, log appended/
append_failed/consumed, fanout published/received, sink written.

Tapping never slows the pipeline: events the endpoint cannot send fast
enough are missed, and how many is said on stderr. Ctrl-C stops; so does
--limit. See docs/operations.md.)";

constexpr const char* kReplayFooter = R"(Reads the log of the pipeline file from --from to --to into its sink, in a new
consumer group (never the pipeline's own: live workers are not disturbed), then
prints a summary and exits 0. Rows already in the sink are not written again
(by message id). Point it at another table or database with --set, e.g.
  nudge replay pipelines/chat-persist.toml --set sink.postgres.table=messages_restore
  nudge replay pipelines/chat-persist-mysql.toml --from 2026-12-01T00:00:00Z
A progress line goes to stderr every second. Ctrl-C stops after committing
what was written (exit 130); the same --group resumes. The log must still hold
the range: see docs/replay.md for Kafka's retention.)";

/// The grammar of `nudge`: every command, its arguments and flags, writing
/// into `cl`; --help is generated from it. Commands take only their own flags
/// (an option given to another command is an error naming the right one);
/// --log-level and --log-format go anywhere.
struct Grammar {
  std::unique_ptr<CLI::App> app;
  /// Each option's flag (`--token`) → the commands that take it, for errors.
  std::map<std::string, std::vector<std::string>> owners;
  // Parsed as text and copied into CommandLine after (CLI11 2.1 would take a
  // path for a list of characters, and a duration for a plain count).
  std::vector<std::string> plugin_dirs;
  long long interval_ms = 1000;
};

/// Fills `g` (in place: the options keep references into it and into `cl`).
void make_grammar(CommandLine& cl, Grammar& g) {
  g.app = std::make_unique<CLI::App>("nudge — a plugin-based message pipeline", "nudge");
  CLI::App& app = *g.app;
  app.set_help_flag("-h,--help", "print this help, or a command's after it");
  app.add_flag_callback(
      "-V,--version", [&cl] { cl.command = "version"; }, "print the version and the SDK ABI");
  app.add_option("--log-level", cl.log_level, "trace, debug, info (default), warn, error")->option_text("LEVEL");
  app.add_option("--log-format", cl.log_format, "text, logfmt or json (default: the pipeline's log_format, \"text\")")
      ->option_text("FORMAT");
  // Unknown words and flags are collected and explained after parsing (parse_command_line).
  app.allow_extras();
  app.require_subcommand(0, 1);  // a second command's name is an unexpected argument

  auto command = [&](const char* name, const char* description) {
    CLI::App* sub = app.add_subcommand(name, description);
    sub->fallthrough();  // --log-level after the command, and extras, reach `app`
    sub->parse_complete_callback([&cl, name] {
      if (cl.command.empty()) cl.command = name;
    });
    return sub;
  };
  auto own = [&](CLI::App* sub, const std::string& flag) { g.owners[flag].push_back(sub->get_name()); };
  auto set_flag = [&](CLI::App* sub) {
    sub->add_option("--set", cl.overrides,
                    "override a key of the pipeline file (repeatable), e.g.\n"
                    "--set source.websocket.listen=127.0.0.1:9000")
        ->option_text("TABLE.KEY=VALUE")
        ->allow_extra_args(false);
    own(sub, "--set");
  };
  auto plugin_dir = [&](CLI::App* sub) {
    sub->add_option("--plugin-dir", g.plugin_dirs,
                    "look for plugins in DIR first (repeatable); then in $NUDGE_PLUGIN_PATH\n"
                    "(colon-separated), then in the install's own plugin folder")
        ->option_text("DIR")
        ->allow_extra_args(false);
    own(sub, "--plugin-dir");
  };

  CLI::App* run = command("run", "run a pipeline until SIGINT/SIGTERM (drains, then exits 0)");
  run->add_option("PIPELINE", cl.argument, "the pipeline file (.toml)");
  set_flag(run);
  plugin_dir(run);

  CLI::App* validate = command("validate", "check a pipeline without connecting anywhere");
  validate->add_option("PIPELINE", cl.argument, "the pipeline file (.toml)");
  set_flag(validate);
  plugin_dir(validate);

  CLI::App* replay = command("replay", "rebuild or backfill the sink from the log, in a consumer group of its own");
  replay->footer(kReplayFooter);
  replay->add_option("PIPELINE", cl.argument, "the pipeline file (.toml): its [log.*] and [sink.*] tables");
  replay
      ->add_option("--from", cl.replay.from,
                   "earliest (default), a time (2026-12-06T14:00:00Z, or 2h, 7d ago),\n"
                   "or start offsets PARTITION:OFFSET[,...]")
      ->option_text("WHERE");
  own(replay, "--from");
  replay->add_option("--to", cl.replay.to, "now (default: the log's end when the replay starts), or a time")
      ->option_text("WHEN");
  own(replay, "--to");
  replay
      ->add_option("--group", cl.replay.group,
                   "the consumer group to read in (default: the log's group + '-replay-'\n"
                   "+ the time); the same group again resumes an interrupted replay")
      ->option_text("NAME");
  own(replay, "--group");
  replay->add_flag("--quiet", cl.replay.quiet, "no progress lines (the summary is still printed)");
  own(replay, "--quiet");
  set_flag(replay);
  plugin_dir(replay);

  CLI::App* plugins = command("plugins", "list the plugins found, with kind, version, path");
  plugin_dir(plugins);

  CLI::App* describe =
      command("describe", "print a plugin's config keys; `pipeline` and `admin` the runtime's own tables");
  describe->add_option("PLUGIN", cl.argument, "NAME, KIND.NAME, all, pipeline or admin");
  describe->add_flag("--markdown", cl.markdown, "as Markdown: the pipeline reference, docs/reference.md");
  own(describe, "--markdown");
  plugin_dir(describe);

  CLI::App* make = command("new", "write a plugin folder that builds against the installed SDK");
  make->add_option("WHAT", cl.argument, "plugin");
  make->add_option("NAME", cl.subject, "the plugin's name: lower case letters, digits and _");
  make->add_option("--kind", cl.kind, "source, transform, fanout, log or sink")->option_text("KIND");
  own(make, "--kind");
  make->add_option("--dir", cl.dir, "the folder to write (default: NAME)")->option_text("DIR");
  own(make, "--dir");

  CLI::App* reload = command("reload", "re-read a running instance's pipeline file and apply what can change live");
  reload->add_option("TARGET", cl.argument,
                     "the admin URL (default http://127.0.0.1:9100), or the pipeline file:\n"
                     "its [admin] listen and token");
  reload
      ->add_option("--token", cl.token,
                   "the admin token (default: $NUDGE_ADMIN_TOKEN, else the pipeline\n"
                   "file's [admin] token or token_file when given the file)")
      ->option_text("TOKEN");
  own(reload, "--token");
  set_flag(reload);

  CLI::App* top = command("top", "a live view of a running instance's stages");
  top->footer(kTopFooter);
  top->add_option("ADMIN_URL", cl.argument, "the admin endpoint (default http://127.0.0.1:9100)");
  top->add_option("--interval", g.interval_ms, "time between fetches in milliseconds (default 1000, 100 to 3600000)")
      ->option_text("MS")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            long long ms = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
            if (ec == std::errc() && end == text.data() + text.size() && ms >= 100 && ms <= 3'600'000) return {};
            return "must be milliseconds in [100, 3600000], got '" + text + "'";
          },
          ""));
  own(top, "--interval");
  top->add_flag("--once", cl.once,
                "print one frame and exit: two fetches one interval apart, so it has\n"
                "rates; no screen clearing. Exits 1 when the endpoint cannot be reached");
  own(top, "--once");

  CLI::App* tap = command("tap", "watch the messages flowing through a running instance");
  tap->footer(kTapFooter);
  tap->add_option("ADMIN_URL,--admin", cl.argument, "the admin endpoint (default http://127.0.0.1:9100)")
      ->option_text("URL");
  own(tap, "--admin");
  tap->add_option("--token", cl.token, "the admin token (default: $NUDGE_ADMIN_TOKEN)")->option_text("TOKEN");
  own(tap, "--token");
  tap->add_option("--stage", cl.tap.stages,
                  "stages to watch, comma-separated (default: all):\n"
                  "source, transform, log, fanout, sink")
      ->option_text("STAGE,...")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(CLI::IsMember({"source", "transform", "log", "fanout", "sink"}));
  own(tap, "--stage");
  tap->add_option("--room", cl.tap.rooms, "rooms to watch, comma-separated (default: all)")
      ->option_text("ROOM,...")
      ->delimiter(',')
      ->allow_extra_args(false);
  own(tap, "--room");
  tap->add_option("--sample", cl.tap.sample,
                  "share of messages to watch, in (0, 1] (default 1); chosen by message id,\n"
                  "so a sampled message shows at every stage")
      ->option_text("SHARE")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            double share = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), share);
            if (ec == std::errc() && end == text.data() + text.size() && share > 0 && share <= 1) return {};
            return "must be a number in (0, 1], got '" + text + "'";
          },
          ""));
  own(tap, "--sample");
  tap->add_option("--limit", cl.tap.limit, "stop after N events (default: until Ctrl-C)")->option_text("N");
  own(tap, "--limit");
  tap->add_option("--max-text", cl.tap.max_text, "bytes of each message's text shown (default 1024; 0: all)")
      ->option_text("BYTES")
      ->check(CLI::NonNegativeNumber);
  own(tap, "--max-text");
  tap->add_option("--format", cl.tap.format, "json (default: one JSON object a line) or text")
      ->option_text("FORMAT")
      ->check(CLI::IsMember({"json", "text"}));
  own(tap, "--format");

  CLI::App* deploy = command("deploy", "run a deployment's instances, supervised, behind nginx");
  deploy->footer("See deploy/README.md for the file format.");
  deploy->require_subcommand(0, 1);
  auto deploy_command = [&](const char* name, const char* description) {
    CLI::App* sub = deploy->add_subcommand(name, description);
    sub->fallthrough();
    sub->parse_complete_callback([&cl, name] { cl.argument = name; });
    sub->add_option("DEPLOYMENT", cl.subject, "the deployment file (.toml)");
    return sub;
  };
  deploy_command("up",
                 "start the instances and nginx under a supervisor (a daemon); waits\n"
                 "until every instance is ready, then prints the public URL");
  deploy_command("down", "stop the supervisor: instances drain and stop, then nginx");
  deploy_command("status",
                 "each instance's pid, state, restarts, uptime and /readyz; exit code 0\n"
                 "when everything is up and ready");
  // The supervisor itself, started by `up` as a daemon: not for people.
  deploy_command("__supervise", "")->group("");

  CLI::App* help = command("help", "")->group("");
  help->add_option("COMMAND", cl.argument);
  command("version", "")->group("");
  // Last: a subcommand takes its parent's footer when it is made.
  app.footer(kFooter);
}

/// "--token is for 'nudge reload'", "--set is for 'nudge run', 'nudge validate' and 'nudge reload'".
std::string misplaced(const std::string& flag, const std::vector<std::string>& commands) {
  std::string text = flag + " is for ";
  for (std::size_t i = 0; i < commands.size(); ++i)
    text += (i == 0 ? "" : i + 1 == commands.size() ? " and " : ", ") + ("'nudge " + commands[i] + "'");
  return text;
}

/// What is wrong with a command line CLI11 parsed, once the words it did not
/// take (`extras`) are known: the same sentences the tests and scripts expect.
void check(CommandLine& cl, const Grammar& g, const std::vector<std::string>& extras) {
  for (const auto& extra : extras) {
    if (extra.starts_with("-")) {
      const auto flag = extra.substr(0, extra.find('='));
      const auto owner = g.owners.find(flag);
      cl.error = owner != g.owners.end() ? misplaced(flag, owner->second) : "unknown option '" + extra + "'";
    } else if (cl.command.empty()) {
      cl.error = "unknown command '" + extra + "'";
    } else if (cl.command == "deploy" && cl.argument.empty()) {
      cl.error = "unknown deploy command '" + extra + "'";
    } else {
      cl.error = "unexpected argument '" + extra + "'";
    }
    return;
  }
  if (cl.command.empty()) cl.command = "help";
  if ((cl.command == "run" || cl.command == "validate" || cl.command == "replay" || cl.command == "describe") &&
      cl.argument.empty())
    cl.error = "'" + cl.command + "' needs " + (cl.command == "describe" ? "a plugin name" : "a pipeline file");
  if (cl.command == "new" && (cl.argument != "plugin" || cl.subject.empty()))
    cl.error = "usage: nudge new plugin NAME --kind source|transform|fanout|log|sink [--dir DIR]";
  if (cl.command == "deploy" && !cl.argument.empty() && cl.subject.empty())
    cl.error = "'deploy " + cl.argument + "' needs exactly one deployment file";
  if (!parse_log_level(cl.log_level)) cl.error = "unknown log level '" + cl.log_level + "'";
  if (!cl.log_format.empty() && !parse_log_format(cl.log_format))
    cl.error = "unknown log format '" + cl.log_format + "' (text, logfmt or json)";
}

}  // namespace

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine cl;
  Grammar g;
  make_grammar(cl, g);
  // CLI11 takes the arguments last first.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    g.app->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    cl.command = "help";
    cl.help = g.app->help();
    return cl;
  } catch (const CLI::ArgumentMismatch& e) {
    // "--set: 1 required TEXT missing": a flag at the end without its value.
    const std::string what = e.what();
    cl.error = what.substr(0, what.find(':')) + " needs a value";
    return cl;
  } catch (const CLI::ParseError& e) {
    cl.error = e.what();
    return cl;
  }
  cl.plugin_dirs.assign(g.plugin_dirs.begin(), g.plugin_dirs.end());
  cl.interval = std::chrono::milliseconds(g.interval_ms);
  std::vector<std::string> extras = g.app->remaining();
  check(cl, g, extras);
  if (cl.command == "help") {
    const CLI::App* about = g.app.get();
    if (!cl.argument.empty()) {
      try {
        about = g.app->get_subcommand(cl.argument);
      } catch (const CLI::OptionNotFound&) {
        cl.error = "unknown command '" + cl.argument + "'";
        return cl;
      }
    }
    cl.help = about->help(about == g.app.get() ? "" : "nudge");
  }
  if (cl.command == "deploy" && cl.argument.empty() && cl.error.empty()) {
    cl.error = "'deploy' needs a command: up, down or status";
  }
  return cl;
}

int run_cli(const std::vector<std::string>& args) {
  const CommandLine cl = parse_command_line(args);
  if (!cl.error.empty()) {
    const bool own_help = cl.command == "top" || cl.command == "tap" || cl.command == "deploy";
    std::cerr << "nudge: " << cl.error << "\nRun 'nudge " << (own_help ? cl.command + " " : "")
              << "--help' for usage.\n";
    return 2;
  }
  LogOutput::instance().set_level(*parse_log_level(cl.log_level));
  if (!cl.log_format.empty()) LogOutput::instance().set_format(*parse_log_format(cl.log_format));
  if (cl.command == "help") {
    std::cout << cl.help;
    return 0;
  }
  if (cl.command == "version") {
    std::cout << "nudge " << NUDGE_VERSION << " (SDK ABI " << kAbiVersion << ")\n";
    return 0;
  }
  if (cl.command == "new") return cmd_new_plugin(cl);
  if (cl.command == "reload") return cmd_reload(cl);
  if (cl.command == "top") return run_top(cl.argument, cl.interval, cl.once);
  if (cl.command == "tap") return cmd_tap(cl);
  if (cl.command == "deploy") return run_deploy(cl.argument, cl.subject);
  const PluginRegistry registry(PluginRegistry::default_search_path(cl.plugin_dirs));
  if (cl.command == "plugins") return cmd_plugins(registry);
  if (cl.command == "describe") return cmd_describe(cl, registry);
  if (cl.command == "validate") return cmd_validate(cl, registry);
  if (cl.command == "replay") return cmd_replay(cl, registry);
  return cmd_run(cl, registry);
}

}  // namespace nudge::runtime
