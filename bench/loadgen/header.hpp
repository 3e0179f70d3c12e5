#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::bench {

/// What every benchmark message carries in its text, so that whoever
/// receives it can tell who sent it, which one it is and when it was meant to
/// be sent — the latency is measured from that scheduled time, not from when
/// the frame actually left, so a stalled sender cannot hide a stall.
struct MessageHeader {
  std::uint32_t run = 0;          ///< random per nudge-bench run: other runs' messages are told apart
  std::uint32_t sender = 0;       ///< the sending connection's index
  std::uint64_t seq = 0;          ///< 0, 1, 2, ... per sender
  std::int64_t scheduled_ns = 0;  ///< CLOCK_MONOTONIC (std::chrono::steady_clock) nanoseconds

  bool operator==(const MessageHeader&) const = default;
};

/// The text of a message: `nb1.<run as 8 hex digits>.<sender>.<seq>.<scheduled_ns>.`
/// then 'x' up to `payload_bytes` bytes in all (never shorter than the header).
/// Only [0-9a-fx.nb] bytes: nothing a JSON encoder escapes, so the header can
/// be found in any frame that carries the text (a Nudge `message` frame, or a
/// Socket.IO event whose payload is JSON inside a JSON string).
std::string encode_header(const MessageHeader& header, std::size_t payload_bytes);

/// Appends the same text to `out`.
void append_header(std::string& out, const MessageHeader& header, std::size_t payload_bytes);

/// Finds and parses the first header anywhere in `frame`; nullopt when there
/// is none or it is malformed.
std::optional<MessageHeader> find_header(std::string_view frame) noexcept;

}  // namespace nudge::bench
