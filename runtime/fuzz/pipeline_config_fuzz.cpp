// libFuzzer target: the TOML pipeline loader (load_pipeline_text, which
// load_pipeline calls with the file's text) on arbitrary text: TOML parsing,
// --set overrides, ${VAR} interpolation, then validation against the real
// plugins' schemas (their with_check validators run on fuzzed values too).
//
// Input: a pipeline file. Leading lines `#--set table.key=value` (TOML
// comments, so a seed stays a valid pipeline) are also passed as --set
// overrides, the way `nudge run --set` does. Variables come from a fixed table,
// never the environment, so a run is reproducible.
//
// Checks beyond "no crash, no leak, no uncaught exception": a spec is returned
// exactly when no diagnostic was reported, every diagnostic names a file, and
// a returned spec has a name, an instance id and one stage that can feed it.
// Seeds: corpus/ (the shipped pipelines/*.toml and edge cases); replayed by the
// unit test fuzz.pipeline_config.* in every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/pipeline_config.hpp"

namespace {

using namespace nudge::runtime;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "pipeline config fuzz: broken invariant: %s\n", what);
  std::abort();
}

const PluginRegistry& registry() {
  static const PluginRegistry instance({NUDGE_FUZZ_PLUGIN_DIR});
  return instance;
}

// Every plugin loaded once and held until exit: the loader's own dlopen() of
// a plugin per input then only bumps a reference count, instead of running
// the library's constructors and destructors (and slowing every input down).
void pin_plugins() {
  static std::vector<std::shared_ptr<LoadedPlugin>> pinned;
  for (const auto& file : registry().discover()) {
    std::string error;
    if (auto plugin = PluginRegistry::load_file(file.path, error)) pinned.push_back(std::move(plugin));
    else std::fprintf(stderr, "pipeline config fuzz: %s\n", error.c_str());
  }
  if (pinned.empty()) std::fprintf(stderr, "pipeline config fuzz: no plugins in %s\n", NUDGE_FUZZ_PLUGIN_DIR);
}

std::optional<std::string> variable(std::string_view name) {
  static const std::map<std::string, std::string, std::less<>> table = {
      {"NUDGE_LISTEN", "127.0.0.1:8081"},
      {"REDIS_URL", "redis://127.0.0.1:6379"},
      {"KAFKA_BROKERS", "127.0.0.1:9092"},
      {"DATABASE_URL", "postgresql://nudge:nudge@127.0.0.1:5432/nudge"},
      {"PORT", "9001"},
      {"BATCH", "12"},
      {"EMPTY", ""},
      {"DOLLAR", "$"},
      {"NESTED", "${PORT}"},  // values are not interpolated again
  };
  auto it = table.find(name);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pin_plugins();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  LoadOptions options;
  options.lookup = variable;
  constexpr std::string_view kSet = "#--set ";
  std::size_t at = 0;
  while (options.overrides.size() < 8 && text.substr(at).starts_with(kSet)) {
    const std::size_t end = text.find('\n', at);
    const std::size_t stop = end == std::string_view::npos ? text.size() : end;
    options.overrides.emplace_back(text.substr(at + kSet.size(), stop - at - kSet.size()));
    at = end == std::string_view::npos ? text.size() : end + 1;
  }

  Diagnostics diagnostics;
  const auto spec = load_pipeline_text(text, "fuzz.toml", "/pipelines", registry(), options, diagnostics);
  check(spec.has_value() == diagnostics.empty(), "a spec comes back exactly when nothing was reported");
  for (const auto& d : diagnostics.items())
    check(!d.file.empty() && !d.message.empty(), "a diagnostic says where and what");
  const std::string listing = diagnostics.to_string();
  check(diagnostics.empty() || !listing.empty(), "diagnostics print");
  if (spec) {
    check(!spec->settings.name.empty(), "a pipeline has a name");
    check(!spec->settings.instance_id.empty(), "a pipeline has an instance id");
    check(!spec->sources.empty() || (spec->log.has_value() && spec->sink.has_value()),
          "a pipeline has a source, or a log and a sink");
  }
  return 0;
}
