// `nudge validate PIPELINE.toml`: load and check a pipeline without connecting anywhere.
#include <iostream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "cli/commands.hpp"
#include "engine/metrics.hpp"
#include "engine/pipeline.hpp"
#include "engine/pipeline_config.hpp"
#include "engine/plugin_registry.hpp"

namespace nudge::runtime {

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
  std::string sources;
  for (const auto& source : spec->sources) sources += (sources.empty() ? "" : " + ") + source.key_path;
  if (!sources.empty()) stages.push_back(sources);
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

}  // namespace nudge::runtime
