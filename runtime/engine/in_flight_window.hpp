#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include "nudge/sdk/message.hpp"

namespace nudge::runtime {

/// What one message counts for against `[pipeline] max_in_flight_bytes`: its
/// bytes (room, sender, origin, payload, header names and values) plus fixed
/// overheads, so a flood of empty messages is bounded too: 512 bytes a
/// message for the Message and its shared_ptr control block (272, as the
/// memory fanout counts them), its strings' heap chunks (96) and the
/// completions that wait on it (the source's, the pipeline's, the log's
/// record: about 144), and 112 a header for the pair and its strings' chunks.
/// A log or a fanout also keeps the message's encoded envelope
/// (Message::envelope), about as many bytes again as the message's own, so the
/// memory held is up to about twice the bound.
inline constexpr std::size_t kInFlightMessageOverhead = 512;
inline constexpr std::size_t kInFlightHeaderOverhead = 112;
inline std::size_t in_flight_bytes(const Message& message) noexcept {
  std::size_t bytes = kInFlightMessageOverhead + message.room.size() + message.sender.size() + message.origin.size() +
                      message.payload.size();
  for (const auto& [name, value] : message.headers) bytes += kInFlightHeaderOverhead + name.size() + value.size();
  return bytes;
}

/// The bound on messages taken in but not yet durable: the queue between the
/// source and the durable stages, in messages and in bytes (in_flight_bytes).
/// Sources ask when_ready() before reading the next message from a client;
/// while either bound is reached they wait, so clients are slowed down
/// instead of memory growing without limit.
///
/// There is room while both counts are under their bounds, so a message
/// larger than the byte bound still goes through (alone, when nothing else
/// is in flight) instead of stalling the pipeline. A waiter resumed by a
/// release reads one more message before it checks again, so in-flight may
/// exceed either bound by at most one message per waiting reader.
/// Single-threaded: use on the event loop only.
class InFlightWindow {
 public:
  InFlightWindow(boost::asio::any_io_executor executor, std::size_t capacity, std::size_t byte_capacity)
      : executor_(std::move(executor)), capacity_(capacity), byte_capacity_(byte_capacity) {}

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t byte_capacity() const noexcept { return byte_capacity_; }
  /// Changes the bounds (a reload); readers waiting resume if there is room now.
  void set_capacity(std::size_t capacity, std::size_t byte_capacity) {
    capacity_ = capacity;
    byte_capacity_ = byte_capacity;
    resume_readers();
  }
  std::size_t in_flight() const noexcept { return in_flight_; }
  std::size_t bytes_in_flight() const noexcept { return bytes_; }
  bool has_room() const noexcept { return in_flight_ < capacity_ && bytes_ < byte_capacity_; }
  std::size_t waiting() const noexcept { return ready_waiters_.size(); }

  /// Counts one more message of `bytes` in flight. Never refuses: the caller has waited.
  void acquire(std::size_t bytes) noexcept {
    ++in_flight_;
    bytes_ += bytes;
  }

  /// The message acquired with `bytes` became durable (or failed). Resumes
  /// every reader waiting for room, and drain waiters once nothing is in flight.
  void release(std::size_t bytes) {
    if (in_flight_ > 0) --in_flight_;
    bytes_ -= std::min(bytes, bytes_);
    resume_readers();
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
  void resume_readers() {
    if (!has_room()) return;
    auto waiters = std::exchange(ready_waiters_, {});
    for (auto& w : waiters) boost::asio::post(executor_, std::move(w));
  }

  boost::asio::any_io_executor executor_;
  std::size_t capacity_;
  std::size_t byte_capacity_;
  std::size_t in_flight_ = 0;
  std::size_t bytes_ = 0;
  std::deque<std::function<void()>> ready_waiters_;
  std::deque<std::function<void()>> empty_waiters_;
};

}  // namespace nudge::runtime
