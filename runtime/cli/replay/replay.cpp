// `nudge replay PIPELINE.toml`: read the log's history into the pipeline's
// sink in a consumer group of its own, with progress, then a summary.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cli/commands.hpp"
#include "cli/replay/replay_args.hpp"
#include "engine/logging.hpp"
#include "engine/pipeline_config.hpp"
#include "engine/plugin_registry.hpp"
#include "engine/replay.hpp"

namespace nudge::runtime {

namespace {

enum class Outcome {
  running,
  done,         ///< every partition read to its end: exit 0
  failed,       ///< the log cannot replay the range: exit 1
  interrupted,  ///< SIGINT/SIGTERM: what was written is committed; exit 130
};

std::string rate_text(std::uint64_t rows, double seconds) {
  return std::to_string(static_cast<std::uint64_t>(seconds > 0 ? static_cast<double>(rows) / seconds : 0));
}

}  // namespace

int cmd_replay(const CommandLine& cl, const PluginRegistry& registry) {
  std::string error;
  auto range =
      parse_replay_range(cl.replay.from, cl.replay.to, cl.replay.group, std::chrono::system_clock::now(), error);
  if (!range) {
    std::cerr << "nudge: " << error << "\n";
    return 2;
  }
  Diagnostics diags;
  LoadOptions options;
  options.overrides = cl.overrides;
  auto spec = load_pipeline(cl.argument, registry, options, diags);
  if (!spec) {
    std::cerr << diags.to_string();
    std::cerr << "nudge: not replaying: " << diags.items().size() << " error" << (diags.items().size() == 1 ? "" : "s")
              << " in " << cl.argument << "\n";
    return 1;
  }
  if (!spec->log || !spec->sink) {
    std::cerr << "nudge: not replaying: " << cl.argument << " has no "
              << (!spec->log ? "[log.*] table: there is no log to replay from"
                             : "[sink.*] table: there is no sink to replay into")
              << " (a replay needs both, as in pipelines/chat-persist.toml)\n";
    return 1;
  }
  // Destruction order: the replay (plugin instances), the loop, then the libraries.
  const std::vector<std::shared_ptr<LoadedPlugin>> libraries{spec->log->library, spec->sink->library};
  auto& output = LogOutput::instance();
  output.set_identity(spec->settings.name, spec->settings.instance_id);
  if (cl.log_format.empty()) output.set_format(*parse_log_format(spec->settings.log_format));
  NamedLogger logger("replay");
  MetricsRegistry metrics;
  boost::asio::io_context io(1);
  Replay replay(io, std::move(*spec), metrics, std::move(*range));
  if (!replay.create()) return 1;
  std::signal(SIGPIPE, SIG_IGN);
  const auto started = std::chrono::steady_clock::now();
  if (auto status = replay.start(); !status.ok()) {
    io.run_for(std::chrono::seconds(2));
    std::cerr << "nudge: not replaying: " << status.message() << "\n";
    return 1;
  }

  Outcome outcome = Outcome::running;
  bool stopping = false;
  ReplayProgress last;
  ReplayMeter meter;
  boost::asio::steady_timer ticker(io);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  auto finish = [&](Outcome why) {
    if (stopping) return;
    stopping = true;
    outcome = why;
    ticker.cancel();
    replay.stop([&] {
      signals.cancel();
      io.stop();
    });
  };
  // The end is looked for five times a second (the log decides it on its own
  // 200 ms tick); a progress line goes out once a second.
  auto next_line = std::chrono::steady_clock::now();
  std::function<void()> tick = [&] {
    const auto progress = replay.progress();
    if (progress) last = *progress;
    if (progress && progress->state == ReplayProgress::State::failed) return finish(Outcome::failed);
    if (progress && progress->state == ReplayProgress::State::done) return finish(Outcome::done);
    const auto now = std::chrono::steady_clock::now();
    if (!cl.replay.quiet && progress && progress->state == ReplayProgress::State::reading && now >= next_line) {
      std::cerr << "replay: " << meter.line(now, *progress) << std::endl;
      next_line = now + std::chrono::seconds(1);
    }
    ticker.expires_after(std::chrono::milliseconds(200));
    ticker.async_wait([&](boost::system::error_code ec) {
      if (!ec) tick();
    });
  };
  tick();
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int) {
    if (ec) return;
    if (stopping) {
      logger.error("second signal: exiting without committing");
      std::_Exit(130);
    }
    logger.info("interrupted; committing what the sink confirmed");
    signals.async_wait(on_signal);
    finish(Outcome::interrupted);
  };
  signals.async_wait(on_signal);
  io.run();

  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto totals = replay.totals();
  if (const auto progress = replay.progress()) last = *progress;
  if (outcome == Outcome::failed) {
    std::cerr << "nudge: replay failed: " << last.error << "\n";
    return 1;
  }
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f", elapsed);
  const std::string counted = totals.inserted >= 0
                                  ? std::to_string(totals.inserted) + " rows written, " +
                                        std::to_string(totals.duplicates) + " duplicates skipped (already stored)"
                                  : "rows written and duplicates not counted by " + replay.sink_key();
  std::cout << (outcome == Outcome::done ? "replay done: " : "replay interrupted: ") << totals.read
            << " messages read from " << replay.log_key() << " into " << replay.sink_key() << ", " << counted << ", in "
            << seconds << " s (" << rate_text(totals.read, elapsed) << " rows/s); " << last.done << "/" << last.total
            << " records of the range, group '" << last.group << "'\n";
  if (outcome == Outcome::interrupted) {
    std::cout << "resume with: nudge replay " << cl.argument << " --group " << last.group
              << " (and the same --set, --to)\n";
    return 130;
  }
  return 0;
}

}  // namespace nudge::runtime
