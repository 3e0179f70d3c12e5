#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "nudge/sdk/log.hpp"

namespace nudge::plugins::postgres {

/// A column of the messages table.
struct Column {
  const char* name;
  const char* definition;  ///< type and constraints, as in CREATE TABLE
  /// False for a column every version of the table had; true for one added
  /// later, which start() adds to an older table with ADD COLUMN IF NOT EXISTS
  /// (so it must be nullable or have a default).
  bool added_later;
};

/// The table's columns in order. To add one in a later version, append it
/// here with added_later = true.
const std::vector<Column>& columns();

/// CREATE TABLE IF NOT EXISTS and CREATE INDEX IF NOT EXISTS for `table`.
std::string create_table_sql(const TableName& table);

/// CREATE INDEX IF NOT EXISTS of the (room, id) index history reads use.
std::string create_index_sql(const TableName& table);

/// A history read. Parameters: $1 the room (text), $2 the limit (bigint), and
/// with `after` $3 the id after which to start (uuid). Columns: id as text,
/// room, sender, payload (bytea), created_at in Unix ms (bigint), origin,
/// log_partition, log_offset. Without `after` the rows come newest first (the
/// caller reverses them); with it, oldest first.
std::string history_sql(const TableName& table, bool after);

/// ALTER TABLE ... ADD COLUMN IF NOT EXISTS for one column.
std::string add_column_sql(const TableName& table, const Column& column);

/// The one statement a batch is written with: eight array parameters
/// ($1 ids, $2 rooms, $3 senders, $4 payloads in hex, $5 timestamps in ms,
/// $6 origins, $7 log partitions, $8 log offsets) unnested into rows, and
/// ON CONFLICT (id) DO NOTHING so a replayed batch adds no row.
std::string insert_sql(const TableName& table);

/// A batch turned into the insert's eight array parameters (PostgreSQL
/// array literals, sent as bound parameters, never pasted into SQL).
struct EncodedBatch {
  std::string ids, rooms, senders, payloads, timestamps, origins, partitions, offsets;
  /// How many room, sender or origin values were not valid UTF-8 (or held a
  /// NUL) and were stored with U+FFFD in place of the bad bytes.
  std::size_t repaired_texts = 0;
};

/// Encodes the messages [first, last) of a batch.
EncodedBatch encode_batch(Batch::const_iterator first, Batch::const_iterator last);
inline EncodedBatch encode_batch(const Batch& batch) { return encode_batch(batch.begin(), batch.end()); }

/// Most payload bytes one insert statement carries (twice that in hex); a
/// larger batch is written in several statements, far below PostgreSQL's
/// 1 GB limit on one parameter. At least one message goes in each.
inline constexpr std::size_t kMaxStatementPayloadBytes = 16 * 1024 * 1024;

/// The end of the next statement's share of a batch starting at `first`.
Batch::const_iterator statement_end(Batch::const_iterator first, Batch::const_iterator last,
                                    std::size_t max_payload_bytes = kMaxStatementPayloadBytes);

/// Appends `text` as one double-quoted element of a PostgreSQL array literal,
/// backslash-escaping `"` and `\`. `text` must hold no NUL byte.
void append_array_element(std::string& out, std::string_view text);

/// `{"a","b"}` for a list of strings (each without NUL).
std::string text_array_literal(const std::vector<std::string>& items);

/// Lower-case hex digits of every byte, two per byte (decode(x, 'hex') reads it back).
void append_hex(std::string& out, std::string_view bytes);

/// Copies `text` to `out` as a text column takes it: every byte sequence that
/// is not valid UTF-8 replaced with U+FFFD (nudge::repair_utf8), and every
/// NUL too, which text cannot hold. Returns true if anything was replaced.
bool repair_text(std::string_view text, std::string& out);

}  // namespace nudge::plugins::postgres
