#pragma once

// The WebSocket wire format (RFC 6455) as the server side speaks it: the
// handshake's accept key, an incremental reader of client frames, and the
// encoding of server frames.
//
// The source speaks it itself rather than through Beast's websocket::stream:
// that stream costs 2.5 KiB per connection (a fixed 1.5 KiB read buffer among
// it) and holds a read buffer and a timer wait per idle connection. Here an
// idle connection holds no buffer at all (its socket is waited on for
// readability and read into one buffer shared by the event loop), and a
// message broadcast to many clients is framed once and the same bytes are
// written to each.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace nudge::plugins::websocket {

/// Frame opcodes (RFC 6455 section 5.2).
enum class Opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

/// Close status codes the source sends (RFC 6455 section 7.4.1).
enum class CloseCode : std::uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,
  bad_payload = 1007,  ///< text that is not UTF-8
  policy_error = 1008,
  too_big = 1009,
  internal_error = 1011,
};

/// The Sec-WebSocket-Accept value answering a Sec-WebSocket-Key.
std::string websocket_accept_key(std::string_view key);

/// Whether a Sec-WebSocket-Key is well formed: base64 of 16 bytes.
bool valid_websocket_key(std::string_view key) noexcept;

/// A server frame (unmasked, final): header and payload in one string, ready
/// to be written as is to any number of clients.
std::string encode_frame(Opcode opcode, std::string_view payload);

/// A close frame carrying `code` and `reason` (cut to fit 125 bytes).
std::string encode_close_frame(CloseCode code, std::string_view reason);

/// Incremental UTF-8 validation over chunks that may split a character.
class Utf8Validator {
 public:
  /// Checks the next bytes; false once the text is not UTF-8 (then stays false).
  bool feed(const std::uint8_t* bytes, std::size_t size) noexcept;
  /// True when the bytes so far end on a character boundary.
  bool complete() const noexcept { return need_ == 0; }
  void reset() noexcept { *this = Utf8Validator(); }

 private:
  std::uint8_t need_ = 0;  ///< continuation bytes still due
  std::uint8_t low_ = 0x80;
  std::uint8_t high_ = 0xBF;  ///< range of the next continuation byte
};

/// Reads client frames from bytes as they arrive, in chunks of any size.
///
/// Checks everything RFC 6455 asks of a server: frames masked, reserved bits
/// clear, known opcodes, control frames short and unfragmented, continuation
/// only inside a message, minimal lengths, text valid UTF-8 (checked as it
/// arrives, so a bad byte is refused before the message ends), close codes
/// valid; and the message size against a limit, from the frame headers,
/// before a byte of an oversized message is stored.
class FrameReader {
 public:
  enum class Event {
    need_more,  ///< the input is used up mid-frame
    message,    ///< a whole data message: message(), is_text()
    ping,       ///< payload(): answer with a pong carrying it
    pong,
    close,   ///< close_code() (1005 when the frame had none), payload() = reason
    failure  ///< the client broke the protocol: failure_code(), failure_reason()
  };

  explicit FrameReader(std::size_t max_message_bytes) noexcept : max_message_bytes_(max_message_bytes) {}

  /// Changes the largest message accepted from the next frame on (a live
  /// reconfiguration); a message being reassembled is checked against it too.
  void set_max_message_bytes(std::size_t max_message_bytes) noexcept { max_message_bytes_ = max_message_bytes; }

  /// Consumes bytes from the front of `input` (unmasking them in place) up to
  /// the next event. A message or payload returned stays valid until the
  /// next call; it may point into `input`.
  Event next(std::span<std::uint8_t>& input);

  std::string_view message() const noexcept { return view_; }
  std::string_view payload() const noexcept { return view_; }
  bool is_text() const noexcept { return text_; }
  std::uint16_t close_code() const noexcept { return close_code_; }
  CloseCode failure_code() const noexcept { return failure_code_; }
  const char* failure_reason() const noexcept { return failure_reason_; }
  /// True between the first and the last frame of a fragmented message.
  bool in_message() const noexcept { return in_message_; }
  /// Between messages, with nothing of a frame read: a new reader would go
  /// on exactly as this one.
  bool at_rest() const noexcept { return !failed_ && !in_frame_ && header_size_ == 0 && !in_message_; }

 private:
  Event fail(CloseCode code, const char* reason) noexcept;
  /// The header is whole: checks it and starts the frame.
  Event start_frame() noexcept;
  Event end_frame();

  std::size_t max_message_bytes_;
  std::array<std::uint8_t, 14> header_{};
  std::size_t header_size_ = 0;
  bool in_frame_ = false;
  Opcode opcode_ = Opcode::continuation;
  bool fin_ = false;
  std::uint64_t remaining_ = 0;
  std::uint64_t frame_offset_ = 0;  ///< payload bytes of the frame unmasked so far
  std::array<std::uint8_t, 4> mask_{};
  /// The data message in progress (continuation frames go to it).
  bool in_message_ = false;
  bool text_ = false;
  std::size_t message_size_ = 0;
  std::string assembled_;
  bool direct_ = false;  ///< the message is one frame whole in the input: view_ points there
  Utf8Validator utf8_;
  /// A control frame's payload, only while one is read: 125 bytes an idle
  /// connection does not hold.
  std::unique_ptr<std::array<std::uint8_t, 125>> control_;
  std::size_t control_size_ = 0;
  std::string_view view_;
  std::uint16_t close_code_ = 1005;
  CloseCode failure_code_ = CloseCode::protocol_error;
  const char* failure_reason_ = "";
  bool failed_ = false;
};

}  // namespace nudge::plugins::websocket
