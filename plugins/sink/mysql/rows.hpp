#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nudge/sdk/log.hpp"

namespace nudge::plugins::mysql {

/// A point in UTC as DATETIME(3) holds it.
struct CivilTime {
  int year = 1970;
  unsigned month = 1, day = 1, hour = 0, minute = 0, second = 0, millisecond = 0;
  friend bool operator==(const CivilTime&, const CivilTime&) = default;
};

/// DATETIME's range in Unix milliseconds: 1000-01-01 00:00:00.000 to
/// 9999-12-31 23:59:59.999.
inline constexpr std::int64_t kMinDatetimeMs = -30610224000000;
inline constexpr std::int64_t kMaxDatetimeMs = 253402300799999;

/// The UTC calendar time of a Unix time in milliseconds, clamped to
/// DATETIME's range (`clamped` says whether it was).
CivilTime utc_civil_time(std::int64_t unix_ms, bool& clamped);

/// The Unix time in milliseconds of a UTC calendar time (utc_civil_time's
/// inverse within DATETIME's range).
std::int64_t unix_ms(const CivilTime& time);

/// Copies `text` to `out` so that a utf8mb4 VARCHAR(max_chars) takes it:
/// every byte sequence that is not valid UTF-8 becomes U+FFFD
/// (nudge::repair_utf8; NUL is kept), and the text is cut after `max_chars`
/// characters. Returns true if anything changed.
bool repair_text(std::string_view text, std::size_t max_chars, std::string& out);

/// One message as the insert binds it. The payload points into the message,
/// which the batch keeps alive.
struct Row {
  std::string id;  ///< 36 characters
  std::string room, sender, origin;
  std::string_view payload;
  CivilTime created_at;
  std::optional<std::int32_t> log_partition;
  std::optional<std::int64_t> log_offset;
};

/// A batch ready to bind, with how much had to be repaired to fit the table.
struct EncodedBatch {
  std::vector<Row> rows;
  std::size_t texts_repaired = 0;      ///< room, sender or origin values changed by repair_text
  std::size_t timestamps_clamped = 0;  ///< timestamps outside DATETIME's range
};

EncodedBatch encode_batch(const Batch& batch);

/// Bytes of a length-encoded integer of the client/server protocol.
std::size_t lenenc_size(std::uint64_t n);

/// An upper bound of what one row adds to a COM_STMT_EXECUTE packet: its
/// eight parameter types (2 bytes each), its byte of the NULL bitmap, and its
/// values (strings length-prefixed, DATETIME at most 12 bytes, INT 4, BIGINT 8).
std::size_t row_packet_bytes(const Row& row);

/// What an execute packet takes besides its rows (command, statement id,
/// flags, iteration count), with a margin.
inline constexpr std::size_t kStatementOverheadBytes = 1024;

/// How a batch is split into insert statements.
struct ChunkPlan {
  struct Chunk {
    std::size_t first = 0;
    std::size_t count = 0;
  };
  std::vector<Chunk> chunks;
  /// A row that does not fit in a statement of max_packet bytes on its own;
  /// when set, `chunks` is empty.
  std::optional<std::size_t> too_large;
};

/// Splits rows of `row_bytes` (row_packet_bytes) into consecutive statements
/// of at most `max_rows` rows whose packets, kStatementOverheadBytes
/// included, stay at or below `max_packet` bytes (the server's
/// max_allowed_packet).
ChunkPlan plan_chunks(const std::vector<std::size_t>& row_bytes, std::size_t max_packet, std::size_t max_rows);

}  // namespace nudge::plugins::mysql
