#include "errors.hpp"

#include <pqxx/except>

namespace nudge::plugins::postgres {

ErrorClass classify_sqlstate(std::string_view s) {
  constexpr auto retry = StatusCode::unavailable;
  if (s.size() != 5) return {StatusCode::internal, false};
  const auto cls = s.substr(0, 2);
  if (cls == "08") return {retry, true};    // connection exception
  if (s == "57014") return {retry, false};  // query_canceled (statement_timeout)
  if (cls == "57") return {retry, true};    // admin/crash shutdown, cannot_connect_now
  if (cls == "53") return {retry, false};   // too many connections, disk full, out of memory
  if (cls == "40") return {retry, false};   // serialization failure, deadlock
  if (cls == "58") return {retry, false};   // system / I/O error
  if (s == "55P03") return {retry, false};  // lock_not_available (lock_timeout)
  if (s == "25006") return {retry, true};   // read_only_sql_transaction: find the primary again
  return {StatusCode::internal, false};
}

DatabaseError classify(const std::exception& e) {
  DatabaseError out;
  out.message = one_line(e.what());
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    out.sqlstate = sql->sqlstate();
    out.what = classify_sqlstate(out.sqlstate);
  } else if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    // Includes too_many_connections (53300), which libpqxx 6 throws without its SQLSTATE.
    out.what = {StatusCode::unavailable, true};
  } else if (dynamic_cast<const pqxx::transaction_rollback*>(&e)) {
    // Serialization failure, deadlock, statement completion unknown (class 40),
    // thrown by libpqxx 6 without a SQLSTATE.
    out.what = {StatusCode::unavailable, false};
  } else if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) {
    // The connection broke around a commit; the insert is idempotent, so retry.
    out.what = {StatusCode::unavailable, true};
  } else {
    out.what = {StatusCode::internal, false};
  }
  return out;
}

bool is_permanent_connect_error(std::string_view m) {
  for (std::string_view needle : {"authentication failed", "does not exist", "pg_hba.conf", "no password supplied",
                                  "permission denied", "invalid"})
    if (m.find(needle) != std::string_view::npos) return true;
  return false;
}

}  // namespace nudge::plugins::postgres
