#include "sink_driver.hpp"

#include <algorithm>
#include <chrono>

namespace nudge::runtime {

SinkDriver::SinkDriver(boost::asio::any_io_executor executor, Sink& sink, const SinkSettings& settings,
                       Logger& logger, Metrics& metrics)
    : executor_(executor),
      sink_(sink),
      settings_(settings),
      logger_(logger),
      batches_written_(metrics.counter("batches_written", "Batches the sink confirmed")),
      messages_written_(metrics.counter("messages_written", "Messages in batches the sink confirmed")),
      write_errors_(metrics.counter("write_errors", "Failed batch writes (each is retried)")),
      retries_(metrics.counter("write_retries", "Batch write retries")),
      retry_timer_(executor),
      linger_timer_(executor) {}

void SinkDriver::write_with_retry(BatchPtr batch, Completion done) {
  queue_.push_back({std::move(batch), std::move(done)});
  if (!current_) start_next();
}

void SinkDriver::start_next() {
  if (current_ || queue_.empty()) {
    if (!current_ && queue_.empty() && shutting_down_ && gathered_.empty() && on_idle_)
      std::exchange(on_idle_, nullptr)();
    return;
  }
  current_ = std::make_unique<Pending>(std::move(queue_.front()));
  queue_.erase(queue_.begin());
  attempts_ = 0;
  attempt();
}

void SinkDriver::attempt() {
  ++attempts_;
  sink_.write(current_->batch, [this](Status status) { on_written(std::move(status)); });
}

void SinkDriver::on_written(Status status) {
  if (status.ok()) {
    if (attempts_ > 1) logger_.info("batch of ", current_->batch->size(), " messages written after ", attempts_, " attempts");
    batches_written_.add();
    messages_written_.add(current_->batch->size());
    auto finished = std::move(current_);
    finished->done(Status::success());
    start_next();
    return;
  }
  write_errors_.add();
  if (shutting_down_) {
    logger_.warn("batch write failed during shutdown (", status.message(), "); leaving it to be redelivered");
    auto finished = std::move(current_);
    finished->done(Status::error(StatusCode::cancelled, "shutting down: " + status.message()));
    start_next();
    return;
  }
  // Doubling from retry_initial_ms up to retry_max_ms; one line per attempt
  // until the cap, then one per cap interval, so an outage logs a few lines a minute.
  const auto shift = std::min<std::int64_t>(attempts_ - 1, 20);
  const auto delay = std::min(settings_.retry_max_ms, settings_.retry_initial_ms << shift);
  logger_.warn("batch write of ", current_->batch->size(), " messages failed (", status.message(),
               "); retry ", attempts_, " in ", delay, " ms");
  retry_timer_.expires_after(std::chrono::milliseconds(delay));
  retry_timer_.async_wait([this](boost::system::error_code ec) {
    if (!current_) return;
    if (ec || shutting_down_) {
      auto finished = std::move(current_);
      finished->done(Status::error(StatusCode::cancelled, "shutting down before the batch could be written"));
      start_next();
      return;
    }
    retries_.add();
    attempt();
  });
}

void SinkDriver::enqueue(MessagePtr message, Completion done) {
  gathered_.push_back(std::move(message));
  gathered_done_.push_back(std::move(done));
  if (gathered_.size() >= static_cast<std::size_t>(settings_.batch_max_messages) || settings_.batch_linger_ms == 0) {
    flush_gathered();
    return;
  }
  if (!linger_armed_) {
    linger_armed_ = true;
    linger_timer_.expires_after(std::chrono::milliseconds(settings_.batch_linger_ms));
    linger_timer_.async_wait([this](boost::system::error_code) {
      linger_armed_ = false;
      flush_gathered();
    });
  }
}

void SinkDriver::flush_gathered() {
  if (gathered_.empty()) return;
  if (linger_armed_) {
    linger_armed_ = false;
    linger_timer_.cancel();
  }
  auto batch = std::make_shared<const Batch>(std::exchange(gathered_, {}));
  auto dones = std::make_shared<std::vector<Completion>>(std::exchange(gathered_done_, {}));
  write_with_retry(std::move(batch), [dones](Status status) {
    for (auto& done : *dones) done(status);
  });
}

void SinkDriver::shutdown(std::function<void()> done) {
  flush_gathered();
  shutting_down_ = true;
  on_idle_ = std::move(done);
  retry_timer_.cancel();
  if (!current_ && queue_.empty()) std::exchange(on_idle_, nullptr)();
}

}  // namespace nudge::runtime
