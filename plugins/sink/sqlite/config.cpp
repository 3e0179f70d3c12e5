#include "config.hpp"

#include "nudge/sdk/sql_names.hpp"

namespace nudge::plugins::sqlite {

ConfigSchema SqliteConfig::schema() {
  ConfigSchema s;
  s.required("path", ConfigType::string, "Database file; created with its folder if missing")
      .with_example("\"${NUDGE_DATA_DIR:-var}/chat.db\"")
      .with_check([](const ConfigValue& v) {
        return std::get<std::string>(v).empty() ? std::string("must not be empty") : std::string();
      });
  s.string("table", "messages", "Table the messages are stored in; created on start")
      .with_check([](const ConfigValue& v) {
        // SQLite matches names regardless of case, so upper case is no ambiguity there.
        static const sql::IdentifierRule kIdentifier{63, false};
        return sql::is_identifier(std::get<std::string>(v), kIdentifier)
                   ? std::string()
                   : std::string("must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)");
      });
  s.string("synchronous", "full",
           "SQLite's synchronous setting in WAL mode: \"full\" makes every acknowledged batch survive a power "
           "loss; \"normal\" survives a process crash only, and is faster")
      .one_of({"full", "normal"});
  s.integer("busy_timeout_ms", 5000, "How long a write waits for another process holding the database lock")
      .range(0, 600000);
  return s;
}

SqliteConfig SqliteConfig::from(const Config& c) {
  return {c.get_string("path"), c.get_string("table"), c.get_string("synchronous"), c.get_int("busy_timeout_ms")};
}

}  // namespace nudge::plugins::sqlite
