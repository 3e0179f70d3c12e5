#include "sql.hpp"

namespace nudge::plugins::mysql {

const std::vector<Column>& columns() {
  // id: the canonical 36-character text of the UUIDv7 in ASCII with a binary
  // collation (36 bytes, compared bytewise; readable, and the same text as the
  // other sinks store). UUIDv7 text sorts by time, so InnoDB appends to its
  // clustered index instead of splitting pages. Texts compare bytewise too
  // (utf8mb4_bin): rooms 'Lobby' and 'lobby' are different rooms.
  static const std::vector<Column> all = {
      {"id", "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL"},
      {"room", "VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"},
      {"sender", "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"},
      {"payload", "LONGBLOB NOT NULL"},
      {"created_at", "DATETIME(3) NOT NULL"},
      {"origin", "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"},
      {"log_partition", "INT NULL"},
      {"log_offset", "BIGINT NULL"},
      {"stored_at", "DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"},
  };
  return all;
}

std::string create_table_sql(const TableName& table) {
  std::string sql = "CREATE TABLE IF NOT EXISTS " + table.quoted() + " (";
  for (const auto& c : columns()) sql += std::string(c.name) + " " + c.definition + ", ";
  sql +=
      "PRIMARY KEY (id), INDEX room_id_idx (room, id)"
      ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
  return sql;
}

std::string create_index_sql(const TableName& table, const ServerInfo& server) {
  const bool if_not_exists = server.flavour == ServerFlavour::mariadb && server.at_least(10, 1, 4);
  return std::string("CREATE INDEX ") + (if_not_exists ? "IF NOT EXISTS " : "") + "room_id_idx ON " + table.quoted() +
         " (room, id)";
}

std::string room_id_index_sql(const TableName& table) {
  return "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = " + table.schema_expression() +
         " AND TABLE_NAME = '" + table.name +
         "' AND SUB_PART IS NULL AND ((SEQ_IN_INDEX = 1 AND COLUMN_NAME = 'room') OR (SEQ_IN_INDEX = 2 AND "
         "COLUMN_NAME = 'id')) GROUP BY INDEX_NAME HAVING COUNT(*) = 2";
}

std::string history_sql(const TableName& table, bool after) {
  // id is ASCII with a binary collation: canonical lower-case UUIDv7 text
  // compares bytewise, which is id order, which is time order. The binary
  // collations are PAD SPACE ('lobby' = 'lobby '): the byte length makes the
  // room match exact, and is checked on the index entries.
  return "SELECT id, room, sender, payload, created_at, origin, log_partition, log_offset FROM " + table.quoted() +
         " WHERE room = ? AND OCTET_LENGTH(room) = ?" +
         (after ? " AND id > ? ORDER BY id ASC LIMIT ?" : " ORDER BY id DESC LIMIT ?");
}

std::string insert_sql(const TableName& table, std::size_t rows) {
  std::string sql = "INSERT INTO " + table.quoted() +
                    " (id, room, sender, payload, created_at, origin, log_partition, log_offset) VALUES ";
  sql.reserve(sql.size() + rows * 18 + 40);
  for (std::size_t i = 0; i < rows; ++i) sql += i ? ",(?,?,?,?,?,?,?,?)" : "(?,?,?,?,?,?,?,?)";
  sql += " ON DUPLICATE KEY UPDATE id = id";
  return sql;
}

std::string table_engine_sql(const TableName& table) {
  // The names are checked identifiers ([a-z0-9_]), so they are safe in a literal.
  return "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = " + table.schema_expression() +
         " AND TABLE_NAME = '" + table.name + "'";
}

std::string column_names_sql(const TableName& table) {
  return "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = " + table.schema_expression() +
         " AND TABLE_NAME = '" + table.name + "'";
}

std::string unique_id_index_sql(const TableName& table) {
  return "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = " + table.schema_expression() +
         " AND TABLE_NAME = '" + table.name +
         "' AND NON_UNIQUE = 0 GROUP BY INDEX_NAME HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = 'id'";
}

}  // namespace nudge::plugins::mysql
