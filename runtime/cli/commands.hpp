#pragma once

#include "cli/cli.hpp"

// The commands of `nudge`, one file each (run.cpp, validate.cpp, ...), called
// by run_cli once the command line is parsed. Each returns the exit code.
namespace nudge::runtime {

class PluginRegistry;

int cmd_run(const CommandLine& cl, const PluginRegistry& registry);
int cmd_validate(const CommandLine& cl, const PluginRegistry& registry);
/// `nudge replay` (replay/).
int cmd_replay(const CommandLine& cl, const PluginRegistry& registry);
int cmd_plugins(const PluginRegistry& registry);
int cmd_describe(const CommandLine& cl, const PluginRegistry& registry);
int cmd_reload(const CommandLine& cl);
/// `nudge tap` (tap.cpp).
int cmd_tap(const CommandLine& cl);
/// `nudge new plugin` (scaffold/).
int cmd_new_plugin(const CommandLine& cl);

}  // namespace nudge::runtime
