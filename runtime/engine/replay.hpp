#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "engine/pipeline.hpp"

namespace nudge::runtime {

/// What a replay did, for its summary.
struct ReplayTotals {
  std::uint64_t read = 0;       ///< messages handed to the sink and confirmed
  std::int64_t inserted = 0;    ///< rows the sink inserted
  std::int64_t duplicates = 0;  ///< rows it skipped: their id was stored already
};

/// `nudge replay`: the pipeline's log and sink alone, the log reading a
/// bounded range in a consumer group of its own (Log::start_replay),
/// the sink writing it in batches with retries as in a pipeline. The source,
/// fanout and transforms of the file are not made. Lives on one event loop.
class Replay final : private LogConsumer {
 public:
  /// `spec` must have a log and a sink (the command checks).
  Replay(boost::asio::io_context& io, PipelineSpec spec, MetricsRegistry& metrics, LogReplay range);
  ~Replay() override;

  /// Constructs the log and sink instances (no I/O); false after logging why.
  bool create();
  /// Starts the sink, then the log's replay. An error when either cannot,
  /// or when the log cannot replay at all.
  Status start();
  /// The log's progress; nullopt before start().
  std::optional<ReplayProgress> progress() const;
  /// Stops the log (it commits what the sink confirmed), then the sink.
  void stop(std::function<void()> done);

  ReplayTotals totals() const;
  const std::string& log_key() const { return spec_.log->key_path; }
  const std::string& sink_key() const { return spec_.sink->key_path; }

 private:
  // LogConsumer
  void on_batch(BatchPtr batch, Completion done) override;

  template <class Interface>
  bool make_stage(const StageSpec& spec, std::optional<Stage<Interface>>& out);
  std::int64_t sink_counter(const std::string& name) const;

  boost::asio::io_context& io_;
  PipelineSpec spec_;
  MetricsRegistry& metrics_;
  LogReplay range_;
  NamedLogger logger_{"replay"};
  std::unique_ptr<StageStats> sink_stats_;
  std::optional<Stage<Sink>> sink_;
  std::optional<Stage<Log>> log_;
  std::unique_ptr<SinkDriver> sink_driver_;
  bool started_ = false;
};

/// The progress line `nudge replay` prints about once a second:
/// "12000/20000 records (60.0%), 6 partitions (2 done), 8000 rows/s, ETA 1.0 s".
/// rows/s over the time since the previous line, the ETA at the pace since the first.
class ReplayMeter {
 public:
  using Clock = std::chrono::steady_clock;
  std::string line(Clock::time_point now, const ReplayProgress& progress);

 private:
  std::optional<Clock::time_point> last_;
  std::int64_t last_done_ = 0;
  Clock::time_point first_{};
  std::int64_t first_done_ = 0;
};

}  // namespace nudge::runtime
