#include "server.hpp"

#include <charconv>

namespace nudge::plugins::mysql {

std::string ServerInfo::describe() const {
  return std::string(to_string(flavour)) + " " + std::to_string(major) + "." + std::to_string(minor) + "." +
         std::to_string(patch);
}

bool ServerInfo::at_least(unsigned ma, unsigned mi, unsigned pa) const {
  if (major != ma) return major > ma;
  if (minor != mi) return minor > mi;
  return patch >= pa;
}

ServerInfo parse_server_info(std::string_view version, bool mariadb) {
  ServerInfo info;
  const bool names_mariadb = version.find("MariaDB") != std::string_view::npos;
  info.flavour = mariadb || names_mariadb ? ServerFlavour::mariadb : ServerFlavour::mysql;
  // MariaDB before 11 prefixed "5.5.5-" for clients that insist on version 5.
  if (names_mariadb && version.substr(0, 6) == "5.5.5-") version.remove_prefix(6);
  unsigned* parts[] = {&info.major, &info.minor, &info.patch};
  const char* p = version.data();
  const char* end = version.data() + version.size();
  for (std::size_t i = 0; i < 3; ++i) {
    auto [next, ec] = std::from_chars(p, end, *parts[i]);
    if (ec != std::errc()) break;
    p = next;
    if (p == end || *p != '.') break;
    ++p;
  }
  return info;
}

std::string session_setup_sql(const ServerInfo& server, std::int64_t statement_timeout_ms) {
  std::string sql =
      "SET SESSION time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', autocommit = 1";
  switch (server.flavour) {
    case ServerFlavour::mariadb:
      // Seconds, with a fraction; since 10.1.1.
      if (server.at_least(10, 1, 1)) {
        const auto ms = statement_timeout_ms % 1000;
        sql += ", max_statement_time = " + std::to_string(statement_timeout_ms / 1000) + "." +
               (ms < 100 ? ms < 10 ? "00" : "0" : "") + std::to_string(ms);
      }
      break;
    case ServerFlavour::mysql:
      if (server.at_least(5, 7, 8)) sql += ", max_execution_time = " + std::to_string(statement_timeout_ms);
      if (statement_timeout_ms > 0)
        sql += ", innodb_lock_wait_timeout = " + std::to_string((statement_timeout_ms + 999) / 1000);
      break;
    case ServerFlavour::unknown:
      break;
  }
  return sql;
}

}  // namespace nudge::plugins::mysql
