#include "pipeline.hpp"

#include <chrono>

#include <boost/asio/post.hpp>

#include "history_merge.hpp"

namespace nudge::runtime {

Pipeline::Pipeline(boost::asio::io_context& io, PipelineSpec spec, MetricsRegistry& metrics)
    : io_(io),
      spec_(std::move(spec)),
      metrics_(metrics),
      window_(io.get_executor(), static_cast<std::size_t>(spec_.settings.max_in_flight)),
      deliver_when_durable_(spec_.settings.deliver == "durable"),
      messages_in_(metrics.counter("pipeline_messages_in")),
      messages_acked_(metrics.counter("pipeline_messages_acked")),
      messages_failed_(metrics.counter("pipeline_messages_failed")),
      fanout_received_(metrics.counter("pipeline_fanout_received")),
      messages_dropped_(metrics.counter("pipeline_messages_dropped")),
      messages_rejected_(metrics.counter("pipeline_messages_rejected")),
      history_reads_(metrics.counter("pipeline_history_reads")),
      history_from_window_(metrics.counter("pipeline_history_from_window")),
      history_failures_(metrics.counter("pipeline_history_failures")),
      grace_timer_(io) {}

Pipeline::~Pipeline() {
  // Instances go before the libraries that made them, upstream first.
  sink_driver_.reset();
  if (source_) source_->instance.reset();
  for (auto& t : transforms_) t.instance.reset();
  if (fanout_) fanout_->instance.reset();
  if (log_) log_->instance.reset();
  if (sink_) sink_->instance.reset();
}

template <class Interface>
bool Pipeline::make_stage(const std::optional<StageSpec>& spec, std::optional<Stage<Interface>>& out) {
  if (!spec) return true;
  std::string prefix = spec->key_path;
  std::replace(prefix.begin(), prefix.end(), '.', '_');
  auto context = std::make_unique<PluginContext>(io_.get_executor(), spec->key_path, metrics_, prefix,
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
  return true;
}

bool Pipeline::create() {
  if (!make_stage(spec_.sink, sink_) || !make_stage(spec_.log, log_) || !make_stage(spec_.fanout, fanout_))
    return false;
  for (const auto& t : spec_.transforms) {
    std::optional<Stage<Transform>> made;
    if (!make_stage(std::optional<StageSpec>(t), made)) return false;
    transforms_.push_back(std::move(*made));
  }
  if (!make_stage(spec_.source, source_)) return false;
  if (sink_) {
    sink_driver_ = std::make_unique<SinkDriver>(io_.get_executor(), *sink_->instance, spec_.sink_settings,
                                                sink_->context->logger(), sink_->context->metrics());
  }
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
    options.produce = source_.has_value();
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
  if (source_) {
    if (auto s = source_->instance->start(*this); !s.ok()) return fail(source_->key_path, s);
  }
  std::string shape;
  if (spec_.source) shape = spec_.source->key_path;
  for (const auto& t : spec_.transforms) shape += " -> " + t.key_path;
  for (const auto* stage : {&spec_.fanout, &spec_.log, &spec_.sink})
    if (*stage) shape += (shape.empty() ? "" : " -> ") + (*stage)->key_path;
  logger_.info("pipeline '", spec_.settings.name, "' started as instance '", spec_.settings.instance_id, "': ",
               shape);
  if (const auto note = history_note(); !note.empty()) logger_.info(note);
  return Status::success();
}

void Pipeline::publish(MessagePtr message, Completion on_durable) {
  if (transforms_.empty()) return admit(std::move(message), std::move(on_durable));
  transform(0, std::move(message), std::move(on_durable));
}

void Pipeline::transform(std::size_t index, MessagePtr message, Completion on_durable) {
  if (index == transforms_.size()) return admit(std::move(message), std::move(on_durable));
  transforms_[index].instance->process(
      std::move(message), [this, index, on_durable = std::move(on_durable)](Verdict verdict) mutable {
        // The sender hears of a drop or a reject from the loop, never inside the source's own call.
        auto answer = [this, &on_durable](Status status) {
          boost::asio::post(io_, [on_durable = std::move(on_durable), status = std::move(status)] {
            on_durable(status);
          });
        };
        switch (verdict.action) {
          case Verdict::Action::pass:
            if (!verdict.message) {
              messages_rejected_.add();
              return answer(Status::error(StatusCode::internal,
                                          transforms_[index].key_path + " passed no message"));
            }
            return transform(index + 1, std::move(verdict.message), std::move(on_durable));
          case Verdict::Action::drop:
            messages_dropped_.add();
            return answer(Status::success());
          case Verdict::Action::reject:
            messages_rejected_.add();
            return answer(Status::error(StatusCode::rejected, verdict.reason));
        }
      });
}

void Pipeline::admit(MessagePtr message, Completion on_durable) {
  messages_in_.add();
  window_.acquire();
  if (!deliver_when_durable_) deliver(message);
  auto finish = [this, message, on_durable = std::move(on_durable)](Status status) {
    window_.release();
    if (status.ok()) {
      messages_acked_.add();
      if (deliver_when_durable_) deliver(message);
    } else {
      messages_failed_.add();
    }
    on_durable(std::move(status));
  };
  if (log_) {
    log_->instance->append(message, std::move(finish));
  } else if (sink_driver_) {
    sink_driver_->enqueue(std::move(message), std::move(finish));
  } else {
    // A pure relay: nothing durable to wait for.
    boost::asio::post(io_, [finish = std::move(finish)]() mutable { finish(Status::success()); });
  }
}

void Pipeline::deliver(const MessagePtr& message) {
  if (fanout_) fanout_->instance->publish(message);
  else if (source_) source_->instance->deliver(message);
}

void Pipeline::when_ready(std::function<void()> resume) { window_.when_ready(std::move(resume)); }

void Pipeline::set_room_interest(std::string_view room, bool interested) {
  if (fanout_) fanout_->instance->set_room_interest(room, interested);
}

bool Pipeline::has_history() const { return sink_keeps_history() || (fanout_ && fanout_->instance->supports_recent()); }

bool Pipeline::sink_keeps_history() const { return sink_ && sink_->instance->supports_history(); }

std::string Pipeline::history_note() const {
  if (!source_) return {};
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
  if (source_) source_->instance->deliver(message);
}

void Pipeline::on_batch(BatchPtr batch, Completion done) {
  if (!sink_driver_) {
    done(Status::error(StatusCode::internal, "no sink"));
    return;
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
  logger_.info("stopping: intake closed, waiting for ", window_.in_flight(), " messages in flight (grace ",
               spec_.settings.shutdown_grace_ms, " ms)");
  if (source_) source_->instance->stop_intake();

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
  if (!source_) return stop_fanout();
  source_->instance->stop([this, stop_fanout] {
    logger_.info("stopped ", source_->key_path);
    stop_fanout();
  });
}

}  // namespace nudge::runtime
