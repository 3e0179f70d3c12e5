#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/diagnostics.hpp"
#include "engine/interpolate.hpp"
#include "engine/plugin_registry.hpp"
#include "nudge/sdk/config.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge::runtime {

/// One stage of a pipeline as the file describes it: `[sink.sqlite]`.
struct StageSpec {
  PluginKind kind = PluginKind::source;
  std::string plugin;    ///< the plugin's name (`sqlite`)
  std::string key_path;  ///< `sink.sqlite`, for logs and metrics
  std::shared_ptr<LoadedPlugin> library;
  Config config;  ///< validated, defaults applied
};

/// Runtime settings of the `[pipeline]` table.
struct PipelineSettings {
  std::string name;
  std::string instance_id;
  std::int64_t shutdown_grace_ms = 10000;
  std::int64_t max_in_flight = 10000;
  std::int64_t max_in_flight_bytes = 64 * 1024 * 1024;
  /// "durable": fan a message out once it is durable; "immediate": at once.
  std::string deliver = "durable";
  /// Whether ephemeral messages (kEphemeralHeader) are fanned out; false refuses them.
  bool ephemeral = true;
  /// Whether presence is kept (when the fanout supports it); false costs nothing per connection.
  bool presence = true;
  std::string log_format = "text";
  std::int64_t progress_interval_ms = 5000;
  std::int64_t backlog_threshold = 1000;
};

/// The `[admin]` table: where the admin HTTP endpoint listens and who may
/// use it.
struct AdminSettings {
  std::string listen;
  /// The bearer token that POST /reload needs, as written; empty with none
  /// or a token_file (resolved by read_admin_token).
  std::string token;
  std::string token_file;
  /// Host names a request may address besides IP literals, localhost and the listen host.
  std::vector<std::string> allowed_hosts;
  std::size_t max_connections = 16;
  /// GET /tap: taps attached at once, each one's queue in bytes and events per second.
  std::size_t max_taps = 2;
  std::size_t tap_queue_bytes = 1024 * 1024;
  std::size_t tap_events_per_second = 1000;
  Config config;
};

/// The admin token: `token`, or the contents of `token_file` less one
/// trailing newline (read now, at start). Empty when neither is set. An
/// unreadable or too short file is an error naming it.
Status read_admin_token(const AdminSettings& admin, std::string& token);

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
  /// In the order the file lists them, each plugin at most once: every one
  /// feeds the same transforms, log and sink, and each delivers to its own clients.
  std::vector<StageSpec> sources;
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

/// The `[admin]` table alone, with overrides and `${VAR}` applied, for a
/// client of the admin endpoint (`nudge reload PIPELINE`): no plugin is
/// loaded and the rest of the file is not checked. nullopt with
/// `diagnostics` on an error, or with none when the file has no `[admin]`.
std::optional<AdminSettings> load_admin_settings(const std::filesystem::path& file, const LoadOptions& options,
                                                 Diagnostics& diagnostics);

/// As load_pipeline, from TOML text (`display_name` is used in diagnostics).
std::optional<PipelineSpec> load_pipeline_text(std::string_view text, const std::string& display_name,
                                               const std::filesystem::path& base_dir, const PluginRegistry& registry,
                                               const LoadOptions& options, Diagnostics& diagnostics);

}  // namespace nudge::runtime
