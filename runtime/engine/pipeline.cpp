#include "engine/pipeline.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include <boost/asio/post.hpp>

#include "engine/history_merge.hpp"

namespace nudge::runtime {

class Pipeline::SourceIngress final : public Ingress {
 public:
  SourceIngress(Pipeline& pipeline, std::size_t index) : pipeline_(pipeline), index_(index) {}

  void publish(MessagePtr message, Completion on_durable) override {
    pipeline_.publish(index_, std::move(message), std::move(on_durable));
  }
  void when_ready(std::function<void()> resume) override { pipeline_.when_ready(std::move(resume)); }
  void set_room_interest(std::string_view room, bool interested) override {
    pipeline_.set_room_interest(index_, room, interested);
  }
  bool has_history() const override { return pipeline_.has_history(); }
  void read_history(HistoryQuery query, HistoryHandler done) override {
    pipeline_.read_history(std::move(query), std::move(done));
  }
  bool has_presence() const override { return pipeline_.has_presence(); }
  void presence_join(std::string_view room, std::string_view user, std::string_view connection) override {
    pipeline_.presence_join(room, user, connection);
  }
  void presence_leave(std::string_view room, std::string_view user, std::string_view connection) override {
    pipeline_.presence_leave(room, user, connection);
  }
  void read_presence(std::string_view room, PresenceHandler done) override {
    pipeline_.read_presence(room, std::move(done));
  }

  /// The rooms this source said it wants (kept only with several sources).
  std::set<std::string, std::less<>> rooms;

 private:
  Pipeline& pipeline_;
  std::size_t index_;
};

Pipeline::Pipeline(boost::asio::io_context& io, PipelineSpec spec, MetricsRegistry& metrics)
    : io_(io),
      spec_(std::move(spec)),
      metrics_(metrics),
      window_(io.get_executor(), static_cast<std::size_t>(spec_.settings.max_in_flight),
              static_cast<std::size_t>(spec_.settings.max_in_flight_bytes)),
      deliver_when_durable_(spec_.settings.deliver == "durable"),
      messages_in_(metrics.counter("nudge_pipeline_messages_in", "Messages taken in (after transforms)")),
      messages_acked_(
          metrics.counter("nudge_pipeline_messages_acked", "Messages acknowledged to their senders as durable")),
      messages_failed_(metrics.counter("nudge_pipeline_messages_failed", "Messages whose sender was told they failed")),
      messages_ephemeral_(metrics.counter("nudge_pipeline_messages_ephemeral",
                                          "Ephemeral messages fanned out (never logged or stored)")),
      messages_ephemeral_refused_(metrics.counter("nudge_pipeline_messages_ephemeral_refused",
                                                  "Ephemeral messages refused: [pipeline] ephemeral = false")),
      fanout_received_(metrics.counter("nudge_pipeline_fanout_received", "Messages received from the fanout")),
      messages_dropped_(metrics.counter("nudge_pipeline_messages_dropped", "Messages a transform dropped")),
      messages_rejected_(metrics.counter("nudge_pipeline_messages_rejected", "Messages a transform rejected")),
      history_reads_(metrics.counter("nudge_pipeline_history_reads", "History reads for clients")),
      history_from_window_(metrics.counter("nudge_pipeline_history_from_window",
                                           "History reads answered from the fanout's recent window")),
      history_failures_(metrics.counter("nudge_pipeline_history_failures", "History reads that failed")),
      in_flight_bytes_(metrics.gauge("nudge_pipeline_in_flight_bytes",
                                     "Bytes of the messages taken in but not yet durable, as max_in_flight_bytes "
                                     "counts them")),
      ingest_to_ack_(metrics.histogram("nudge_ingest_to_ack_seconds",
                                       "From a message's intake to its sender's acknowledgement (durable or refused)",
                                       latency_buckets())),
      ingest_to_persisted_(metrics.histogram("nudge_ingest_to_persisted_seconds",
                                             "From a message's intake (its timestamp) to its write by the sink",
                                             latency_buckets())),
      taps_(metrics),
      tick_timer_(io),
      grace_timer_(io) {}

Pipeline::~Pipeline() {
  // Instances go before the libraries that made them, upstream first.
  sink_driver_.reset();
  for (auto& s : sources_) s.stage.instance.reset();
  for (auto& t : transforms_) t.instance.reset();
  if (fanout_) fanout_->instance.reset();
  if (log_) log_->instance.reset();
  if (sink_) sink_->instance.reset();
}

template <class Interface>
bool Pipeline::make_stage(const std::optional<StageSpec>& spec, std::optional<Stage<Interface>>& out) {
  if (!spec) return true;
  auto context = std::make_unique<PluginContext>(io_.get_executor(), spec->key_path, metrics_,
                                                 spec_.settings.instance_id, spec_.settings.name);
  std::string error;
  Plugin* made = spec->library->descriptor->create(spec->config, *context, &error);
  if (!made) {
    logger_.error(spec->key_path, ": cannot create the plugin: ", error);
    return false;
  }
  // The descriptor's kind was checked on load; the export macro guarantees
  // the object derives from that kind's interface.
  out.emplace(Stage<Interface>{spec->key_path, spec->library, std::move(context),
                               std::unique_ptr<Interface>(static_cast<Interface*>(made))});
  stats_for(spec->key_path);
  return true;
}

StageStats& Pipeline::stats_for(const std::string& key_path) {
  auto& slot = stage_stats_[key_path];
  if (!slot) slot = std::make_unique<StageStats>(metrics_, key_path);
  return *slot;
}

bool Pipeline::create() {
  if (!make_stage(spec_.sink, sink_) || !make_stage(spec_.log, log_) || !make_stage(spec_.fanout, fanout_))
    return false;
  for (const auto& t : spec_.transforms) {
    std::optional<Stage<Transform>> made;
    if (!make_stage(std::optional<StageSpec>(t), made)) return false;
    transforms_.push_back(std::move(*made));
  }
  for (const auto& spec : spec_.sources) {
    std::optional<Stage<Source>> made;
    if (!make_stage(std::optional<StageSpec>(spec), made)) return false;
    StageStats& stats = stats_for(made->key_path);
    auto ingress = std::make_unique<SourceIngress>(*this, sources_.size());
    sources_.push_back(SourceStage{std::move(*made), &stats, std::move(ingress)});
  }
  if (sink_) {
    sink_driver_ =
        std::make_unique<SinkDriver>(io_.get_executor(), *sink_->instance, spec_.sink_settings,
                                     sink_->context->logger(), stats_for(sink_->key_path), &ingest_to_persisted_);
  }
  if (fanout_) fanout_stats_ = &stats_for(fanout_->key_path);
  if (log_) log_stats_ = &stats_for(log_->key_path);
  if (log_ && sink_)
    consumer_lag_ = &metrics_.gauge("nudge_log_consumer_lag",
                                    "Messages in the log not yet written by this instance's consumer (its partitions)",
                                    {{"stage", log_->key_path}});
  for (const auto& t : transforms_) transform_stats_.push_back(&stats_for(t.key_path));
  return true;
}

Status Pipeline::start() {
  std::vector<std::function<void(std::function<void()>)>> started;
  auto fail = [&](const std::string& stage, const Status& status) {
    logger_.error(stage, ": failed to start: ", status.message());
    // Stop what had started, newest first; their stop completes asynchronously.
    for (auto it = started.rbegin(); it != started.rend(); ++it) (*it)([] {});
    return Status::error(status.code(), stage + ": " + status.message());
  };
  if (sink_) {
    if (auto s = sink_->instance->start(); !s.ok()) return fail(sink_->key_path, s);
    started.push_back([this](auto done) { sink_->instance->stop(std::move(done)); });
  }
  if (log_) {
    LogStartOptions options;
    options.produce = !sources_.empty();
    options.consumer = sink_ ? static_cast<LogConsumer*>(this) : nullptr;
    options.max_batch_messages = static_cast<std::size_t>(spec_.sink_settings.batch_max_messages);
    if (auto s = log_->instance->start(options); !s.ok()) return fail(log_->key_path, s);
    started.push_back([this](auto done) { log_->instance->stop(std::move(done)); });
  }
  if (fanout_) {
    if (auto s = fanout_->instance->start(*this); !s.ok()) return fail(fanout_->key_path, s);
    started.push_back([this](auto done) { fanout_->instance->stop(std::move(done)); });
  }
  for (auto& t : transforms_) {
    if (auto s = t.instance->start(); !s.ok()) return fail(t.key_path, s);
    started.push_back([&t](auto done) { t.instance->stop(std::move(done)); });
  }
  for (auto& source : sources_) {
    if (auto s = source.stage.instance->start(*source.ingress); !s.ok()) return fail(source.stage.key_path, s);
    started.push_back([&source](auto done) { source.stage.instance->stop(std::move(done)); });
  }
  std::string shape;
  for (const auto& source : spec_.sources) shape += (shape.empty() ? "" : " + ") + source.key_path;
  for (const auto& t : spec_.transforms) shape += " -> " + t.key_path;
  for (const auto* stage : {&spec_.fanout, &spec_.log, &spec_.sink})
    if (*stage) shape += (shape.empty() ? "" : " -> ") + (*stage)->key_path;
  logger_.info("pipeline '", spec_.settings.name, "' started as instance '", spec_.settings.instance_id, "': ", shape);
  if (const auto note = history_note(); !note.empty()) logger_.info(note);
  started_ = true;
  on_tick();
  return Status::success();
}

void Pipeline::publish(std::size_t source, MessagePtr message, Completion on_durable) {
  SourceStage& from = sources_[source];
  from.stats->in.add();
  // Each source's own messages not yet answered: which source a full window comes from.
  from.stats->queue_depth.add(1);
  if (taps_.active()) taps_.record(TapPoint::source_accepted, from.stage.key_path, *message);
  const Intake intake{from.stats, std::chrono::steady_clock::now()};
  if (transforms_.empty()) return admit(std::move(message), std::move(on_durable), intake);
  transform(0, std::move(message), std::move(on_durable), intake);
}

void Pipeline::answered(const Intake& intake, const Status& status) {
  ingest_to_ack_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - intake.at).count());
  intake.source->queue_depth.add(-1);
  if (!status.ok()) intake.source->errors.add();
}

void Pipeline::transform(std::size_t index, MessagePtr message, Completion on_durable, Intake intake) {
  if (index == transforms_.size()) return admit(std::move(message), std::move(on_durable), intake);
  transform_stats_[index]->in.add();
  // Kept only for a tap: a dropped or rejected message comes back in no verdict.
  MessagePtr tapped = taps_.active() ? message : nullptr;
  transforms_[index].instance->process(std::move(message), [this, index, intake, tapped = std::move(tapped),
                                                            on_durable =
                                                                std::move(on_durable)](Verdict verdict) mutable {
    if (taps_.active() && (verdict.message || tapped)) {
      const auto point = verdict.action == Verdict::Action::pass   ? TapPoint::transform_passed
                         : verdict.action == Verdict::Action::drop ? TapPoint::transform_dropped
                                                                   : TapPoint::transform_rejected;
      taps_.record(point, transforms_[index].key_path, verdict.message ? *verdict.message : *tapped, verdict.reason);
    }
    // The sender hears of a drop or a reject from the loop, never inside the source's own call.
    auto answer = [this, intake, &on_durable](Status status) {
      boost::asio::post(io_, [this, intake, on_durable = std::move(on_durable), status = std::move(status)] {
        answered(intake, status);
        on_durable(status);
      });
    };
    switch (verdict.action) {
      case Verdict::Action::pass:
        if (!verdict.message) {
          messages_rejected_.add();
          transform_stats_[index]->errors.add();
          return answer(Status::error(StatusCode::internal, transforms_[index].key_path + " passed no message"));
        }
        transform_stats_[index]->out.add();
        return transform(index + 1, std::move(verdict.message), std::move(on_durable), intake);
      case Verdict::Action::drop:
        messages_dropped_.add();
        transform_stats_[index]->dropped.add();
        return answer(Status::success());
      case Verdict::Action::reject:
        messages_rejected_.add();
        transform_stats_[index]->errors.add();
        return answer(Status::error(StatusCode::rejected, verdict.reason));
    }
  });
}

void Pipeline::admit_ephemeral(MessagePtr message, Completion on_durable, Intake intake) {
  Status status = Status::success();
  if (spec_.settings.ephemeral) {
    messages_ephemeral_.add();
    // Nothing durable to wait for, so nothing held in the in-flight window: the fanout's own
    // queue (its max_pending_publishes) bounds what waits for the bus.
    deliver(message);
  } else {
    messages_ephemeral_refused_.add();
    status = Status::error(StatusCode::rejected, "ephemeral messages are off in this pipeline");
  }
  // As a transform's answer: the sender hears from the loop, never inside its own call.
  boost::asio::post(io_, [this, intake, on_durable = std::move(on_durable), status = std::move(status)] {
    answered(intake, status);
    on_durable(status);
  });
}

void Pipeline::admit(MessagePtr message, Completion on_durable, Intake intake) {
  if (is_ephemeral(*message)) return admit_ephemeral(std::move(message), std::move(on_durable), intake);
  messages_in_.add();
  // Counted as admitted: a transform may have changed it since the source read it.
  const std::size_t bytes = in_flight_bytes(*message);
  window_.acquire(bytes);
  if (!deliver_when_durable_) deliver(message);
  auto finish = [this, message, bytes, intake, on_durable = std::move(on_durable)](Status status) {
    window_.release(bytes);
    if (log_) {
      log_stats_->queue_depth.add(-1);
      if (!status.ok()) log_stats_->errors.add();
    }
    if (taps_.active()) {
      if (log_)
        taps_.record(status.ok() ? TapPoint::log_appended : TapPoint::log_append_failed, log_->key_path, *message,
                     status.ok() ? std::string_view() : std::string_view(status.message()));
      else if (sink_ && status.ok()) taps_.record(TapPoint::sink_written, sink_->key_path, *message);
    }
    if (status.ok()) {
      messages_acked_.add();
      if (deliver_when_durable_) deliver(message);
    } else {
      messages_failed_.add();
    }
    answered(intake, status);
    on_durable(std::move(status));
  };
  if (log_) {
    log_stats_->in.add();
    log_stats_->queue_depth.add(1);
    log_->instance->append(message, std::move(finish));
  } else if (sink_driver_) {
    sink_driver_->enqueue(std::move(message), std::move(finish));
  } else {
    // A pure relay: nothing durable to wait for.
    boost::asio::post(io_, [finish = std::move(finish)]() mutable { finish(Status::success()); });
  }
}

void Pipeline::deliver(const MessagePtr& message) {
  if (fanout_) {
    fanout_stats_->out.add();
    if (taps_.active()) taps_.record(TapPoint::fanout_published, fanout_->key_path, *message);
    fanout_->instance->publish(message);
  } else {
    deliver_locally(message);
  }
}

void Pipeline::deliver_locally(const MessagePtr& message) {
  // With several sources each gets the rooms it said it wants, as from a
  // fanout with a channel per room: a source without clients there (http)
  // is neither handed the message nor counted or tapped as delivering it.
  const bool several = sources_.size() > 1;
  for (auto& source : sources_) {
    if (several && !source.ingress->rooms.contains(message->room)) continue;
    source.stats->out.add();
    if (taps_.active()) taps_.record(TapPoint::source_delivered, source.stage.key_path, *message);
    source.stage.instance->deliver(message);
  }
}

void Pipeline::on_presence(std::string_view room, const PresenceEvent& event) {
  // As deliver_locally: with several sources, only those that want the room.
  const bool several = sources_.size() > 1;
  for (auto& source : sources_) {
    if (several && !source.ingress->rooms.contains(room)) continue;
    source.stage.instance->deliver_presence(room, event);
  }
}

void Pipeline::when_ready(std::function<void()> resume) { window_.when_ready(std::move(resume)); }

void Pipeline::set_room_interest(std::size_t source, std::string_view room, bool interested) {
  if (sources_.size() == 1) {
    if (fanout_) fanout_->instance->set_room_interest(room, interested);
    return;
  }
  // The fanout hears only of the first source to want a room and the last to stop.
  auto& rooms = sources_[source].ingress->rooms;
  if (interested) {
    if (!rooms.emplace(room).second) return;
    const auto it = room_interest_.try_emplace(std::string(room), 0).first;
    if (it->second++ == 0 && fanout_) fanout_->instance->set_room_interest(room, true);
  } else {
    const auto mine = rooms.find(room);
    if (mine == rooms.end()) return;
    rooms.erase(mine);
    const auto it = room_interest_.find(room);
    if (it == room_interest_.end()) return;
    if (--it->second == 0) {
      room_interest_.erase(it);
      if (fanout_) fanout_->instance->set_room_interest(room, false);
    }
  }
}

bool Pipeline::has_history() const { return sink_keeps_history() || (fanout_ && fanout_->instance->supports_recent()); }

bool Pipeline::sink_keeps_history() const { return sink_ && sink_->instance->supports_history(); }

std::string Pipeline::history_note() const {
  if (sources_.empty()) return {};
  const bool window = fanout_ && fanout_->instance->supports_recent();
  const std::string no_sink = sink_ ? sink_->key_path + " keeps no history" : "this pipeline has no sink";
  if (sink_keeps_history())
    return "history: from " + sink_->key_path + (window ? " and the recent window of " + fanout_->key_path : "") +
           " (clients get a room's recent messages on joining and catch up after reconnecting)";
  if (window)
    return "history: from the recent window of " + fanout_->key_path + " alone (" + no_sink +
           "); clients get a room's recent messages on joining and catch up only on what the window still holds";
  return "history: none, " + no_sink +
         "; clients joining a room get no past messages and cannot catch up after reconnecting";
}

void Pipeline::read_history(HistoryQuery query, HistoryHandler done) {
  history_reads_.add();
  // Answers are posted: a source never sees its handler run inside its own call.
  auto answer = [this, done = std::move(done)](Status status, std::vector<MessagePtr> messages) {
    if (!status.ok()) history_failures_.add();
    boost::asio::post(io_, [done, status = std::move(status), messages = std::move(messages)]() mutable {
      done(std::move(status), std::move(messages));
    });
  };
  if (fanout_ && fanout_->instance->supports_recent()) {
    fanout_->instance->read_recent(query, [this, query, answer](Status status, std::vector<MessagePtr> window) {
      if (status.ok()) {
        if (auto enough = answer_from_window(query, window)) {
          history_from_window_.add();
          return answer(Status::success(), std::move(*enough));
        }
      } else {
        logger_.debug("recent window of ", fanout_->key_path, " unreadable (", status.message(),
                      "); reading history from the sink alone");
        window.clear();
      }
      if (!sink_keeps_history()) return answer(Status::success(), merge_history(query, {}, window));
      read_stored_history(query, std::move(window), answer);
    });
    return;
  }
  if (!sink_keeps_history())
    return answer(Status::error(StatusCode::invalid_argument, "this pipeline keeps no history"), {});
  read_stored_history(std::move(query), {}, std::move(answer));
}

void Pipeline::read_stored_history(HistoryQuery query, std::vector<MessagePtr> window, HistoryHandler done) {
  sink_->instance->read_history(query, [query, window = std::move(window), done = std::move(done)](
                                           Status status, std::vector<MessagePtr> stored) {
    if (!status.ok()) return done(std::move(status), {});
    done(Status::success(), merge_history(query, std::move(stored), window));
  });
}

void Pipeline::on_fanout_message(MessagePtr message) {
  fanout_received_.add();
  if (fanout_stats_) fanout_stats_->in.add();
  if (taps_.active() && fanout_) taps_.record(TapPoint::fanout_received, fanout_->key_path, *message);
  deliver_locally(message);
}

void Pipeline::on_batch(BatchPtr batch, Completion done) {
  if (!sink_driver_) {
    done(Status::error(StatusCode::internal, "no sink"));
    return;
  }
  if (log_stats_) {
    log_stats_->out.add(batch->size());
    log_stats_->batch_messages->observe(static_cast<double>(batch->size()));
  }
  if (taps_.active()) {
    for (const auto& m : *batch) taps_.record(TapPoint::log_consumed, log_->key_path, *m);
    done = [this, batch, done = std::move(done)](Status status) {
      if (status.ok() && taps_.active())
        for (const auto& m : *batch) taps_.record(TapPoint::sink_written, sink_->key_path, *m);
      done(std::move(status));
    };
  }
  if (fail_points_.after_sink_commit.armed()) {
    // Test only: the rows are in, and the log has not stored the position yet.
    done = [this, done = std::move(done)](Status status) {
      if (status.ok()) fail_points_.after_sink_commit.hit(logger_);
      done(std::move(status));
    };
  }
  sink_driver_->write_with_retry(std::move(batch), std::move(done));
}

void Pipeline::stop(std::function<void(bool drained)> done) {
  if (stopping_) return;
  stopping_ = true;
  tick_timer_.cancel();
  logger_.info("stopping: intake closed, waiting for ", window_.in_flight(), " messages in flight (grace ",
               spec_.settings.shutdown_grace_ms, " ms)");
  for (auto& source : sources_) source.stage.instance->stop_intake();

  auto finished = std::make_shared<bool>(false);
  auto proceed = [this, finished, done](bool drained) {
    if (*finished) return;
    *finished = true;
    grace_timer_.cancel();
    if (!drained)
      logger_.error("grace period over with ", window_.in_flight(),
                    " messages still not durable; their senders got no ack");
    stop_stages([done, drained] { done(drained); });
  };
  grace_timer_.expires_after(std::chrono::milliseconds(spec_.settings.shutdown_grace_ms));
  grace_timer_.async_wait([proceed](boost::system::error_code ec) {
    if (!ec) proceed(false);
  });
  window_.when_empty([proceed] { proceed(true); });
}

void Pipeline::stop_stages(std::function<void()> done) {
  // Upstream first: the source closes its connections (acks are out), the
  // fanout and log producer flush, the consumer finishes its batch and
  // commits, and the sink closes last.
  auto stop_sink = [this, done] {
    if (!sink_) return done();
    sink_->instance->stop([this, done] {
      logger_.info("stopped ", sink_->key_path);
      done();
    });
  };
  auto stop_driver = [this, stop_sink] {
    if (!sink_driver_) return stop_sink();
    sink_driver_->shutdown(stop_sink);
  };
  auto stop_log = [this, stop_driver] {
    if (!log_) return stop_driver();
    // The driver stops retrying first, so a consumer stuck on a dead sink can
    // finish its batch (uncommitted) and let the log stop.
    if (sink_driver_) sink_driver_->shutdown([] {});
    log_->instance->stop([this, stop_driver] {
      logger_.info("stopped ", log_->key_path);
      stop_driver();
    });
  };
  auto stop_fanout = [this, stop_log] {
    // Transforms stop with the source gone: nothing reaches them any more.
    for (auto& t : transforms_) t.instance->stop([] {});
    if (!fanout_) return stop_log();
    fanout_->instance->stop([this, stop_log] {
      logger_.info("stopped ", fanout_->key_path);
      stop_log();
    });
  };
  // The sources one after another, then the rest.
  auto stop_source = std::make_shared<std::function<void(std::size_t)>>();
  *stop_source = [this, stop_fanout, stop_source](std::size_t i) {
    if (i == sources_.size()) {
      stop_fanout();
      // Breaks the cycle through the captured pointer once the chain is done.
      boost::asio::post(io_, [stop_source] { *stop_source = nullptr; });
      return;
    }
    sources_[i].stage.instance->stop([this, i, stop_source] {
      logger_.info("stopped ", sources_[i].stage.key_path);
      (*stop_source)(i + 1);
    });
  };
  (*stop_source)(0);
}

}  // namespace nudge::runtime

namespace nudge::runtime {

namespace {

/// Keys that hold a secret (the admin token, a JWT key, a password).
bool is_secret_key(std::string_view key) {
  return key == "token" || key.ends_with("_token") || key.ends_with("secret") || key.ends_with("password");
}

}  // namespace

std::vector<NotReady> Pipeline::not_ready() const {
  if (stopping_) return {{"runtime", "stopping"}};
  if (!started_) return {{"runtime", "starting"}};
  std::vector<NotReady> out;
  auto ask = [&out](const std::string& key_path, const Plugin& plugin) {
    if (auto r = plugin.readiness(); !r.ready) out.push_back({key_path, r.reason.empty() ? "not ready" : r.reason});
  };
  for (const auto& source : sources_) ask(source.stage.key_path, *source.stage.instance);
  for (const auto& t : transforms_) ask(t.key_path, *t.instance);
  if (fanout_) ask(fanout_->key_path, *fanout_->instance);
  if (log_) ask(log_->key_path, *log_->instance);
  if (sink_) ask(sink_->key_path, *sink_->instance);
  if (sink_driver_) {
    if (const auto failing = sink_driver_->failing_for(); failing > std::chrono::steady_clock::duration::zero()) {
      const bool named =
          std::any_of(out.begin(), out.end(), [&](const NotReady& n) { return n.stage == sink_->key_path; });
      if (!named)
        out.push_back({sink_->key_path, "batch writes failing for " +
                                            seconds_text(std::chrono::duration<double>(failing).count()) + ": " +
                                            sink_driver_->last_error()});
    }
  }
  // A window full for long means the durable stage is not taking messages in: intake is stalled.
  const auto full_for = std::chrono::steady_clock::now() - window_had_room_;
  if (!window_.has_room() && full_for > std::chrono::seconds(5)) {
    const std::string& durable = log_ ? log_->key_path : sink_ ? sink_->key_path : std::string("runtime");
    out.push_back({durable, "stalled: " + std::to_string(window_.in_flight()) + " messages (" +
                                std::to_string(window_.bytes_in_flight()) + " bytes) in flight, none durable for " +
                                seconds_text(std::chrono::duration<double>(full_for).count())});
  }
  return out;
}

void Pipeline::on_tick() {
  if (stopping_) return;
  if (window_.has_room()) window_had_room_ = std::chrono::steady_clock::now();
  in_flight_bytes_.set(static_cast<std::int64_t>(window_.bytes_in_flight()));
  // A sink that says it is back gets its failing batch retried now, not after the backoff.
  if (sink_driver_) {
    const bool sink_ready = sink_->instance->readiness().ready;
    if (sink_ready && !sink_was_ready_) sink_driver_->retry_now();
    sink_was_ready_ = sink_ready;
  }
  const auto problems = not_ready();
  for (const auto& [key_path, stats] : stage_stats_) {
    // An init-capture: clang before 16 cannot capture a structured binding (clang-tidy parses with clang 14).
    const bool ready = std::none_of(problems.begin(), problems.end(),
                                    [&stage = key_path](const NotReady& n) { return n.stage == stage; });
    stats->ready.set(ready ? 1 : 0);
  }
  if (log_ && sink_) {
    if (const auto lag = log_->instance->consumer_lag()) {
      consumer_lag_->set(*lag);
      report_progress(*lag);
    }
  }
  tick_timer_.expires_after(std::chrono::seconds(1));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_tick();
  });
}

void Pipeline::report_progress(std::int64_t lag) {
  const BacklogProgress::Settings settings{spec_.settings.backlog_threshold,
                                           std::chrono::milliseconds(spec_.settings.progress_interval_ms),
                                           log_->key_path, sink_->key_path};
  if (auto line =
          backlog_.observe(std::chrono::steady_clock::now(), lag, stats_for(sink_->key_path).out.value(), settings))
    logger_.info(*line);
}

ReloadOutcome Pipeline::reload(PipelineSpec next) {
  ReloadOutcome outcome;
  auto stage_list = [](const PipelineSpec& s) {
    std::vector<std::string> keys;
    for (const auto& source : s.sources) keys.push_back(source.key_path);
    for (const auto& t : s.transforms) keys.push_back(t.key_path);
    for (const auto* stage : {&s.fanout, &s.log, &s.sink})
      if (*stage) keys.push_back((*stage)->key_path);
    return keys;
  };
  auto join = [](const std::vector<std::string>& keys) {
    std::string text;
    for (const auto& k : keys) text += (text.empty() ? "" : " -> ") + k;
    return text;
  };
  if (stage_list(spec_) != stage_list(next)) {
    outcome.refusals.push_back("the stages changed (" + join(stage_list(spec_)) + " became " + join(stage_list(next)) +
                               "); adding, removing or reordering stages needs a restart");
    return outcome;
  }
  // Compares one table key by key; live keys become changes, others refusals.
  auto compare = [&outcome](const std::string& table, const Config& now, const Config& then, const ConfigSchema& schema,
                            std::vector<std::string>* changed_keys) {
    for (const auto& field : schema.fields()) {
      const auto a = now.values().find(field.key);
      const auto b = then.values().find(field.key);
      if (a == now.values().end() || b == then.values().end() || a->second == b->second) continue;
      // The report goes to the log and to whoever asked: a secret's value stays out of it.
      const std::string values =
          is_secret_key(field.key) ? std::string("value hidden") : to_toml(a->second) + " -> " + to_toml(b->second);
      const std::string change = table + "." + field.key + ": " + values;
      if (field.live) {
        outcome.changes.push_back(change);
        if (changed_keys) changed_keys->push_back(field.key);
      } else {
        outcome.refusals.push_back(table + "." + field.key + " changed (" + values +
                                   "); it takes effect only after a restart");
      }
    }
  };
  compare("pipeline", spec_.pipeline_config, next.pipeline_config, pipeline_schema(), nullptr);
  if (spec_.admin.has_value() != next.admin.has_value())
    outcome.refusals.push_back(std::string("the [admin] table was ") + (next.admin ? "added" : "removed") +
                               "; it takes effect only after a restart");
  else if (spec_.admin) compare("admin", spec_.admin->config, next.admin->config, admin_schema(), nullptr);

  // Per stage: the keys its plugin must take (the runtime's own sink keys are applied here).
  struct StageChange {
    Plugin* plugin;
    const StageSpec* now;
    StageSpec* then;
    bool plugin_keys_changed;
  };
  std::vector<StageChange> stage_changes;
  auto visit = [&](Plugin& plugin, const StageSpec& now, StageSpec& then) {
    std::vector<std::string> changed;
    compare(now.key_path, now.config, then.config, effective_schema(*now.library), &changed);
    const ConfigSchema own = now.library->descriptor->schema();
    const bool plugin_keys =
        std::any_of(changed.begin(), changed.end(), [&](const std::string& k) { return own.find(k); });
    if (!changed.empty()) stage_changes.push_back({&plugin, &now, &then, plugin_keys});
  };
  for (std::size_t i = 0; i < sources_.size(); ++i)
    visit(*sources_[i].stage.instance, spec_.sources[i], next.sources[i]);
  for (std::size_t i = 0; i < transforms_.size(); ++i)
    visit(*transforms_[i].instance, spec_.transforms[i], next.transforms[i]);
  if (fanout_) visit(*fanout_->instance, *spec_.fanout, *next.fanout);
  if (log_) visit(*log_->instance, *spec_.log, *next.log);
  if (sink_) visit(*sink_->instance, *spec_.sink, *next.sink);
  if (!outcome.refusals.empty()) {
    outcome.changes.clear();
    return outcome;
  }

  // Every change is live: hand each stage its new config; one refusal undoes those before it.
  std::vector<const StageChange*> reconfigured;
  for (const auto& change : stage_changes) {
    if (!change.plugin_keys_changed) continue;
    if (auto status = change.plugin->reconfigure(change.then->config); !status.ok()) {
      outcome.refusals.push_back(change.now->key_path + ": " + status.message());
      for (auto it = reconfigured.rbegin(); it != reconfigured.rend(); ++it)
        if (auto undo = (*it)->plugin->reconfigure((*it)->now->config); !undo.ok())
          logger_.error((*it)->now->key_path, ": could not restore the previous configuration: ", undo.message());
      outcome.changes.clear();
      return outcome;
    }
    reconfigured.push_back(&change);
  }
  for (const auto& change : stage_changes) const_cast<StageSpec*>(change.now)->config = change.then->config;

  // The runtime's own settings. The instance id stays: it is stamped on messages.
  next.settings.instance_id = spec_.settings.instance_id;
  next.settings.name = spec_.settings.name;
  spec_.settings = next.settings;
  spec_.pipeline_config = next.pipeline_config;
  spec_.sink_settings = next.sink_settings;
  window_.set_capacity(static_cast<std::size_t>(spec_.settings.max_in_flight),
                       static_cast<std::size_t>(spec_.settings.max_in_flight_bytes));
  if (sink_driver_) sink_driver_->set_settings(spec_.sink_settings);
  // With a log, batches are made by its consumer: it takes the new size too.
  if (log_ && sink_)
    log_->instance->set_max_batch_messages(static_cast<std::size_t>(spec_.sink_settings.batch_max_messages));
  outcome.applied = true;
  return outcome;
}

}  // namespace nudge::runtime
