#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "config.hpp"
#include "server.hpp"

namespace nudge::plugins::mysql {

/// A column of the messages table.
struct Column {
  const char* name;
  const char* definition;  ///< type and constraints, as in CREATE TABLE
};

/// The table's columns in order.
const std::vector<Column>& columns();

/// Longest room, sender and origin in characters (VARCHAR limits).
inline constexpr std::size_t kRoomChars = 128;
inline constexpr std::size_t kSenderChars = 255;
inline constexpr std::size_t kOriginChars = 255;

/// CREATE TABLE IF NOT EXISTS, with the primary key on id, the (room, id)
/// index `room_id_idx` history reads use, InnoDB and utf8mb4.
std::string create_table_sql(const TableName& table);

/// Adds `room_id_idx` (room, id) to an existing table: `CREATE INDEX IF NOT
/// EXISTS` where the server has it (MariaDB 10.1.4 and later), plain `CREATE
/// INDEX` elsewhere (MySQL 8 has no IF NOT EXISTS for indexes; the caller
/// takes error 1061, an index of that name, as "already there").
std::string create_index_sql(const TableName& table, const ServerInfo& server);

/// One row per index whose first two columns are room and id, whole (no
/// prefix): an index that serves history reads, whatever its name.
std::string room_id_index_sql(const TableName& table);

/// A history read, for a prepared statement. Parameters: the room, its length
/// in bytes, with `after` the id after which to start, then the limit. Columns: id, room,
/// sender, payload, created_at, origin, log_partition, log_offset. Without
/// `after` the rows come newest first (the caller reverses them); with it,
/// oldest first.
std::string history_sql(const TableName& table, bool after);

/// The insert for `rows` messages: `rows` groups of eight placeholders (id,
/// room, sender, payload, created_at, origin, log_partition, log_offset) and
/// `ON DUPLICATE KEY UPDATE id = id`, so an id already stored is skipped
/// (affected rows: 1 per inserted row, 0 per skipped one) while a data error
/// still fails the statement, which INSERT IGNORE would turn into a warning.
std::string insert_sql(const TableName& table, std::size_t rows);

/// Bound parameters per row of insert_sql.
inline constexpr std::size_t kParamsPerRow = 8;

/// Most rows one insert statement takes (4000 placeholders, far below the
/// protocol's 65535); a larger batch, or one over max_allowed_packet, is
/// written with several statements in one transaction.
inline constexpr std::size_t kMaxRowsPerStatement = 500;

/// `SELECT ENGINE FROM information_schema.TABLES ...`: one row when the table exists.
std::string table_engine_sql(const TableName& table);

/// The table's column names, one per row.
std::string column_names_sql(const TableName& table);

/// One row per unique index (or primary key) made of the column id alone.
std::string unique_id_index_sql(const TableName& table);

}  // namespace nudge::plugins::mysql
