#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
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
  /// Bytes of every queued frame together: what the client makes the server
  /// hold by not reading (frames shared with other clients count in full).
  std::size_t bytes() const noexcept { return bytes_; }
  /// Frames ever queued, and ever taken out from the front (written).
  std::uint64_t pushed() const noexcept { return popped_ + size(); }
  std::uint64_t popped() const noexcept { return popped_; }
  /// The oldest frame; the queue must not be empty.
  const Frame& front() const noexcept { return frames_[head_]; }

  /// Queues `frame`; returns its sequence number (frames ever popped plus
  /// its place), by which replace() finds it while it is queued.
  std::uint64_t push_back(Frame frame) {
    const std::uint64_t sequence = popped_ + size();
    bytes_ += frame->size();
    frames_.push_back(std::move(frame));
    return sequence;
  }

  /// Replaces the frame pushed as `sequence` if it is still queued and not
  /// among the oldest `in_flight` (being written, so their bytes must stay);
  /// false otherwise. A pong not yet written makes way for a newer one.
  bool replace(std::uint64_t sequence, std::size_t in_flight, Frame frame) noexcept {
    if (sequence < popped_ + in_flight || sequence >= popped_ + size()) return false;
    auto& slot = frames_[head_ + static_cast<std::size_t>(sequence - popped_)];
    bytes_ = bytes_ - slot->size() + frame->size();
    slot = std::move(frame);
    return true;
  }
  /// Whether the frame pushed as `sequence` is still queued.
  bool holds(std::uint64_t sequence) const noexcept { return sequence >= popped_ && sequence < popped_ + size(); }

  /// Removes the oldest frame. Once the queue runs empty its storage is
  /// reused from the start, and given back when a burst left it large.
  void pop_front() noexcept {
    ++popped_;
    bytes_ -= frames_[head_]->size();
    frames_[head_++].reset();
    if (head_ == frames_.size()) clear();
  }

  void clear() noexcept {
    popped_ += size();
    frames_.clear();
    head_ = 0;
    bytes_ = 0;
    if (frames_.capacity() > kKeptCapacity) std::vector<Frame>().swap(frames_);
  }

  /// Drops every frame but the oldest `count` (those being written, which
  /// must outlive their write). Sequence numbers of the frames dropped may
  /// be given again: forget them.
  void keep_front(std::size_t count) {
    if (size() <= count) return;
    for (auto it = frames_.begin() + static_cast<std::ptrdiff_t>(head_ + count); it != frames_.end(); ++it)
      bytes_ -= (*it)->size();
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
  std::size_t bytes_ = 0;
  std::uint64_t popped_ = 0;
};

}  // namespace nudge::plugins::websocket
