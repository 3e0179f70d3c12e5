#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nudge/sdk/status.hpp"

namespace nudge {

/// A message id: a UUIDv7 (RFC 9562) made at ingress. The first 48 bits are
/// the Unix time in milliseconds, so ids sort by creation time; a per-process
/// counter keeps ids made in the same millisecond in order, and 58 random bits
/// keep ids from different instances apart.
class MessageId {
 public:
  /// The nil id (all zero bits).
  MessageId() = default;
  explicit MessageId(const std::array<std::uint8_t, 16>& bytes) : bytes_(bytes) {}

  /// Makes a new id. Thread-safe; ids from one process are strictly
  /// increasing in the order the calls return, across threads too.
  static MessageId generate();

  /// Parses the canonical 36-character form (8-4-4-4-12 hex digits);
  /// nullopt when `text` is not one.
  static std::optional<MessageId> parse(std::string_view text);

  /// The canonical lower-case 36-character form.
  std::string to_string() const;
  /// The Unix time in milliseconds encoded in the id.
  std::int64_t unix_ms() const noexcept;
  bool is_nil() const noexcept { return bytes_ == std::array<std::uint8_t, 16>{}; }
  const std::array<std::uint8_t, 16>& bytes() const noexcept { return bytes_; }

  friend auto operator<=>(const MessageId&, const MessageId&) = default;

 private:
  std::array<std::uint8_t, 16> bytes_{};
};

/// Where a message sits in the log, once it has been read back from it.
struct LogPosition {
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  bool valid() const noexcept { return offset >= 0; }
};

/// One message of a pipeline. Built by a source (or decoded from the fanout
/// or the log), then shared read-only between stages as a MessagePtr, so a
/// message is never copied or serialised more than once.
struct Message {
  MessageId id;
  std::string room;
  std::string sender;
  /// The message body, as bytes (the chat's text, UTF-8).
  std::string payload;
  /// Free-form metadata that travels with the message.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Unix time in milliseconds at ingress.
  std::int64_t timestamp_ms = 0;
  /// The id of the runtime instance that took the message in.
  std::string origin;
  /// Set by a log's consumer side; invalid elsewhere.
  LogPosition log_position;

  /// The message in Nudge's binary envelope format (see encode_envelope),
  /// encoded on first use and cached. Thread-safe. Fanouts and logs send
  /// these bytes so a message is serialised once however many stages carry it.
  const std::string& envelope() const;

 private:
  mutable std::once_flag envelope_once_;
  mutable std::string envelope_;
};

using MessagePtr = std::shared_ptr<const Message>;

/// The header that marks a message ephemeral (a typing indicator, a read
/// receipt): it passes the transforms like any message, then the runtime fans
/// it out to the room but never appends it to the log and never stores it;
/// its sender is acknowledged once it is handed to the fanout. A fanout keeps
/// it out of its recent window, so it never shows in history. Its value is
/// ignored; a source sets it to "1".
inline constexpr std::string_view kEphemeralHeader = "nudge-ephemeral";

/// Whether `message` carries kEphemeralHeader.
bool is_ephemeral(const Message& message) noexcept;

/// Encodes `message` (all fields but log_position) into the envelope format:
/// a 3-byte magic `N`,`G`,version, the 16 id bytes, the timestamp as 8 bytes
/// big-endian, then room, sender, origin, payload as varint-length-prefixed
/// bytes, then a varint header count and each header as two such strings.
std::string encode_envelope(const Message& message);

/// Limits applied while decoding untrusted envelopes.
struct EnvelopeLimits {
  std::size_t max_field_bytes = 16 * 1024 * 1024;
  std::size_t max_headers = 256;
};

/// Decodes an envelope. On malformed input returns a StatusCode::invalid_argument
/// Status saying what is wrong and leaves `out` untouched; never throws on bad
/// bytes.
Status decode_envelope(std::string_view bytes, std::shared_ptr<Message>& out, const EnvelopeLimits& limits = {});

}  // namespace nudge
