#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::postgres {

/// A table name, optionally schema-qualified (`archive.messages`).
struct TableName {
  std::string schema;  ///< empty: the first schema of the search_path
  std::string name;

  /// `"schema"."name"` or `"name"`, ready to paste into SQL.
  std::string quoted() const;
  /// `schema.name` or `name`, for log lines.
  std::string display() const;
  /// The name of the (room, id) index that serves history reads,
  /// `"<name>_room_id_idx"`, quoted, without schema (an index always lives in
  /// its table's schema).
  std::string index_quoted() const;
};

struct PostgresConfig {
  std::string url;
  TableName table;
  std::int64_t connect_timeout_ms = 5000;
  std::int64_t statement_timeout_ms = 30000;
  std::int64_t wait_for_database_ms = 30000;
  std::string application_name;
  std::int64_t writers = 2;
  std::int64_t health_check_interval_ms = 1000;

  static ConfigSchema schema();
  static PostgresConfig from(const Config& config);

  /// The libpq connection string actually used: `url` plus connect_timeout,
  /// application_name and client_encoding.
  std::string conninfo() const;
};

/// Parses `table` or `schema.table`, each a lower-case SQL identifier
/// ([a-z_][a-z0-9_]*, at most 63 bytes; the table at most kMaxTableName);
/// nullopt with `error` set when invalid.
std::optional<TableName> parse_table_name(std::string_view text, std::string& error);

/// Checks a connection string offline (no I/O): a postgresql:// or
/// postgres:// URI or a key=value conninfo that libpq can parse, and that does
/// not set a parameter this plugin sets from its own keys. Returns what is
/// wrong, or "" when it is fine.
std::string check_url(const std::string& url);

/// The connection string for messages and logs, never with the password:
/// `postgresql://user@host:port/dbname`.
std::string redact_url(const std::string& url);

/// The largest table name (without schema) whose index names still fit in 63
/// bytes: `_room_id_idx`, and `_room_created_idx` that earlier versions made.
inline constexpr std::size_t kMaxTableName = 63 - std::string_view("_room_created_idx").size();

}  // namespace nudge::plugins::postgres
