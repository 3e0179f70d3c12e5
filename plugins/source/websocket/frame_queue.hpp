#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace nudge::plugins::websocket {

/// The frames waiting to be written to one client, oldest first.
///
/// A vector with a moving head rather than a std::deque: libstdc++'s deque
/// allocates a 512-byte block even when empty, and an idle connection's queue
/// is empty nearly always. Tens of thousands of idle clients make that
/// the difference between ~4 and ~4.5 KiB per connection.
class FrameQueue {
 public:
  using Frame = std::shared_ptr<const std::string>;

  bool empty() const noexcept { return head_ == frames_.size(); }
  std::size_t size() const noexcept { return frames_.size() - head_; }
  /// The oldest frame; the queue must not be empty.
  const Frame& front() const noexcept { return frames_[head_]; }

  void push_back(Frame frame) { frames_.push_back(std::move(frame)); }

  /// Removes the oldest frame. Once the queue runs empty its storage is
  /// reused from the start, and given back when a burst left it large.
  void pop_front() noexcept {
    frames_[head_++].reset();
    if (head_ == frames_.size()) clear();
  }

  void clear() noexcept {
    frames_.clear();
    head_ = 0;
    if (frames_.capacity() > kKeptCapacity) std::vector<Frame>().swap(frames_);
  }

  /// Drops every frame but the oldest `count` (those being written, which
  /// must outlive their write).
  void keep_front(std::size_t count) {
    if (size() <= count) return;
    frames_.erase(frames_.begin() + static_cast<std::ptrdiff_t>(head_ + count), frames_.end());
    if (empty()) clear();
  }

  /// Fills `buffers` with the oldest frames, as many as fit; returns how many.
  template <class Buffer, std::size_t N>
  std::size_t gather(std::array<Buffer, N>& buffers) const noexcept {
    const std::size_t count = std::min(N, size());
    for (std::size_t i = 0; i < count; ++i) {
      const auto& frame = *frames_[head_ + i];
      buffers[i] = Buffer(frame.data(), frame.size());
    }
    return count;
  }

 private:
  /// Storage an emptied queue keeps: enough for the usual ack and a few
  /// messages, small enough not to matter per idle connection.
  static constexpr std::size_t kKeptCapacity = 8;

  std::vector<Frame> frames_;
  std::size_t head_ = 0;
};

}  // namespace nudge::plugins::websocket
