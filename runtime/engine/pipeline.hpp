#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/backlog_progress.hpp"
#include "engine/fail_points.hpp"
#include "engine/in_flight_window.hpp"
#include "engine/logging.hpp"
#include "engine/pipeline_config.hpp"
#include "engine/sink_driver.hpp"
#include "engine/tap.hpp"
#include "nudge/sdk/export.hpp"

namespace nudge::runtime {

/// The Context a plugin instance is given.
class PluginContext final : public Context {
 public:
  PluginContext(boost::asio::any_io_executor executor, std::string key_path, MetricsRegistry& registry,
                std::string instance_id, std::string pipeline_name)
      : executor_(std::move(executor)),
        logger_(key_path),
        metrics_(registry, key_path),
        instance_id_(std::move(instance_id)),
        pipeline_name_(std::move(pipeline_name)) {}

  boost::asio::any_io_executor executor() const override { return executor_; }
  Logger& logger() override { return logger_; }
  Metrics& metrics() override { return metrics_; }
  std::string_view instance_id() const override { return instance_id_; }
  std::string_view pipeline_name() const override { return pipeline_name_; }

 private:
  boost::asio::any_io_executor executor_;
  NamedLogger logger_;
  StageMetrics metrics_;
  std::string instance_id_;
  std::string pipeline_name_;
};

/// A running plugin instance, with the library that made it.
template <class Interface>
struct Stage {
  std::string key_path;
  std::shared_ptr<LoadedPlugin> library;  // declared first: destroyed after the instance
  std::unique_ptr<PluginContext> context;
  std::unique_ptr<Interface> instance;
};

/// One stage that is not ready, and why (`/readyz`).
struct NotReady {
  std::string stage;
  std::string reason;
};

/// What a reload did: the changes applied, or why none was.
struct ReloadOutcome {
  bool applied = false;
  /// `sink.postgres.batch_max_messages: 500 -> 1000`, one per changed key.
  std::vector<std::string> changes;
  /// Why the reload was refused, one line per key (nothing was applied).
  std::vector<std::string> refusals;
};

/// Wires the stages of a pipeline and moves messages between them:
/// source → (fanout, log | sink) and log → sink, with acknowledgements,
/// backpressure and a graceful, draining stop. Lives on one event loop.
class Pipeline final : private FanoutReceiver, private LogConsumer {
 public:
  Pipeline(boost::asio::io_context& io, PipelineSpec spec, MetricsRegistry& metrics);
  ~Pipeline() override;

  /// Constructs every plugin instance (no I/O). Returns false and logs why if
  /// a plugin refused its config.
  bool create();

  /// Starts the stages, downstream first, so nothing is taken in before
  /// there is somewhere to put it. On failure logs the stage and reason,
  /// stops what had started, and returns the error.
  Status start();

  /// Graceful stop: stop intake, wait (up to the grace period) for every
  /// message in flight to become durable and be acknowledged, then stop the
  /// stages upstream first. `done(true)` when everything drained.
  void stop(std::function<void(bool drained)> done);

  /// Arms the test-only fail points (fail_points.hpp). Call before start().
  void set_fail_points(FailPoints points) { fail_points_ = std::move(points); }

  const PipelineSpec& spec() const noexcept { return spec_; }

  /// The stages not ready now (empty when all are): not started, a plugin's
  /// own Plugin::readiness(), a sink whose writes keep failing, a source held
  /// back by a full in-flight window. Cheap; call on the loop.
  std::vector<NotReady> not_ready() const;

  /// Applies a newly loaded spec of the same pipeline file: live keys go to
  /// the stages (Plugin::reconfigure) and the runtime's own settings; any
  /// change that needs a restart refuses the whole reload, naming the key.
  ReloadOutcome reload(PipelineSpec next);
  /// Where clients' history and catching up come from, in a sentence (or
  /// why there is none); empty when the pipeline has no source. After create().
  std::string history_note() const;
  std::size_t in_flight() const noexcept { return window_.in_flight(); }
  /// Where GET /tap attaches; messages are offered to it at each stage.
  TapRegistry& taps() noexcept { return taps_; }
  std::size_t bytes_in_flight() const noexcept { return window_.bytes_in_flight(); }

 private:
  /// The Ingress one source is given: its intake counted under its own
  /// stage, its room interest merged with the other sources'.
  class SourceIngress;
  /// A running source, with what it publishes through.
  struct SourceStage {
    Stage<Source> stage;
    StageStats* stats = nullptr;
    std::unique_ptr<SourceIngress> ingress;
  };

  // What every SourceIngress forwards to.
  /// A message from sources_[source].
  void publish(std::size_t source, MessagePtr message, Completion on_durable);
  void when_ready(std::function<void()> resume);
  /// `source` (an index into sources_) wants `room` or no longer does; the
  /// fanout hears of the union over all sources.
  void set_room_interest(std::size_t source, std::string_view room, bool interested);
  bool has_history() const;
  void read_history(HistoryQuery query, HistoryHandler done);
  // Presence (pipeline_presence.cpp): every source's joins go to the one fanout.
  bool has_presence() const;
  void presence_join(std::string_view room, std::string_view user, std::string_view connection);
  void presence_leave(std::string_view room, std::string_view user, std::string_view connection);
  void read_presence(std::string_view room, PresenceHandler done);
  // FanoutReceiver
  void on_fanout_message(MessagePtr message) override;
  void on_presence(std::string_view room, const PresenceEvent& event) override;
  // LogConsumer
  void on_batch(BatchPtr batch, Completion done) override;

  /// Where and when a message was taken in.
  struct Intake {
    StageStats* source;
    std::chrono::steady_clock::time_point at;
  };

  template <class Interface>
  bool make_stage(const std::optional<StageSpec>& spec, std::optional<Stage<Interface>>& out);
  /// Runs the message through transforms_[index...], then admit().
  void transform(std::size_t index, MessagePtr message, Completion on_durable, Intake intake);
  /// Takes a message in: the in-flight window, the fanout, the log or sink.
  void admit(MessagePtr message, Completion on_durable, Intake intake);
  /// A sender is answered: the intake-to-answer time, and a failure counted
  /// against the source it came from.
  void answered(const Intake& intake, const Status& status);
  /// An ephemeral message (kEphemeralHeader): to the fanout only, answered once handed to it, or
  /// refused when the pipeline turned ephemeral messages off.
  void admit_ephemeral(MessagePtr message, Completion on_durable, Intake intake);
  /// Hands a message to every client that should see it: through the fanout
  /// when there is one, else straight to the local sources.
  void deliver(const MessagePtr& message);
  /// Hands a message to the local sources: the only one, or each of several that wants its room.
  void deliver_locally(const MessagePtr& message);
  void stop_stages(std::function<void()> done);
  StageStats& stats_for(const std::string& key_path);
  /// Once a second: readiness gauges, consumer lag, and progress lines while a backlog drains.
  void on_tick();
  void report_progress(std::int64_t lag);
  bool sink_keeps_history() const;
  /// The sink's answer to `query`, merged with `window` (the fanout's recent messages).
  void read_stored_history(HistoryQuery query, std::vector<MessagePtr> window, HistoryHandler done);

  boost::asio::io_context& io_;
  PipelineSpec spec_;
  MetricsRegistry& metrics_;
  NamedLogger logger_{"runtime"};
  InFlightWindow window_;
  bool deliver_when_durable_ = true;
  bool stopping_ = false;
  FailPoints fail_points_;
  Counter& messages_in_;
  Counter& messages_acked_;
  Counter& messages_failed_;
  Counter& messages_ephemeral_;
  Counter& messages_ephemeral_refused_;
  Counter& fanout_received_;
  Counter& messages_dropped_;
  Counter& messages_rejected_;
  Counter& history_reads_;
  Counter& history_from_window_;
  Counter& history_failures_;
  Gauge& in_flight_bytes_;
  Histogram& ingest_to_ack_;
  Histogram& ingest_to_persisted_;
  TapRegistry taps_;
  Gauge* consumer_lag_ = nullptr;  // with a log feeding a sink
  std::map<std::string, std::unique_ptr<StageStats>> stage_stats_;
  StageStats* fanout_stats_ = nullptr;
  StageStats* log_stats_ = nullptr;
  std::vector<StageStats*> transform_stats_;
  bool started_ = false;
  bool sink_was_ready_ = true;

  boost::asio::steady_timer tick_timer_;
  // When the in-flight window was last seen with room; a source stalls behind a full one.
  std::chrono::steady_clock::time_point window_had_room_ = std::chrono::steady_clock::now();
  BacklogProgress backlog_;

  std::optional<Stage<Sink>> sink_;
  std::optional<Stage<Log>> log_;
  std::optional<Stage<Fanout>> fanout_;
  std::vector<SourceStage> sources_;
  /// With several sources: how many of them want each room (a room is in
  /// the map while at least one does).
  std::map<std::string, std::size_t, std::less<>> room_interest_;
  std::vector<Stage<Transform>> transforms_;
  std::unique_ptr<SinkDriver> sink_driver_;
  std::unique_ptr<PluginContext> sink_driver_context_;
  boost::asio::steady_timer grace_timer_;
};

}  // namespace nudge::runtime
