#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace nudge::runtime {

/// The parsed command line of `nudge`.
struct CommandLine {
  std::string command;    ///< run, validate, replay, plugins, describe, new, reload, top, tap, deploy, help,
                          ///< version
  std::string argument;   ///< the pipeline file, plugin name or admin URL; `new`: what to make
                          ///< (plugin); `deploy`: up, down, status
  std::string subject;    ///< `new plugin NAME`: the name; `deploy up FILE`: the file
  std::string kind;       ///< `new plugin --kind KIND`
  std::string dir;        ///< `new plugin --dir DIR`
  bool markdown = false;  ///< `describe --markdown`
  bool once = false;      ///< `top --once`
  std::chrono::milliseconds interval{1000};  ///< `top --interval`
  std::vector<std::string> overrides;        ///< --set table.key=value
  std::vector<std::filesystem::path> plugin_dirs;
  std::string log_level = "info";
  std::string log_format;  ///< --log-format; empty: the pipeline's log_format
  std::string token;       ///< `reload`, `tap --token`: the admin token
  /// `nudge tap`: what to watch (the admin URL is `argument`).
  struct TapOptions {
    std::vector<std::string> stages;  ///< --stage source,sink; empty: all
    std::vector<std::string> rooms;   ///< --room r1,r2; empty: all
    double sample = 1.0;              ///< --sample
    unsigned long long limit = 0;     ///< --limit; 0: until Ctrl-C
    long long max_text = -1;          ///< --max-text; -1: the endpoint's default (1024)
    std::string format = "json";      ///< --format json|text
  } tap;
  std::string help;   ///< `help`: the text to print (of the command asked about)
  std::string error;  ///< non-empty when the command line is wrong
  /// `nudge replay`: the range and how to read it (cli/replay/replay_args.hpp parses them).
  struct ReplayOptions {
    std::string from;    ///< --from earliest|TIME|P:OFFSET,...; empty: earliest
    std::string to;      ///< --to now|TIME; empty: now
    std::string group;   ///< --group; empty: the log picks a new one
    bool quiet = false;  ///< --quiet: no progress lines
  } replay;
};

CommandLine parse_command_line(const std::vector<std::string>& args);

/// Runs `nudge` with `args` (without the program name); returns the exit code.
int run_cli(const std::vector<std::string>& args);

}  // namespace nudge::runtime
