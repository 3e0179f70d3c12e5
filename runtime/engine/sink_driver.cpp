#include "engine/sink_driver.hpp"

#include <algorithm>
#include <chrono>

namespace nudge::runtime {

SinkDriver::SinkDriver(boost::asio::any_io_executor executor, Sink& sink, const SinkSettings& settings, Logger& logger,
                       StageStats& stats, Histogram* persisted)
    : executor_(executor),
      sink_(sink),
      settings_(settings),
      logger_(logger),
      stats_(stats),
      persisted_(persisted),
      retry_timer_(executor),
      linger_timer_(executor) {}

void SinkDriver::write_with_retry(BatchPtr batch, Completion done) {
  stats_.in.add(batch->size());
  queue_.push_back({std::move(batch), std::move(done)});
  update_queue_depth();
  if (!current_) start_next();
}

std::size_t SinkDriver::waiting_messages() const noexcept {
  std::size_t n = gathered_.size() + (current_ ? current_->batch->size() : 0);
  for (const auto& p : queue_) n += p.batch->size();
  return n;
}

void SinkDriver::update_queue_depth() { stats_.queue_depth.set(static_cast<std::int64_t>(waiting_messages())); }

std::chrono::steady_clock::duration SinkDriver::failing_for() const {
  if (!current_ || last_error_.empty()) return {};
  return std::chrono::steady_clock::now() - failing_since_;
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
    if (attempts_ > 1)
      logger_.info("batch of ", current_->batch->size(), " messages written after ", attempts_, " attempts");
    last_error_.clear();
    stats_.out.add(current_->batch->size());
    if (stats_.batch_messages) stats_.batch_messages->observe(static_cast<double>(current_->batch->size()));
    if (persisted_) {
      const auto now =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      for (const auto& m : *current_->batch)
        if (m->timestamp_ms > 0)
          persisted_->observe(static_cast<double>(std::max<std::int64_t>(0, now - m->timestamp_ms)) / 1000.0);
    }
    auto finished = std::move(current_);
    update_queue_depth();
    finished->done(Status::success());
    start_next();
    return;
  }
  stats_.errors.add();
  if (last_error_.empty()) failing_since_ = std::chrono::steady_clock::now();
  last_error_ = status.message();
  if (shutting_down_) {
    logger_.warn("batch write failed during shutdown (", status.message(), "); leaving it to be redelivered");
    auto finished = std::move(current_);
    update_queue_depth();
    finished->done(Status::error(StatusCode::cancelled, "shutting down: " + status.message()));
    start_next();
    return;
  }
  // Doubling from retry_initial_ms up to retry_max_ms; one line per attempt
  // until the cap, then one per cap interval, so an outage logs a few lines a minute.
  const auto shift = std::min<std::int64_t>(attempts_ - 1, 20);
  const auto delay = std::min(settings_.retry_max_ms, settings_.retry_initial_ms << shift);
  logger_.warn("batch write of ", current_->batch->size(), " messages failed (", status.message(), "); retry ",
               attempts_, " in ", delay, " ms");
  retry_timer_.expires_after(std::chrono::milliseconds(delay));
  retry_pending_ = true;
  // Cancelled by shutdown() (give up) or by retry_now() (go at once).
  retry_timer_.async_wait([this](boost::system::error_code) {
    if (!current_ || !retry_pending_) return;
    retry_pending_ = false;
    if (shutting_down_) {
      auto finished = std::move(current_);
      finished->done(Status::error(StatusCode::cancelled, "shutting down before the batch could be written"));
      start_next();
      return;
    }
    stats_.retries.add();
    attempt();
  });
}

void SinkDriver::enqueue(MessagePtr message, Completion done) {
  gathered_.push_back(std::move(message));
  stats_.queue_depth.add(1);
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
  stats_.queue_depth.add(-static_cast<std::int64_t>(batch->size()));
  auto dones = std::make_shared<std::vector<Completion>>(std::exchange(gathered_done_, {}));
  write_with_retry(std::move(batch), [dones](Status status) {
    for (auto& done : *dones) done(status);
  });
}

void SinkDriver::retry_now() {
  if (retry_pending_ && !shutting_down_) retry_timer_.cancel();
}

void SinkDriver::shutdown(std::function<void()> done) {
  flush_gathered();
  shutting_down_ = true;
  on_idle_ = std::move(done);
  retry_timer_.cancel();
  if (!current_ && queue_.empty()) std::exchange(on_idle_, nullptr)();
}

}  // namespace nudge::runtime
