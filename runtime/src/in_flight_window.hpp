#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

namespace nudge::runtime {

/// The bound on messages taken in but not yet durable: the queue between the
/// source and the durable stages. Sources ask when_ready() before reading the
/// next message from a client; while the window is full they wait, so clients
/// are slowed down instead of memory growing without limit.
///
/// A waiter resumed by a release reads one more message before it checks
/// again, so in-flight may exceed the capacity by at most one message per
/// waiting reader. Single-threaded: use on the event loop only.
class InFlightWindow {
 public:
  InFlightWindow(boost::asio::any_io_executor executor, std::size_t capacity)
      : executor_(std::move(executor)), capacity_(capacity) {}

  std::size_t capacity() const noexcept { return capacity_; }
  /// Changes the bound (a reload); readers waiting resume if there is room now.
  void set_capacity(std::size_t capacity) {
    capacity_ = capacity;
    if (has_room()) {
      auto waiters = std::exchange(ready_waiters_, {});
      for (auto& w : waiters) boost::asio::post(executor_, std::move(w));
    }
  }
  std::size_t in_flight() const noexcept { return in_flight_; }
  bool has_room() const noexcept { return in_flight_ < capacity_; }
  std::size_t waiting() const noexcept { return ready_waiters_.size(); }

  /// Counts one more message in flight. Never refuses: the caller has waited.
  void acquire() noexcept { ++in_flight_; }

  /// One message became durable (or failed). Resumes every reader waiting for
  /// room, and drain waiters once nothing is in flight.
  void release() {
    if (in_flight_ > 0) --in_flight_;
    if (has_room()) {
      auto waiters = std::exchange(ready_waiters_, {});
      for (auto& w : waiters) boost::asio::post(executor_, std::move(w));
    }
    if (in_flight_ == 0) {
      auto waiters = std::exchange(empty_waiters_, {});
      for (auto& w : waiters) boost::asio::post(executor_, std::move(w));
    }
  }

  /// Posts `resume` as soon as there is room (at once if there is now).
  void when_ready(std::function<void()> resume) {
    if (has_room()) boost::asio::post(executor_, std::move(resume));
    else ready_waiters_.push_back(std::move(resume));
  }

  /// Posts `done` once nothing is in flight (at once if nothing is now).
  void when_empty(std::function<void()> done) {
    if (in_flight_ == 0) boost::asio::post(executor_, std::move(done));
    else empty_waiters_.push_back(std::move(done));
  }

 private:
  boost::asio::any_io_executor executor_;
  std::size_t capacity_;
  std::size_t in_flight_ = 0;
  std::deque<std::function<void()>> ready_waiters_;
  std::deque<std::function<void()>> empty_waiters_;
};

}  // namespace nudge::runtime
