#pragma once

#include <string>
#include <string_view>

#include "nudge/sdk/status.hpp"
#include "nudge/sdk/text.hpp"  // one_line, for messages from the server

namespace nudge::plugins::mysql {

/// Which server a connection talks to. The two share the protocol and the
/// error numbers below 1900, but differ above (4031 is a timeout on MySQL and
/// a trigger error on MariaDB) and in their statement timeouts.
enum class ServerFlavour { unknown, mysql, mariadb };

std::string_view to_string(ServerFlavour flavour) noexcept;

/// What a database error means for the sink.
struct ErrorClass {
  /// unavailable (retrying later may work) or internal (it will not by itself).
  StatusCode code = StatusCode::internal;
  /// The session is unusable (or pointed at the wrong server): drop it and
  /// connect again on the next write.
  bool reconnect = false;
};

/// Error numbers the sink treats specially: client errors (2000-2999, from
/// libmariadb) and server errors of both flavours.
namespace error {
inline constexpr unsigned disk_full = 1021;             // ER_DISK_FULL
inline constexpr unsigned out_of_memory = 1037;         // ER_OUTOFMEMORY
inline constexpr unsigned out_of_sort_memory = 1038;    // ER_OUT_OF_SORTMEMORY
inline constexpr unsigned too_many_connections = 1040;  // ER_CON_COUNT_ERROR
inline constexpr unsigned out_of_resources = 1041;      // ER_OUT_OF_RESOURCES
inline constexpr unsigned db_access_denied = 1044;      // ER_DBACCESS_DENIED_ERROR
inline constexpr unsigned access_denied = 1045;         // ER_ACCESS_DENIED_ERROR
inline constexpr unsigned unknown_command = 1047;       // ER_UNKNOWN_COM_ERROR: a Galera node not yet synced
inline constexpr unsigned bad_database = 1049;          // ER_BAD_DB_ERROR
inline constexpr unsigned dup_key_name = 1061;          // ER_DUP_KEYNAME (an index of that name exists)
inline constexpr unsigned server_shutdown = 1053;       // ER_SERVER_SHUTDOWN
inline constexpr unsigned table_full = 1114;            // ER_RECORD_FILE_FULL
inline constexpr unsigned host_not_privileged = 1130;   // ER_HOST_NOT_PRIVILEGED
inline constexpr unsigned packet_too_large = 1153;      // ER_NET_PACKET_TOO_LARGE (the server then hangs up)
inline constexpr unsigned net_read_error = 1158;        // ER_NET_READ_ERROR .. ER_NET_WRITE_INTERRUPTED 1161
inline constexpr unsigned net_write_interrupted = 1161;
inline constexpr unsigned aborted_connection = 1184;          // ER_NEW_ABORTING_CONNECTION
inline constexpr unsigned too_many_user_connections = 1203;   // ER_TOO_MANY_USER_CONNECTIONS
inline constexpr unsigned lock_wait_timeout = 1205;           // ER_LOCK_WAIT_TIMEOUT
inline constexpr unsigned deadlock = 1213;                    // ER_LOCK_DEADLOCK
inline constexpr unsigned user_limit_reached = 1226;          // ER_USER_LIMIT_REACHED
inline constexpr unsigned not_supported_auth_mode = 1251;     // ER_NOT_SUPPORTED_AUTH_MODE
inline constexpr unsigned read_only = 1290;                   // ER_OPTION_PREVENTS_STATEMENT (--read-only)
inline constexpr unsigned query_interrupted = 1317;           // ER_QUERY_INTERRUPTED (KILL QUERY)
inline constexpr unsigned data_too_long = 1406;               // ER_DATA_TOO_LONG
inline constexpr unsigned need_reprepare = 1615;              // ER_NEED_REPREPARE
inline constexpr unsigned access_denied_no_password = 1698;   // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
inline constexpr unsigned read_only_transaction = 1792;       // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
inline constexpr unsigned read_only_mode = 1836;              // ER_READ_ONLY_MODE
inline constexpr unsigned connection_killed = 1927;           // ER_CONNECTION_KILLED (MariaDB)
inline constexpr unsigned statement_timeout = 1969;           // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
inline constexpr unsigned query_timeout = 3024;               // ER_QUERY_TIMEOUT (MySQL max_execution_time)
inline constexpr unsigned client_interaction_timeout = 4031;  // MySQL 8 only; on MariaDB a trigger error

inline constexpr unsigned socket_create = 2001;            // CR_SOCKET_CREATE_ERROR
inline constexpr unsigned connection = 2002;               // CR_CONNECTION_ERROR (refused, socket)
inline constexpr unsigned conn_host = 2003;                // CR_CONN_HOST_ERROR
inline constexpr unsigned ipsock = 2004;                   // CR_IPSOCK_ERROR
inline constexpr unsigned unknown_host = 2005;             // CR_UNKNOWN_HOST (DNS: may appear later)
inline constexpr unsigned server_gone = 2006;              // CR_SERVER_GONE_ERROR
inline constexpr unsigned server_lost = 2013;              // CR_SERVER_LOST
inline constexpr unsigned commands_out_of_sync = 2014;     // CR_COMMANDS_OUT_OF_SYNC
inline constexpr unsigned malformed_packet = 2027;         // CR_MALFORMED_PACKET
inline constexpr unsigned server_lost_extended = 2055;     // CR_SERVER_LOST_EXTENDED
inline constexpr unsigned auth_plugin_cannot_load = 2059;  // CR_AUTH_PLUGIN_CANNOT_LOAD
inline constexpr unsigned net_read = 5013;                 // CR_ERR_NET_READ
inline constexpr unsigned net_write = 5014;                // CR_ERR_NET_WRITE
}  // namespace error

/// Classifies an error number:
/// * a lost or refused connection (2001-2006, 2013, 2055, 5013, 5014), a
///   shutdown (1053), a killed connection (1927, MySQL's 4031), a server-side
///   network error (1158-1161, 1184), a read-only server (1290, 1792, 1836: a
///   replica after failover) and a Galera node not ready (1047): retryable,
///   and the session is dropped;
/// * lock wait timeout 1205, deadlock 1213, KILL QUERY 1317, statement
///   timeouts (MariaDB 1969, MySQL 3024), too many connections (1040, 1203,
///   1226), a full disk or table (1021, 1114), out of memory (1037, 1038,
///   1041), 1615: retryable, the session is kept;
/// * a packet over max_allowed_packet (1153, the server hangs up), commands
///   out of sync (2014), a malformed packet (2027): not retryable, but the
///   session is dropped (the next one picks up a raised max_allowed_packet);
/// * everything else (data errors 1366/1406/1292, a missing table 1146,
///   privileges 1142...): not retryable, the session is kept.
ErrorClass classify_error(unsigned code, ServerFlavour flavour);

/// True for a failed connection that waiting will not cure: bad user or
/// password, unknown database, host not allowed, authentication plugin.
bool is_credentials_error(unsigned code);

/// A failed call into libmariadb, classified.
struct DatabaseError {
  ErrorClass what;
  unsigned code = 0;     ///< mysql_errno; 0 when the sink itself found the problem
  std::string sqlstate;  ///< mysql_sqlstate
  std::string message;   ///< on one line

  /// `message (error 1205, SQLSTATE HY000)`.
  std::string describe() const;
};

/// Builds a DatabaseError from what libmariadb reports.
DatabaseError make_error(unsigned code, std::string_view sqlstate, std::string_view message, ServerFlavour flavour);

}  // namespace nudge::plugins::mysql
