#include "engine/replay.hpp"

#include <cstdio>

namespace nudge::runtime {

Replay::Replay(boost::asio::io_context& io, PipelineSpec spec, MetricsRegistry& metrics, LogReplay range)
    : io_(io), spec_(std::move(spec)), metrics_(metrics), range_(std::move(range)) {}

Replay::~Replay() {
  // Instances go before the libraries that made them; the log first, it feeds the sink.
  sink_driver_.reset();
  if (log_) log_->instance.reset();
  if (sink_) sink_->instance.reset();
}

template <class Interface>
bool Replay::make_stage(const StageSpec& spec, std::optional<Stage<Interface>>& out) {
  auto context = std::make_unique<PluginContext>(io_.get_executor(), spec.key_path, metrics_,
                                                 spec_.settings.instance_id, spec_.settings.name);
  std::string error;
  Plugin* made = spec.library->descriptor->create(spec.config, *context, &error);
  if (!made) {
    logger_.error(spec.key_path, ": cannot create the plugin: ", error);
    return false;
  }
  out.emplace(Stage<Interface>{spec.key_path, spec.library, std::move(context),
                               std::unique_ptr<Interface>(static_cast<Interface*>(made))});
  return true;
}

bool Replay::create() {
  if (!make_stage(*spec_.sink, sink_) || !make_stage(*spec_.log, log_)) return false;
  sink_stats_ = std::make_unique<StageStats>(metrics_, sink_->key_path);
  sink_driver_ = std::make_unique<SinkDriver>(io_.get_executor(), *sink_->instance, spec_.sink_settings,
                                              sink_->context->logger(), *sink_stats_);
  return true;
}

Status Replay::start() {
  if (auto s = sink_->instance->start(); !s.ok()) return Status::error(s.code(), sink_->key_path + ": " + s.message());
  LogStartOptions options;
  options.consumer = this;
  options.max_batch_messages = static_cast<std::size_t>(spec_.sink_settings.batch_max_messages);
  if (auto s = log_->instance->start_replay(options, range_); !s.ok()) {
    sink_->instance->stop([] {});
    return Status::error(s.code(), log_->key_path + ": " + s.message());
  }
  started_ = true;
  if (!log_->instance->replay_progress()) {
    log_->instance->stop([] {});
    sink_->instance->stop([] {});
    return Status::error(StatusCode::internal, log_->key_path + ": started a replay but reports no progress");
  }
  return Status::success();
}

std::optional<ReplayProgress> Replay::progress() const {
  if (!started_) return std::nullopt;
  return log_->instance->replay_progress();
}

void Replay::on_batch(BatchPtr batch, Completion done) {
  sink_driver_->write_with_retry(std::move(batch), std::move(done));
}

void Replay::stop(std::function<void()> done) {
  if (!started_) return done();
  // The driver stops retrying first, so a consumer waiting on a dead sink
  // finishes its batch (uncommitted) and the log can stop.
  sink_driver_->shutdown([] {});
  log_->instance->stop([this, done] {
    logger_.info("stopped ", log_->key_path);
    sink_driver_->shutdown([this, done] { sink_->instance->stop(done); });
  });
}

std::int64_t Replay::sink_counter(const std::string& name) const {
  // The sinks' own counters (rows_inserted, rows_duplicate), by StageMetrics' naming.
  std::string prefix = "nudge_" + sink_->key_path;
  for (auto& c : prefix)
    if (c == '.' || c == '-') c = '_';
  const auto snapshot = metrics_.snapshot();
  const auto found = snapshot.find(prefix + "_" + name + "{stage=\"" + sink_->key_path + "\"}");
  return found == snapshot.end() ? -1 : found->second;
}

ReplayTotals Replay::totals() const {
  ReplayTotals t;
  if (!sink_stats_) return t;
  t.read = sink_stats_->out.value();
  t.inserted = sink_counter("rows_inserted");
  t.duplicates = sink_counter("rows_duplicate");
  return t;
}

std::string ReplayMeter::line(Clock::time_point now, const ReplayProgress& p) {
  char percent[16];
  std::snprintf(percent, sizeof percent, "%.1f%%",
                p.total > 0 ? 100.0 * static_cast<double>(p.done) / static_cast<double>(p.total) : 100.0);
  std::string text = std::to_string(p.done) + "/" + std::to_string(p.total) + " records (" + percent + "), " +
                     std::to_string(p.partitions) + " partitions (" + std::to_string(p.partitions_done) + " done)";
  if (last_) {
    const double elapsed = std::chrono::duration<double>(now - *last_).count();
    const double rate = elapsed > 0 ? static_cast<double>(p.done - last_done_) / elapsed : 0;
    // The ETA from the pace since the first line: one slow batch does not swing it.
    const double since_first = std::chrono::duration<double>(now - first_).count();
    const double pace = since_first > 0 ? static_cast<double>(p.done - first_done_) / since_first : 0;
    text += ", " + std::to_string(static_cast<std::int64_t>(rate)) + " rows/s, ETA " +
            (pace > 0 ? seconds_text(static_cast<double>(p.total - p.done) / pace) : std::string("unknown"));
  } else {
    first_ = now;
    first_done_ = p.done;
  }
  last_ = now;
  last_done_ = p.done;
  return text;
}

}  // namespace nudge::runtime
