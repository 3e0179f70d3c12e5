#include "producer.hpp"

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);
// Purged messages report within a poll or two; give up on the rest after this.
constexpr auto kAfterPurge = std::chrono::seconds(2);
constexpr auto kRecreateBackoff = std::chrono::seconds(5);

}  // namespace

Producer::Producer(const KafkaConfig& config, Context& context, BlockingWorker& worker)
    : KafkaClient(config, context, "producer"),
      worker_(worker),
      executor_(context.executor()),
      timer_(context.executor()),
      produced_(context.metrics().counter("produced", "Messages the brokers confirmed stored (acks=all)")),
      produce_errors_(context.metrics().counter("produce_errors", "Appends that failed (timeout, queue full, ...)")) {}

Producer::~Producer() {
  *alive_ = false;
  if (current_) close_now(*current_);
  for (auto& h : retiring_) close_now(*h);
  while (pending_head_) {
    Pending* p = pending_head_;
    unlink(p);
    delete p;
  }
}

void Producer::close_now(Handle& h) {
  h.watcher.reset();
  if (h.queue) rd_kafka_queue_destroy(h.queue);
  if (h.topic) rd_kafka_topic_destroy(h.topic);
  if (h.rk) rd_kafka_destroy(h.rk);
  h = Handle{};
}

rd_kafka_t* Producer::handle_for_test() const noexcept { return current_ ? current_->rk : nullptr; }

Status Producer::start() {
  if (auto s = create_handle(); !s.ok()) return s;
  state_ = State::running;
  arm_timer();
  return Status::success();
}

Status Producer::create_handle() {
  std::string error;
  rd_kafka_conf_t* conf = base_conf(error);
  if (!conf) return Status::error(StatusCode::invalid_argument, error);
  const bool ok = set(conf, "enable.idempotence", "true", error) && set(conf, "acks", "all", error) &&
                  set(conf, "linger.ms", std::to_string(config_.linger_ms), error) &&
                  set(conf, "batch.size", std::to_string(config_.batch_size), error) &&
                  set(conf, "compression.codec", config_.compression, error) &&
                  set(conf, "message.timeout.ms", std::to_string(config_.delivery_timeout_ms), error) &&
                  // The runtime's in-flight window is the real backpressure; this only
                  // has to be larger than any window.
                  set(conf, "queue.buffering.max.messages", "1000000", error) &&
                  // Like the Java client: a room's messages always land in one partition.
                  set(conf, "partitioner", "murmur2_random", error) &&
                  // The log creates the topic with its partition count; a metadata
                  // request must not create it first with the broker's default.
                  set(conf, "allow.auto.create.topics", "false", error);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return Status::error(StatusCode::invalid_argument, error);
  }
  rd_kafka_conf_set_dr_msg_cb(conf, &Producer::dr_msg_cb);
  rd_kafka_t* rk = make_handle(RD_KAFKA_PRODUCER, conf, error);
  if (!rk) return Status::error(StatusCode::invalid_argument, error);

  auto h = std::make_unique<Handle>();
  h->rk = rk;
  h->generation = ++generation_;
  h->topic = rd_kafka_topic_new(rk, config_.topic.c_str(), nullptr);
  if (!h->topic) {
    close_now(*h);
    return Status::error(StatusCode::internal,
                         std::string("cannot make the topic handle: ") + rd_kafka_err2str(rd_kafka_last_error()));
  }
  h->queue = rd_kafka_queue_get_main(rk);
  Handle* raw = h.get();
  h->watcher = std::make_unique<QueueWatcher>(executor_, h->queue, [this, raw] { serve(*raw); });
  if (auto s = h->watcher->start(); !s.ok()) {
    close_now(*h);
    return s;
  }
  current_ = std::move(h);
  return Status::success();
}

void Producer::append(const MessagePtr& message, Completion done) {
  if (state_ != State::running || !current_) {
    const char* why = state_ == State::recreating ? "the Kafka producer is being recreated after a fatal error"
                                                  : "the Kafka producer is not running";
    return post_failure(std::move(done), StatusCode::unavailable, why);
  }
  auto* p = new Pending{message, std::move(done), current_->generation};
  const std::string& value = message->envelope();
  // No RD_KAFKA_MSG_F_COPY: the value stays alive in `p` until the report.
  if (rd_kafka_produce(current_->topic, RD_KAFKA_PARTITION_UA, 0, const_cast<char*>(value.data()), value.size(),
                       message->room.data(), message->room.size(), p) != 0) {
    const rd_kafka_resp_err_t err = rd_kafka_last_error();
    Completion failed = std::move(p->done);
    delete p;
    const StatusCode code = err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? StatusCode::unavailable : delivery_status_code(err);
    return post_failure(std::move(failed), code,
                        std::string("the Kafka producer refused the message: ") + rd_kafka_err2str(err));
  }
  link(p);
  ++in_flight_;
}

void Producer::post_failure(Completion done, StatusCode code, std::string why) {
  produce_errors_.add();
  boost::asio::post(executor_,
                    [done = std::move(done), code, why = std::move(why)] { done(Status::error(code, why)); });
}

void Producer::link(Pending* p) {
  p->prev = nullptr;
  p->next = pending_head_;
  if (pending_head_) pending_head_->prev = p;
  pending_head_ = p;
}

void Producer::unlink(Pending* p) {
  if (p->prev) p->prev->next = p->next;
  else pending_head_ = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = nullptr;
}

void Producer::dr_msg_cb(rd_kafka_t*, const rd_kafka_message_t* report, void* opaque) {
  static_cast<Producer*>(opaque)->on_delivery(report);
}

void Producer::on_delivery(const rd_kafka_message_t* report) {
  auto* p = static_cast<Pending*>(report->_private);
  if (!p) return;
  unlink(p);
  --in_flight_;
  std::unique_ptr<Pending> owned(p);
  // Ok only for a message the brokers have (acks=all: every in-sync replica).
  if (report->err == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_message_status(report) == RD_KAFKA_MSG_STATUS_PERSISTED) {
    produced_.add();
    owned->done(Status::success());
    return;
  }
  produce_errors_.add();
  const rd_kafka_resp_err_t err = report->err != RD_KAFKA_RESP_ERR_NO_ERROR ? report->err : RD_KAFKA_RESP_ERR__FAIL;
  owned->done(Status::error(delivery_status_code(err),
                            std::string("Kafka did not store the message: ") + rd_kafka_err2str(err)));
}

void Producer::serve(Handle& h) {
  // A completion may append (fine) or reach stop() (which only posts), but
  // rd_kafka_poll must never run inside itself.
  if (serving_) return;
  serving_ = true;
  // Each poll serves one queued event (a batch of delivery reports, a log
  // line, an error); come back for more rather than hog the loop.
  bool more = true;
  for (int i = 0; i < 64 && more; ++i) more = h.rk && rd_kafka_poll(h.rk, 0) > 0;
  serving_ = false;
  if (more && h.watcher) h.watcher->poke();
}

void Producer::on_fatal(rd_kafka_t* rk) {
  if (!current_ || current_->rk != rk || state_ != State::running) return;
  logger_.error("retiring the Kafka producer: its queued messages fail, and a new producer starts in ",
                std::chrono::duration_cast<std::chrono::seconds>(kRecreateBackoff).count(), " s");
  state_ = State::recreating;
  recreate_at_ = std::chrono::steady_clock::now() + kRecreateBackoff;
  retire(std::move(current_), std::chrono::milliseconds(0));
}

void Producer::retire(std::unique_ptr<Handle> handle, std::chrono::milliseconds drain_timeout) {
  handle->deadline = std::chrono::steady_clock::now() + drain_timeout;
  retiring_.push_back(std::move(handle));
  arm_timer();
}

void Producer::arm_timer() {
  if (timer_armed_) return;
  timer_armed_ = true;
  timer_.expires_after(kTick);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (!*alive || ec) return;
    timer_armed_ = false;
    tick();
  });
}

void Producer::tick() {
  const auto now = std::chrono::steady_clock::now();
  // The safety net: serve even if a wake-up was missed.
  if (current_) serve(*current_);
  for (std::size_t i = 0; i < retiring_.size();) {
    Handle& h = *retiring_[i];
    serve(h);
    const bool drained = rd_kafka_outq_len(h.rk) == 0;
    if (!drained && now >= h.deadline && !h.purged) {
      h.purged = true;
      h.deadline = now + kAfterPurge;
      logger_.warn("purging ", rd_kafka_outq_len(h.rk), " Kafka producer messages not confirmed in time");
      rd_kafka_purge(h.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      serve(h);
      ++i;
      continue;
    }
    if (drained || (h.purged && now >= h.deadline)) {
      auto owned = std::move(retiring_[i]);
      retiring_.erase(retiring_.begin() + static_cast<std::ptrdiff_t>(i));
      release(std::move(owned));
      continue;
    }
    ++i;
  }
  if (state_ == State::recreating && now >= recreate_at_) {
    if (auto s = create_handle(); s.ok()) {
      state_ = State::running;
      logger_.info("the Kafka producer was recreated");
    } else {
      recreate_at_ = now + kRecreateBackoff;
      logger_.error("cannot recreate the Kafka producer: ", s.message());
    }
  }
  maybe_stopped();
  if (state_ != State::stopped) arm_timer();
}

void Producer::release(std::unique_ptr<Handle> h) {
  h->watcher.reset();
  if (h->queue) rd_kafka_queue_destroy(h->queue);
  if (h->topic) rd_kafka_topic_destroy(h->topic);
  rd_kafka_t* rk = h->rk;
  const std::uint64_t generation = h->generation;
  ++releasing_;
  // rd_kafka_destroy joins librdkafka's threads: not on the event loop.
  worker_.run(
      [rk] {
        rd_kafka_destroy(rk);
        return true;
      },
      [this, alive = alive_, generation](bool) {
        if (!*alive) return;
        --releasing_;
        // Whatever the handle never reported gets an answer now.
        for (Pending* p = pending_head_; p;) {
          Pending* next = p->next;
          if (p->generation == generation) {
            unlink(p);
            --in_flight_;
            std::unique_ptr<Pending> owned(p);
            produce_errors_.add();
            owned->done(Status::error(StatusCode::unavailable,
                                      "the Kafka producer closed before the message's delivery was confirmed"));
          }
          p = next;
        }
        maybe_stopped();
      });
}

void Producer::stop(std::function<void()> done, std::chrono::milliseconds drain_timeout) {
  if (state_ == State::draining || state_ == State::stopped) {
    boost::asio::post(executor_, std::move(done));
    return;
  }
  on_stopped_ = std::move(done);
  state_ = State::draining;
  if (current_) retire(std::move(current_), drain_timeout);
  // Not tick() here: stop() may be reached from a completion, inside a poll.
  boost::asio::post(executor_, [this, alive = alive_] {
    if (*alive && state_ != State::stopped) tick();
  });
}

void Producer::maybe_stopped() {
  if (state_ != State::draining || current_ || !retiring_.empty() || releasing_ > 0) return;
  state_ = State::stopped;
  timer_.cancel();
  if (auto done = std::exchange(on_stopped_, nullptr)) done();
}

}  // namespace nudge::plugins::kafka
