#include "config.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace nudge::plugins::mysql {

namespace {

constexpr std::string_view kSchemes[] = {"mysql://", "mariadb://"};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decodes %XX escapes; nullopt on a malformed one.
std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
           c == '_';
  });
}

bool is_ipv6(std::string_view host) {
  if (host.find(':') == std::string_view::npos) return false;
  return std::all_of(host.begin(), host.end(), [](char c) { return hex_value(c) >= 0 || c == ':' || c == '.'; });
}

}  // namespace

std::optional<MysqlUrl> parse_url(std::string_view text, std::string& error) {
  const char* form = " (expected mysql://user:password@host:port/database)";
  std::string_view rest;
  for (auto scheme : kSchemes)
    if (text.substr(0, scheme.size()) == scheme) rest = text.substr(scheme.size());
  if (rest.data() == nullptr) {
    error = text.empty() ? "must not be empty" : std::string("must start with mysql:// or mariadb://") + form;
    return std::nullopt;
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    error = "must not have query parameters or a fragment: the sink sets its connection options from its own keys";
    return std::nullopt;
  }
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash + 1 == rest.size()) {
    error = std::string("must name a database") + form;
    return std::nullopt;
  }
  const std::string_view authority = rest.substr(0, slash);
  MysqlUrl url;

  const auto at = authority.rfind('@');
  if (at == std::string_view::npos) {
    error = std::string("must name a user") + form;
    return std::nullopt;
  }
  const std::string_view userinfo = authority.substr(0, at);
  const auto colon = userinfo.find(':');
  auto user = percent_decode(userinfo.substr(0, colon));
  auto password = colon == std::string_view::npos ? std::optional<std::string>("")
                                                  : percent_decode(userinfo.substr(colon + 1));
  if (!user || !password) {
    error = "has a malformed %-escape in the user or password";
    return std::nullopt;
  }
  if (user->empty()) {
    error = std::string("must name a user") + form;
    return std::nullopt;
  }
  url.user = std::move(*user);
  url.password = std::move(*password);

  std::string_view hostport = authority.substr(at + 1);
  std::string_view port;
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string_view::npos || !is_ipv6(hostport.substr(1, close - 1))) {
      error = "has a malformed IPv6 address (expected [addr]:port)";
      return std::nullopt;
    }
    url.host = std::string(hostport.substr(1, close - 1));
    const auto after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = "has a malformed IPv6 address (expected [addr]:port)";
        return std::nullopt;
      }
      port = after.substr(1);
      if (port.empty()) port = "x";  // "[::1]:" is as wrong as a bad port
    }
  } else {
    const auto c = hostport.find(':');
    url.host = std::string(hostport.substr(0, c));
    if (c != std::string_view::npos) port = hostport.substr(c + 1).empty() ? "x" : hostport.substr(c + 1);
    if (!is_host_name(url.host)) {
      error = url.host.empty() ? std::string("must name a host") + form
                               : "has an invalid host name '" + url.host + "'";
      return std::nullopt;
    }
  }
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      error = "has an invalid port '" + std::string(port) + "' (expected 1 to 65535)";
      return std::nullopt;
    }
    url.port = static_cast<std::uint16_t>(value);
  }

  auto database = percent_decode(rest.substr(slash + 1));
  if (!database) {
    error = "has a malformed %-escape in the database name";
    return std::nullopt;
  }
  if (database->size() > 64 || database->find_first_of(std::string_view("/\\.\0", 4)) != std::string::npos) {
    error = "has an invalid database name (at most 64 characters, without '/', '\\' or '.')";
    return std::nullopt;
  }
  url.database = std::move(*database);
  return url;
}

std::string MysqlUrl::redacted() const {
  const std::string h = host.find(':') == std::string::npos ? host : "[" + host + "]";
  return "mysql://" + user + "@" + h + ":" + std::to_string(port) + "/" + database;
}

bool is_identifier(std::string_view name) {
  if (name.empty() || name.size() > 64 || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

std::optional<TableName> parse_table_name(std::string_view text, std::string& error) {
  TableName table;
  const auto dot = text.find('.');
  std::string_view name = text;
  if (dot != std::string_view::npos) {
    table.schema = std::string(text.substr(0, dot));
    name = text.substr(dot + 1);
    if (!is_identifier(table.schema)) {
      error = "the database '" + table.schema +
              "' must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 64 characters)";
      return std::nullopt;
    }
  }
  if (!is_identifier(name)) {
    error = "must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 64 characters), optionally "
            "qualified with its database (\"archive.messages\")";
    return std::nullopt;
  }
  table.name = std::string(name);
  return table;
}

std::string TableName::quoted() const {
  // Names are checked identifiers, so quoting only guards against keywords (`order`, `user`).
  return (schema.empty() ? "" : "`" + schema + "`.") + "`" + name + "`";
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
  s.integer("health_check_interval_ms", 1000,
            "How often an idle sink checks its connection with `SELECT 1` (reconnecting if it was lost), so "
            "readiness notices a stopped server without traffic; skipped while a write runs")
      .range(100, 60000)
      .reloadable();
  return s;
}

MysqlConfig MysqlConfig::from(const Config& c) {
  std::string error;
  auto url = parse_url(c.get_string("url"), error);
  if (!url) throw std::invalid_argument("url: " + error);  // validated by the schema already
  auto table = parse_table_name(c.get_string("table"), error);
  if (!table) throw std::invalid_argument("table: " + error);
  return {std::move(*url), std::move(*table), c.get_int("connect_timeout_ms"), c.get_int("statement_timeout_ms"),
          c.get_int("wait_for_database_ms"), c.get_int("health_check_interval_ms")};
}

unsigned MysqlConfig::connect_timeout_s() const {
  return static_cast<unsigned>(std::max<std::int64_t>(1, (connect_timeout_ms + 999) / 1000));
}

unsigned MysqlConfig::io_timeout_s() const {
  if (statement_timeout_ms == 0) return 0;
  return static_cast<unsigned>((statement_timeout_ms + connect_timeout_ms + 999) / 1000);
}

}  // namespace nudge::plugins::mysql
