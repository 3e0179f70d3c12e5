#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::mysql {

/// Where to connect, as parsed from `mysql://user:password@host:port/database`
/// (or `mariadb://`). User, password and database are percent-decoded.
struct MysqlUrl {
  std::string user;
  std::string password;
  std::string host;  ///< a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = 3306;
  std::string database;

  /// `mysql://user@host:port/database`, never with the password, for logs and errors.
  std::string redacted() const;
};

/// Parses a URL offline; nullopt with `error` set when it is not of the form
/// `mysql://user[:password]@host[:port]/database` (or `mariadb://...`).
std::optional<MysqlUrl> parse_url(std::string_view text, std::string& error);

/// A table name, optionally qualified with its database (`archive.messages`).
struct TableName {
  std::string schema;  ///< empty: the database of the url
  std::string name;

  /// `` `schema`.`name` `` or `` `name` ``, ready to paste into SQL.
  std::string quoted() const;
  /// `schema.name` or `name`, for log lines.
  std::string display() const;
  /// A SQL expression for the table's database, to compare with
  /// information_schema's TABLE_SCHEMA: `'schema'` or `DATABASE()`.
  std::string schema_expression() const;
};

/// Parses `table` or `database.table`, each a lower-case identifier
/// ([a-z_][a-z0-9_]*, at most 64 bytes, MySQL's limit); nullopt with `error`
/// set when invalid.
std::optional<TableName> parse_table_name(std::string_view text, std::string& error);

struct MysqlConfig {
  MysqlUrl url;
  TableName table;
  std::int64_t connect_timeout_ms = 5000;
  std::int64_t statement_timeout_ms = 30000;
  std::int64_t wait_for_database_ms = 30000;
  std::int64_t health_check_interval_ms = 1000;

  static ConfigSchema schema();
  /// From a Config the schema has validated; throws std::invalid_argument otherwise.
  static MysqlConfig from(const Config& config);

  /// MYSQL_OPT_CONNECT_TIMEOUT: whole seconds, rounded up.
  unsigned connect_timeout_s() const;
  /// MYSQL_OPT_READ_TIMEOUT and MYSQL_OPT_WRITE_TIMEOUT, the client's backstop
  /// for a server that stops answering: statement_timeout_ms plus
  /// connect_timeout_ms, rounded up to whole seconds; 0 (none) when the
  /// statement timeout is disabled.
  unsigned io_timeout_s() const;
};

}  // namespace nudge::plugins::mysql
