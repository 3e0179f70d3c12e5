#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "nudge/sdk/status.hpp"
#include "nudge/sdk/text.hpp"  // one_line, for libpq's multi-line messages

namespace nudge::plugins::postgres {

/// What a database error means for the sink.
struct ErrorClass {
  /// unavailable (retrying later may work) or internal (it will not by itself).
  StatusCode code = StatusCode::internal;
  /// The session is unusable (or pointed at the wrong server): drop it and
  /// connect again on the next write.
  bool reconnect = false;
};

/// Classifies a SQLSTATE: class 08 (connection), 57 (operator intervention:
/// admin shutdown, statement timeout 57014), 53 (insufficient resources: too
/// many connections, disk full), 40 (serialization failure, deadlock), 58
/// (I/O error), 55P03 (lock timeout) and 25006 (read-only transaction: a
/// standby after failover) are retryable; everything else (22 data exception,
/// 42 schema or privilege problem, XX internal...) is not. Connection errors,
/// shutdowns and read-only sessions also ask for a new connection.
ErrorClass classify_sqlstate(std::string_view sqlstate);

/// A failure from libpqxx, classified, with the server's message on one line.
struct DatabaseError {
  ErrorClass what;
  std::string sqlstate;  ///< empty when libpqxx gives none (a lost connection)
  std::string message;
};

/// Classifies an exception thrown by libpqxx (or anything else).
DatabaseError classify(const std::exception& e);

/// True when a failed connection attempt will fail the same way however long
/// one waits: bad password, unknown role or database, pg_hba.conf rejection.
bool is_permanent_connect_error(std::string_view message);

}  // namespace nudge::plugins::postgres
