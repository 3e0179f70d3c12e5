// nudge-conformance: the conformance suite of one plugin kind, run against
// one plugin loaded the way the runtime loads it. See `--help` and
// docs/plugin-guide.md ("Testing your plugin with the conformance suites").

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.hpp"
#include "options.hpp"

namespace {

using namespace nudge;
using namespace nudge::conformance;

constexpr int kUsageError = 2;
constexpr int kSkippedNoServer = 77;

std::string schema_keys(const ConfigSchema& schema) {
  std::string keys;
  for (const auto& field : schema.fields())
    keys += (keys.empty() ? "" : ", ") + field.key + " (" + std::string(to_string(field.type)) + ")";
  return keys.empty() ? "(it has no config keys)" : keys;
}

int usage_error(const std::string& message) {
  std::cerr << "nudge-conformance: error: " << message << "\n"
            << "usage: nudge-conformance --kind fanout|sink|log --plugin NAME [--set key=value ...]\n"
            << "         [--plugin-dir DIR]"
            << " [--outage-begin CMD --outage-end CMD] [--max-payload BYTES] [--single-instance]\n"
            << "         [--require-server ADDR] [gtest flags]   (--help says more)\n";
  return kUsageError;
}

/// Fills settings() from the options; false (after printing why) on an error.
bool configure(const Options& options) {
  Settings& s = settings();
  s.kind = options.kind;
  s.single_instance = options.single_instance;
  s.max_payload = options.max_payload;
  s.outage_begin = options.outage_begin;
  s.outage_end = options.outage_end;
  s.readiness_within = milliseconds(options.readiness_within_ms);
  const auto epoch_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  s.run_id = "c" + std::to_string(::getpid()) + "-" + std::to_string(epoch_s);

  runtime::PluginRegistry registry(runtime::PluginRegistry::default_search_path(options.plugin_dirs));
  std::string error;
  s.plugin = registry.load(options.kind, options.plugin, error);
  if (!s.plugin) {
    std::cerr << "nudge-conformance: error: " << error << "\n";
    return false;
  }
  s.schema = s.plugin->descriptor->schema();

  for (const auto& [key, text] : options.sets) {
    const ConfigField* field = s.schema.find(key);
    if (!field) {
      std::cerr << "nudge-conformance: error: --set " << key << ": " << to_string(options.kind) << " plugin '"
                << options.plugin << "' has no key '" << key << "'; its keys: " << schema_keys(s.schema) << "\n";
      return false;
    }
    ConfigValue value;
    if (!parse_value(*field, text, value, error)) {
      std::cerr << "nudge-conformance: error: --set " << key << "=" << text << ": " << error << " (the key is "
                << to_string(field->type) << ")\n";
      return false;
    }
    s.overrides[key] = std::move(value);
  }

  // Fresh names per run, so runs never see each other's rows or records.
  auto unset_string_key = [&](const char* key) {
    const ConfigField* field = s.schema.find(key);
    return field && field->type == ConfigType::string && !s.overrides.contains(key);
  };
  if (options.kind == PluginKind::sink) {
    if (unset_string_key("table"))
      s.overrides["table"] = "conf_" + std::to_string(::getpid()) + "_" + std::to_string(epoch_s);
    if (unset_string_key("path") && s.schema.find("path")->required()) {
      s.temp_file = std::filesystem::temp_directory_path() / ("nudge-conformance-" + s.run_id + ".db");
      s.overrides["path"] = s.temp_file.string();
    }
  }
  if (options.kind == PluginKind::log) {
    if (unset_string_key("topic")) s.per_case["topic"] = "nudge.conformance";
    if (unset_string_key("group_id")) s.per_case["group_id"] = "nudge-conformance";
  }

  // Checked once here, so a bad value is a usage error rather than N failures.
  auto values = s.overrides;
  for (const auto& [key, base] : s.per_case) values[key] = base + "." + s.run_id + "-case";
  (void)nudge::testing::make_config(s.schema, values, &error);
  if (!error.empty()) {
    std::cerr << "nudge-conformance: error: the config of " << to_string(options.kind) << " plugin '" << options.plugin
              << "' is not valid: " << error << "; its keys: " << schema_keys(s.schema) << "\n";
    return false;
  }

  if (!options.require_server.empty()) {
    if (!parse_server_address(options.require_server, s.server_host, s.server_port, error)) {
      std::cerr << "nudge-conformance: error: --require-server: " << error << "\n";
      return false;
    }
    if (!tcp_reachable(s.server_host, s.server_port, std::chrono::seconds(3)))
      s.unreachable = "nothing accepts connections at " + s.server_host + ":" + std::to_string(s.server_port) +
                      " (--require-server " + options.require_server +
                      "); start the plugin's server (for the "
                      "bundled plugins: scripts/services/<name> start) and run again";
  }

  std::cout << "nudge-conformance: " << to_string(options.kind) << " plugin '" << s.plugin->name() << "' "
            << s.plugin->descriptor->version << " from " << s.plugin->path.string() << "\n";
  for (const auto& [key, value] : values)
    std::cout << "  " << key << " = " << to_toml(value)
              << (s.per_case.contains(key) ? " (\"case\": the case's name)" : "") << "\n";
  if (!s.has_outage()) std::cout << "  no outage commands: the outage and restart cases are skipped\n";
  std::cout << std::flush;
  return true;
}

void remove_temp_files() {
  const auto& file = settings().temp_file;
  if (file.empty()) return;
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(file.string() + suffix, ec);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string error;
  const auto options = parse_options(args, error);
  if (!options) return usage_error(error);
  if (options->help) {
    std::cout << usage();
    return 0;
  }
  if (!configure(*options)) return kUsageError;
  settings().arguments = args;
  if (const char* member = std::getenv("NUDGE_CONFORMANCE_PRESENCE_MEMBER");
      member && options->kind == PluginKind::fanout)
    return run_fanout_member_process(member);

  switch (options->kind) {
    case PluginKind::fanout:
      register_fanout_cases();
      break;
    case PluginKind::sink:
      register_sink_cases();
      break;
    case PluginKind::log:
      register_log_cases();
      break;
    case PluginKind::source:
      return usage_error("there is no conformance suite for sources yet");
    case PluginKind::transform:
      return usage_error("there is no conformance suite for transforms yet");
  }
  const int result = RUN_ALL_TESTS();
  // Instances are gone (each case destroys its own); the library may go too.
  remove_temp_files();
  if (result == 0 && !settings().unreachable.empty()) {
    std::cout << "nudge-conformance: skipped: " << settings().unreachable << std::endl;
    return kSkippedNoServer;
  }
  return result;
}
