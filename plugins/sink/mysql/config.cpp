#include "config.hpp"

#include <algorithm>
#include <stdexcept>

#include "nudge/sdk/health_probe.hpp"
#include "nudge/sdk/sql_names.hpp"
#include "nudge/sdk/url.hpp"

namespace nudge::plugins::mysql {

std::optional<MysqlUrl> parse_url(std::string_view text, std::string& error) {
  const char* form = " (expected mysql://user:password@host:port/database)";
  static const ServerUrlForm kForm{{"mysql", "mariadb"}, false, 3306, true, false, false};
  UrlError why;
  auto url = parse_server_url(text, kForm, why);
  if (!url) {
    using Part = UrlError::Part;
    switch (why.part) {
      case Part::empty:
        error = "must not be empty";
        break;
      case Part::scheme:
        error = std::string("must start with mysql:// or mariadb://") + form;
        break;
      case Part::query_not_allowed:
      case Part::query:
        error = "must not have query parameters or a fragment: the sink sets its connection options from its own keys";
        break;
      case Part::path_not_allowed:
      case Part::path:
        error = "has a malformed %-escape in the database name";
        break;
      case Part::userinfo:
        error = "has a malformed %-escape in the user or password";
        break;
      case Part::host_empty:
        error = std::string("must name a host") + form;
        break;
      case Part::host_name:
        error = "has an invalid host name '" + why.text + "'";
        break;
      case Part::ipv6:
        error = "has a malformed IPv6 address (expected [addr]:port)";
        break;
      case Part::port_empty:
      case Part::port:
        error = "has an invalid port '" + why.text + "' (expected 1 to 65535)";
        break;
    }
    return std::nullopt;
  }
  if (url->path.empty()) {
    error = std::string("must name a database") + form;
    return std::nullopt;
  }
  if (url->user.empty()) {
    error = std::string("must name a user") + form;
    return std::nullopt;
  }
  if (url->path.size() > 64 || url->path.find_first_of(std::string_view("/\\.\0", 4)) != std::string::npos) {
    error = "has an invalid database name (at most 64 characters, without '/', '\\' or '.')";
    return std::nullopt;
  }
  return MysqlUrl{std::move(url->user), std::move(url->password), std::move(url->host), url->port,
                  std::move(url->path)};
}

std::string MysqlUrl::redacted() const { return "mysql://" + user + "@" + join_host_port(host, port) + "/" + database; }

std::optional<TableName> parse_table_name(std::string_view text, std::string& error) {
  // Lower case only: on Linux MySQL's table names are case-sensitive, and one
  // spelling spares the reader from guessing which the server has.
  static const sql::IdentifierRule kIdentifier{64, true};
  auto parsed = sql::parse_qualified_name(text, kIdentifier, "database", error);
  if (!parsed) return std::nullopt;
  return TableName{std::move(parsed->qualifier), std::move(parsed->name)};
}

std::string TableName::quoted() const {
  // Names are checked identifiers, so quoting only guards against keywords (`order`, `user`).
  return sql::QualifiedName{schema, name}.quoted('`');
}

std::string TableName::display() const { return schema.empty() ? name : schema + "." + name; }

std::string TableName::schema_expression() const { return schema.empty() ? "DATABASE()" : "'" + schema + "'"; }

ConfigSchema MysqlConfig::schema() {
  ConfigSchema s;
  s.required("url", ConfigType::string,
             "MySQL or MariaDB server and database: mysql://user:password@host:port/database (or mariadb://); "
             "user, password and database may be %-encoded. Environment variables can be used: \"${MYSQL_URL}\"")
      .with_example("\"mysql://nudge:nudge@127.0.0.1:3306/nudge\"")
      .with_check([](const ConfigValue& v) {
        std::string error;
        return parse_url(std::get<std::string>(v), error) ? std::string() : error;
      });
  s.string("table", "messages",
           "Table the messages are stored in, optionally qualified with its database (\"archive.messages\"); "
           "created on start when missing")
      .with_check([](const ConfigValue& v) {
        std::string error;
        return parse_table_name(std::get<std::string>(v), error) ? std::string() : error;
      });
  s.integer("connect_timeout_ms", 5000,
            "How long one connection attempt may take (MYSQL_OPT_CONNECT_TIMEOUT, rounded up to whole seconds)")
      .range(1000, 600000);
  s.integer("statement_timeout_ms", 30000,
            "Longest a statement may run: MariaDB's max_statement_time, or on MySQL innodb_lock_wait_timeout "
            "and max_execution_time; a batch taking longer is cancelled and retried; 0 disables it")
      .range(0, 3600000);
  s.integer("wait_for_database_ms", 30000,
            "How long start() keeps retrying an unreachable server before the startup fails; "
            "0 fails at the first refused connection")
      .range(0, 3600000);
  HealthProbe::interval_key(s);
  return s;
}

MysqlConfig MysqlConfig::from(const Config& c) {
  std::string error;
  auto url = parse_url(c.get_string("url"), error);
  if (!url) throw std::invalid_argument("url: " + error);  // validated by the schema already
  auto table = parse_table_name(c.get_string("table"), error);
  if (!table) throw std::invalid_argument("table: " + error);
  return {std::move(*url),
          std::move(*table),
          c.get_int("connect_timeout_ms"),
          c.get_int("statement_timeout_ms"),
          c.get_int("wait_for_database_ms"),
          c.get_int(HealthProbe::kIntervalKey)};
}

unsigned MysqlConfig::connect_timeout_s() const {
  return static_cast<unsigned>(std::max<std::int64_t>(1, (connect_timeout_ms + 999) / 1000));
}

unsigned MysqlConfig::io_timeout_s() const {
  if (statement_timeout_ms == 0) return 0;
  return static_cast<unsigned>((statement_timeout_ms + connect_timeout_ms + 999) / 1000);
}

}  // namespace nudge::plugins::mysql
