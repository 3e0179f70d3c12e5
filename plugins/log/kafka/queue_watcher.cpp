#include "queue_watcher.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

QueueWatcher::QueueWatcher(boost::asio::any_io_executor executor, rd_kafka_queue_t* queue,
                           std::function<void()> on_ready)
    : executor_(executor), queue_(queue), on_ready_(std::move(on_ready)), read_end_(executor) {}

QueueWatcher::~QueueWatcher() {
  *alive_ = false;
  if (write_fd_ >= 0) {
    rd_kafka_queue_io_event_enable(queue_, -1, nullptr, 0);
    ::close(write_fd_);
  }
  boost::system::error_code ignored;
  read_end_.close(ignored);
}

Status QueueWatcher::start() {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    return Status::error(StatusCode::internal, std::string("cannot create a pipe: ") + std::strerror(errno));
  boost::system::error_code ec;
  read_end_.assign(fds[0], ec);
  if (ec) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::error(StatusCode::internal, "cannot watch a pipe: " + ec.message());
  }
  write_fd_ = fds[1];
  rd_kafka_queue_io_event_enable(queue_, write_fd_, "1", 1);
  arm();
  poke();
  return Status::success();
}

void QueueWatcher::poke() {
  if (poke_pending_) return;
  poke_pending_ = true;
  boost::asio::post(executor_, [this, alive = alive_] {
    if (!*alive) return;
    poke_pending_ = false;
    // A copy: the callback may destroy this watcher (and on_ready_) while it runs.
    auto callback = on_ready_;
    callback();
  });
}

void QueueWatcher::arm() {
  read_end_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this, alive = alive_](boost::system::error_code ec) {
                         if (!*alive || ec) return;
                         // Drain the wake-up bytes first: an event enqueued after
                         // this point writes a new byte and wakes us again.
                         char buffer[256];
                         while (::read(read_end_.native_handle(), buffer, sizeof buffer) > 0) {
                         }
                         auto callback = on_ready_;
                         callback();
                         if (*alive) arm();
                       });
}

}  // namespace nudge::plugins::kafka
