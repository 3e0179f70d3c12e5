#include "config.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <stdexcept>

#include <libpq-fe.h>

#include "nudge/sdk/health_probe.hpp"
#include "nudge/sdk/sql_names.hpp"

namespace nudge::plugins::postgres {

namespace {

/// Unquoted names as PostgreSQL folds them: lower case, at most NAMEDATALEN - 1 bytes.
const sql::IdentifierRule kIdentifier{63, true};

constexpr std::string_view kUriPrefixes[] = {"postgresql://", "postgres://"};

bool is_uri(std::string_view url) {
  for (auto prefix : kUriPrefixes)
    if (url.substr(0, prefix.size()) == prefix) return true;
  return false;
}

/// The parameters libpq reads from a connection string, by keyword; only
/// those the string sets. nullopt with `error` set when libpq cannot parse it.
std::optional<std::map<std::string, std::string>> parse_conninfo(const std::string& url, std::string& error) {
  char* message = nullptr;
  std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(PQconninfoParse(url.c_str(), &message),
                                                                       &PQconninfoFree);
  if (!options) {
    error = message ? message : "out of memory";
    PQfreemem(message);
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
    return std::nullopt;
  }
  std::map<std::string, std::string> set;
  for (const PQconninfoOption* o = options.get(); o->keyword; ++o)
    if (o->val) set[o->keyword] = o->val;
  return set;
}

/// The parameters this plugin sets itself, and the key that sets each.
constexpr std::pair<std::string_view, std::string_view> kOwnParameters[] = {
    {"connect_timeout", "set it with the 'connect_timeout_ms' key instead"},
    {"application_name", "set it with the 'application_name' key instead"},
    {"client_encoding", "the sink always talks UTF8"},
};

std::string percent_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string conninfo_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

}  // namespace

std::optional<TableName> parse_table_name(std::string_view text, std::string& error) {
  auto parsed = sql::parse_qualified_name(text, kIdentifier, "schema", error);
  if (!parsed) return std::nullopt;
  if (parsed->name.size() > kMaxTableName) {
    error = "the table name must be at most " + std::to_string(kMaxTableName) +
            " characters, so its index name fits PostgreSQL's 63";
    return std::nullopt;
  }
  return TableName{std::move(parsed->qualifier), std::move(parsed->name)};
}

std::string TableName::quoted() const {
  // Names are checked identifiers, so quoting only guards against keywords ("user", "order").
  return sql::QualifiedName{schema, name}.quoted('"');
}

std::string TableName::display() const { return schema.empty() ? name : schema + "." + name; }

std::string TableName::index_quoted() const { return "\"" + name + "_room_id_idx\""; }

std::string check_url(const std::string& url) {
  if (url.empty()) return "must not be empty";
  if (url.find("://") != std::string::npos && !is_uri(url))
    return "must start with postgresql:// or postgres:// (or be a key=value connection string)";
  std::string error;
  auto set = parse_conninfo(url, error);
  if (!set) return "is not a PostgreSQL connection string: " + error;
  for (auto [keyword, hint] : kOwnParameters)
    if (set->count(std::string(keyword))) return "must not set '" + std::string(keyword) + "': " + std::string(hint);
  return {};
}

std::string redact_url(const std::string& url) {
  std::string error;
  auto set = parse_conninfo(url, error);
  if (!set) return "(unparseable connection string)";
  auto get = [&](const char* key) {
    auto it = set->find(key);
    return it == set->end() ? std::string() : it->second;
  };
  std::string host = get("host");
  if (host.empty()) host = get("hostaddr");
  std::string out = "postgresql://";
  if (auto user = get("user"); !user.empty()) out += user + "@";
  out += host;
  if (auto port = get("port"); !port.empty()) out += ":" + port;
  out += "/" + get("dbname");
  return out;
}

ConfigSchema PostgresConfig::schema() {
  ConfigSchema s;
  s.required("url", ConfigType::string,
             "PostgreSQL connection string: a postgresql:// URI or a libpq key=value string. "
             "Environment variables can be used: \"${DATABASE_URL}\"")
      .with_example("\"postgresql://nudge:nudge@127.0.0.1:5432/nudge\"")
      .with_check([](const ConfigValue& v) { return check_url(std::get<std::string>(v)); });
  s.string("table", "messages",
           "Table the messages are stored in, optionally schema-qualified (\"archive.messages\"); "
           "created or migrated on start")
      .with_check([](const ConfigValue& v) {
        std::string error;
        return parse_table_name(std::get<std::string>(v), error) ? std::string() : error;
      });
  s.integer("connect_timeout_ms", 5000,
            "How long one connection attempt may take (libpq's connect_timeout, rounded up to whole seconds)")
      .range(1000, 600000);
  s.integer("statement_timeout_ms", 30000,
            "PostgreSQL's statement_timeout for this sink's session: a batch insert taking longer is "
            "cancelled and retried; 0 disables it")
      .range(0, 3600000);
  s.integer("wait_for_database_ms", 30000,
            "How long start() keeps retrying an unreachable database before the startup fails; "
            "0 fails at the first refused connection")
      .range(0, 3600000);
  s.string("application_name", "nudge", "application_name of the session, shown in pg_stat_activity")
      .with_check([](const ConfigValue& v) {
        const auto& name = std::get<std::string>(v);
        if (name.size() > 63) return std::string("must be at most 63 characters");
        for (unsigned char c : name)
          if (c < 0x20 || c > 0x7e) return std::string("must be printable ASCII");
        return std::string();
      });
  s.integer("writers", 2,
            "Connections a batch is written over at once, each inserting a slice of it (a batch of fewer than "
            "500 rows per connection uses fewer). One PostgreSQL backend uses one core; the inserts are "
            "idempotent, so a batch one slice of which failed is written again whole without a second row")
      .range(1, 16);
  HealthProbe::interval_key(s);
  return s;
}

PostgresConfig PostgresConfig::from(const Config& c) {
  std::string error;
  auto table = parse_table_name(c.get_string("table"), error);
  if (!table) throw std::invalid_argument("table: " + error);  // validated by the schema already
  return {c.get_string("url"),
          *table,
          c.get_int("connect_timeout_ms"),
          c.get_int("statement_timeout_ms"),
          c.get_int("wait_for_database_ms"),
          c.get_string("application_name"),
          c.get_int("writers"),
          c.get_int(HealthProbe::kIntervalKey)};
}

std::string PostgresConfig::conninfo() const {
  // libpq counts connect_timeout in whole seconds and treats 1 as 2.
  const auto seconds = std::max<std::int64_t>(2, (connect_timeout_ms + 999) / 1000);
  if (is_uri(url)) {
    std::string out = url;
    if (url.find('?') == std::string::npos) out += '?';
    else if (out.back() != '?' && out.back() != '&') out += '&';
    out += "connect_timeout=" + std::to_string(seconds) + "&application_name=" + percent_encode(application_name) +
           "&client_encoding=UTF8";
    return out;
  }
  return url + " connect_timeout=" + std::to_string(seconds) + " application_name=" + conninfo_quote(application_name) +
         " client_encoding=UTF8";
}

}  // namespace nudge::plugins::postgres
