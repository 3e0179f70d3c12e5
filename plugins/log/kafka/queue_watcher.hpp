#pragma once

#include <functional>
#include <memory>

#include <librdkafka/rdkafka.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "nudge/sdk/status.hpp"

namespace nudge::plugins::kafka {

/// Wakes the event loop when a librdkafka queue gets events, without a
/// thread and without polling: librdkafka writes a byte to a pipe whenever an
/// event lands on the (previously empty) queue, and the read end is watched
/// with async_wait. `on_ready` must then serve the queue with non-blocking
/// calls until it is empty (or call poke() to come back for the rest).
///
/// Threading: everything on the executor. The queue must outlive the watcher.
class QueueWatcher {
 public:
  QueueWatcher(boost::asio::any_io_executor executor, rd_kafka_queue_t* queue, std::function<void()> on_ready);
  /// Turns the queue's IO events off and closes the pipe.
  ~QueueWatcher();
  QueueWatcher(const QueueWatcher&) = delete;
  QueueWatcher& operator=(const QueueWatcher&) = delete;

  /// Creates the pipe, enables IO events on the queue and calls on_ready once
  /// soon (events may have arrived before).
  Status start();
  /// Runs on_ready once more soon, from a fresh handler (several pokes before
  /// it runs make one call).
  void poke();

 private:
  void arm();

  boost::asio::any_io_executor executor_;
  rd_kafka_queue_t* queue_;
  std::function<void()> on_ready_;
  boost::asio::posix::stream_descriptor read_end_;
  int write_fd_ = -1;
  bool poke_pending_ = false;
  // Handlers check this before touching the watcher, which may be gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace nudge::plugins::kafka
