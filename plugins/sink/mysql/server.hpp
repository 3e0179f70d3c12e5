#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "errors.hpp"

namespace nudge::plugins::mysql {

/// The server a session talks to, read once at connect.
struct ServerInfo {
  ServerFlavour flavour = ServerFlavour::unknown;
  unsigned major = 0, minor = 0, patch = 0;

  /// `MariaDB 10.11.19` or `MySQL 8.0.36`.
  std::string describe() const;
  /// True when the version is at least major.minor.patch.
  bool at_least(unsigned ma, unsigned mi, unsigned pa = 0) const;
};

/// Reads mysql_get_server_info(): `10.11.19-MariaDB-0+deb12u1`, the
/// `5.5.5-10.3.39-MariaDB` older MariaDB servers send for old clients, or
/// `8.0.36` (MySQL). `mariadb` is what the connector says (mariadb_connection());
/// the string decides when it names MariaDB.
ServerInfo parse_server_info(std::string_view version, bool mariadb);

/// The one statement that sets up a new session:
/// * `time_zone = '+00:00'`, so DATETIME values (created_at, and stored_at's
///   CURRENT_TIMESTAMP(3) default) are UTC;
/// * `sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'`, so a value that
///   does not fit fails instead of being silently mangled, whatever the
///   server's default;
/// * `autocommit = 1`, whatever the server's default (a batch of several
///   statements runs in START TRANSACTION ... COMMIT);
/// * the statement timeout: MariaDB's `max_statement_time` (seconds, every
///   statement); on MySQL, which has no timeout for INSERT,
///   `innodb_lock_wait_timeout` (whole seconds, rounded up, at least 1: the
///   usual reason an insert waits) and `max_execution_time` (ms, SELECTs only).
///   0 leaves the server's defaults.
std::string session_setup_sql(const ServerInfo& server, std::int64_t statement_timeout_ms);

}  // namespace nudge::plugins::mysql
