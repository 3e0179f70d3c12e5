#include "errors.hpp"

namespace nudge::plugins::mysql {

std::string_view to_string(ServerFlavour flavour) noexcept {
  switch (flavour) {
    case ServerFlavour::unknown:
      return "unknown";
    case ServerFlavour::mysql:
      return "MySQL";
    case ServerFlavour::mariadb:
      return "MariaDB";
  }
  return "unknown";
}

ErrorClass classify_error(unsigned code, ServerFlavour flavour) {
  constexpr ErrorClass retry_reconnect{StatusCode::unavailable, true};
  constexpr ErrorClass retry{StatusCode::unavailable, false};
  constexpr ErrorClass fatal_reconnect{StatusCode::internal, true};
  constexpr ErrorClass fatal{StatusCode::internal, false};
  using namespace error;
  switch (code) {
    // The connection is gone, or going.
    case socket_create:
    case connection:
    case conn_host:
    case ipsock:
    case unknown_host:
    case server_gone:
    case server_lost:
    case server_lost_extended:
    case net_read:
    case net_write:
    case server_shutdown:
    case connection_killed:
    case aborted_connection:
      return retry_reconnect;
    // The server saw the connection break.
    case net_read_error:
    case net_read_error + 1:
    case net_read_error + 2:
    case net_write_interrupted:
      return retry_reconnect;
    // Connected to the wrong server: a replica after a failover, a Galera
    // node that is not synced. A new connection may find the primary.
    case read_only:
    case read_only_transaction:
    case read_only_mode:
    case unknown_command:
      return retry_reconnect;
    case client_interaction_timeout:
      return flavour == ServerFlavour::mysql ? retry_reconnect : fatal;
    // Waiting helps; the session is fine.
    case lock_wait_timeout:
    case deadlock:
    case query_interrupted:
    case statement_timeout:
    case query_timeout:
    case too_many_connections:
    case too_many_user_connections:
    case user_limit_reached:
    case disk_full:
    case table_full:
    case out_of_memory:
    case out_of_sort_memory:
    case out_of_resources:
      return retry;
    case need_reprepare:
      return retry_reconnect;
    // Will not clear up by itself, and the session is not usable afterwards.
    case packet_too_large:
    case commands_out_of_sync:
    case malformed_packet:
      return fatal_reconnect;
    default:
      return fatal;
  }
}

bool is_credentials_error(unsigned code) {
  using namespace error;
  switch (code) {
    case db_access_denied:
    case access_denied:
    case bad_database:
    case host_not_privileged:
    case not_supported_auth_mode:
    case access_denied_no_password:
    case auth_plugin_cannot_load:
      return true;
    default:
      return false;
  }
}

std::string DatabaseError::describe() const {
  if (code == 0) return message;
  std::string out = message + " (error " + std::to_string(code);
  if (!sqlstate.empty() && sqlstate != "00000") out += ", SQLSTATE " + sqlstate;
  return out + ")";
}

DatabaseError make_error(unsigned code, std::string_view sqlstate, std::string_view message, ServerFlavour flavour) {
  DatabaseError e;
  e.what = classify_error(code, flavour);
  e.code = code;
  e.sqlstate = std::string(sqlstate);
  e.message = one_line(message);
  return e;
}

}  // namespace nudge::plugins::mysql
