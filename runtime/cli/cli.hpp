#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace nudge::runtime {

/// The parsed command line of `nudge`.
struct CommandLine {
  std::string command;                 ///< run, validate, plugins, describe, new, help, version
  std::string argument;                ///< the pipeline file or plugin name; `new`: what to make (plugin)
  std::string subject;                 ///< `new plugin NAME`: the name
  std::string kind;                    ///< `new plugin --kind KIND`
  std::string dir;                     ///< `new plugin --dir DIR`
  bool markdown = false;               ///< `describe --markdown`
  std::vector<std::string> overrides;  ///< --set table.key=value
  std::vector<std::filesystem::path> plugin_dirs;
  std::string log_level = "info";
  std::string log_format;              ///< --log-format; empty: the pipeline's log_format
  std::string token;                   ///< `reload --token`: the admin token
  std::string error;                   ///< non-empty when the command line is wrong
};

CommandLine parse_command_line(const std::vector<std::string>& args);

/// Runs `nudge` with `args` (without the program name); returns the exit code.
int run_cli(const std::vector<std::string>& args);

}  // namespace nudge::runtime
