#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "diagnostics.hpp"
#include "interpolate.hpp"
#include "nudge/sdk/config.hpp"
#include "plugin_registry.hpp"

namespace nudge::runtime {

/// One stage of a pipeline as the file describes it: `[sink.sqlite]`.
struct StageSpec {
  PluginKind kind = PluginKind::source;
  std::string plugin;      ///< the plugin's name (`sqlite`)
  std::string key_path;    ///< `sink.sqlite`, for logs and metrics
  std::shared_ptr<LoadedPlugin> library;
  Config config;           ///< validated, defaults applied
};

/// Runtime settings of the `[pipeline]` table.
struct PipelineSettings {
  std::string name;
  std::string instance_id;
  std::int64_t shutdown_grace_ms = 10000;
  std::int64_t max_in_flight = 10000;
  /// "durable": fan a message out once it is durable; "immediate": at once.
  std::string deliver = "durable";
  std::string log_format = "text";
  std::int64_t progress_interval_ms = 5000;
  std::int64_t backlog_threshold = 1000;
};

/// The `[admin]` table: where the admin HTTP endpoint listens.
struct AdminSettings {
  std::string listen;
  Config config;
};

/// Runtime settings that live in the sink's table (the runtime does the batching).
struct SinkSettings {
  std::int64_t batch_max_messages = 500;
  std::int64_t batch_linger_ms = 5;
  std::int64_t retry_initial_ms = 100;
  std::int64_t retry_max_ms = 5000;
};

/// A loaded, validated pipeline file.
struct PipelineSpec {
  std::filesystem::path file;
  PipelineSettings settings;
  /// The `[pipeline]` table as written (before defaults were resolved), for reloads.
  Config pipeline_config;
  /// Absent without an `[admin]` table: no endpoint.
  std::optional<AdminSettings> admin;
  SinkSettings sink_settings;
  std::optional<StageSpec> source;
  /// In the order the file lists them: a message passes through each in turn.
  std::vector<StageSpec> transforms;
  std::optional<StageSpec> fanout;
  std::optional<StageSpec> log;
  std::optional<StageSpec> sink;
};

struct LoadOptions {
  /// `--set table.key=value` overrides, applied before validation.
  std::vector<std::string> overrides;
  /// Where `${VAR}` values come from; the environment by default.
  VariableLookup lookup = environment_variable;
};

/// The schema of the `[pipeline]` table.
const ConfigSchema& pipeline_schema();
/// The schema of the `[admin]` table.
const ConfigSchema& admin_schema();
/// Keys the runtime adds to every sink's table (batching and retries).
const ConfigSchema& sink_runtime_schema();
/// A plugin's own schema plus the keys the runtime adds for its kind.
ConfigSchema effective_schema(const LoadedPlugin& plugin);

/// Parses `file`, applies overrides and `${VAR}` interpolation, loads each
/// stage's plugin and validates its table against the plugin's schema. Every
/// problem goes to `diagnostics`; returns nullopt if there was any.
/// Does no I/O besides reading the file and loading plugin libraries.
std::optional<PipelineSpec> load_pipeline(const std::filesystem::path& file, const PluginRegistry& registry,
                                          const LoadOptions& options, Diagnostics& diagnostics);

/// As load_pipeline, from TOML text (`display_name` is used in diagnostics).
std::optional<PipelineSpec> load_pipeline_text(std::string_view text, const std::string& display_name,
                                               const std::filesystem::path& base_dir,
                                               const PluginRegistry& registry, const LoadOptions& options,
                                               Diagnostics& diagnostics);

}  // namespace nudge::runtime
