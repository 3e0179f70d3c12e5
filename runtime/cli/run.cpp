// `nudge run PIPELINE.toml`: run a pipeline until SIGINT/SIGTERM, with its
// admin endpoint, reloads on SIGHUP and POST /reload.
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "cli/commands.hpp"
#include "engine/admin_server.hpp"
#include "engine/logging.hpp"
#include "engine/pipeline.hpp"
#include "engine/pipeline_config.hpp"
#include "engine/plugin_registry.hpp"

namespace nudge::runtime {

int cmd_run(const CommandLine& cl, const PluginRegistry& registry) {
  NamedLogger logger("runtime");
  Diagnostics diags;
  LoadOptions options;
  options.overrides = cl.overrides;
  auto spec = load_pipeline(cl.argument, registry, options, diags);
  if (!spec) {
    std::cerr << diags.to_string();
    std::cerr << "nudge: not starting: " << diags.items().size() << " error" << (diags.items().size() == 1 ? "" : "s")
              << " in " << cl.argument << "\n";
    return 1;
  }

  // Destruction order matters: the pipeline (plugin instances) goes first,
  // then the event loop with any handlers plugin code left in it, and only
  // then may the plugin libraries be unloaded.
  std::vector<std::shared_ptr<LoadedPlugin>> libraries;
  for (const auto& source : spec->sources) libraries.push_back(source.library);
  for (const auto* stage : {&spec->fanout, &spec->log, &spec->sink})
    if (*stage) libraries.push_back((*stage)->library);
  std::string fail_points_error;
  auto fail_points = FailPoints::from_environment(fail_points_error);
  if (!fail_points) {
    std::cerr << "nudge: not starting: NUDGE_FAILPOINTS: " << fail_points_error << "\n";
    return 1;
  }
  if (fail_points->any_armed())
    logger.warn("test-only fail points armed from NUDGE_FAILPOINTS='", std::getenv("NUDGE_FAILPOINTS"), "'");

  auto& output = LogOutput::instance();
  output.set_identity(spec->settings.name, spec->settings.instance_id);
  if (cl.log_format.empty()) output.set_format(*parse_log_format(spec->settings.log_format));

  MetricsRegistry metrics;
  metrics.set_common_labels({{"pipeline", spec->settings.name}, {"instance", spec->settings.instance_id}});
  metrics
      .gauge("nudge_build_info", "The running nudge's version and SDK ABI (value 1)",
             {{"version", NUDGE_VERSION}, {"abi", std::to_string(kAbiVersion)}})
      .set(1);
  metrics.gauge("nudge_process_start_time_seconds", "When this process started, in Unix seconds")
      .set(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
               .count());
  boost::asio::io_context io(1);
  const std::optional<AdminSettings> admin_settings = spec->admin;
  std::string admin_token;
  if (admin_settings)
    if (auto status = read_admin_token(*admin_settings, admin_token); !status.ok()) {
      std::cerr << "nudge: not starting: " << status.message() << "\n";
      return 1;
    }
  Pipeline pipeline(io, std::move(*spec), metrics);
  pipeline.set_fail_points(std::move(*fail_points));
  if (!pipeline.create()) return 1;

  // Reloading: the same file and --set overrides, read again; a refusal changes nothing.
  auto reload = [&](const char* why) -> std::pair<unsigned, std::string> {
    logger.info("reloading ", cl.argument, " (", why, ")");
    Diagnostics reload_diags;
    auto next = load_pipeline(cl.argument, registry, options, reload_diags);
    if (!next) {
      const std::string text = reload_diags.to_string();
      logger.error("reload refused: ", reload_diags.items().size(), " error(s) in ", cl.argument,
                   "; the running configuration stays:\n", text);
      return {400, "reload refused: " + std::to_string(reload_diags.items().size()) + " error(s) in " + cl.argument +
                       "; nothing changed\n" + text};
    }
    const std::string next_format = next->settings.log_format;
    const auto outcome = pipeline.reload(std::move(*next));
    if (!outcome.applied) {
      std::string text = "reload refused; nothing changed:\n";
      for (const auto& r : outcome.refusals) text += "  " + r + "\n";
      logger.error(text);
      return {409, text};
    }
    if (cl.log_format.empty()) LogOutput::instance().set_format(*parse_log_format(next_format));
    if (outcome.changes.empty()) {
      logger.info("reload: no changes");
      return {200, "reloaded: no changes\n"};
    }
    std::string text = "reloaded: " + std::to_string(outcome.changes.size()) + " change(s) applied:\n";
    for (const auto& c : outcome.changes) text += "  " + c + "\n";
    logger.info(text);
    return {200, text};
  };

  std::unique_ptr<AdminServer> admin;
  if (admin_settings) {
    AdminAccess access;
    access.token = std::move(admin_token);
    access.allowed_hosts = admin_settings->allowed_hosts;
    access.max_connections = admin_settings->max_connections;
    pipeline.taps().set_limits(
        {admin_settings->max_taps, admin_settings->tap_queue_bytes, admin_settings->tap_events_per_second});
    admin = std::make_unique<AdminServer>(io,
                                          AdminHandlers{[&metrics] { return metrics.prometheus(); },
                                                        [&pipeline] {
                                                          std::vector<std::string> lines;
                                                          for (const auto& n : pipeline.not_ready())
                                                            lines.push_back(n.stage + ": " + n.reason);
                                                          return lines;
                                                        },
                                                        [&reload](std::function<void(unsigned, std::string)> answer) {
                                                          auto [status, body] = reload("POST /reload");
                                                          answer(status, std::move(body));
                                                        },
                                                        &pipeline.taps()},
                                          std::move(access), metrics);
    // Before the stages start, so /healthz answers (and /readyz says "starting") during a slow start.
    if (auto status = admin->start(admin_settings->listen); !status.ok()) {
      std::cerr << "nudge: not starting: " << status.message() << "\n";
      return 1;
    }
  }
  // A server that resets a connection while a plugin writes to it must cost
  // that connection, not the process: hiredis writes with write(2), which
  // raises SIGPIPE (Asio, libpq and librdkafka avoid it on their own).
  std::signal(SIGPIPE, SIG_IGN);
  if (auto status = pipeline.start(); !status.ok()) {
    // Let stages that had started close cleanly before we exit.
    io.run_for(std::chrono::seconds(2));
    std::cerr << "nudge: not starting: " << status.message() << "\n";
    return 1;
  }

  boost::asio::signal_set hangups(io, SIGHUP);
  std::function<void(boost::system::error_code, int)> on_hangup = [&](boost::system::error_code ec, int) {
    if (ec) return;
    reload("SIGHUP");
    hangups.async_wait(on_hangup);
  };
  hangups.async_wait(on_hangup);

  int exit_code = 0;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (exit_code == -1) {
      logger.error("second signal: exiting without draining");
      std::_Exit(1);
    }
    logger.info("received ", sig == SIGINT ? "SIGINT" : "SIGTERM", "; shutting down");
    exit_code = -1;
    signals.async_wait(on_signal);
    hangups.cancel();
    pipeline.stop([&](bool drained) {
      exit_code = drained ? 0 : 1;
      signals.cancel();
      if (admin) admin->stop();
      io.stop();
    });
  };
  signals.async_wait(on_signal);
  io.run();
  logger.info("exited ", exit_code == 0 ? "cleanly" : "with messages not drained");
  return exit_code < 0 ? 1 : exit_code;
}

}  // namespace nudge::runtime
