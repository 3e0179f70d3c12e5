#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nudge {

/// The types a config key can have. TOML integers are accepted where a
/// number is expected; nothing else is converted.
enum class ConfigType { boolean, integer, number, string, string_list };

std::string_view to_string(ConfigType type) noexcept;

using ConfigValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::string>>;

/// Renders a value the way it would be written in TOML (`"text"`, `10`, `["a", "b"]`).
std::string to_toml(const ConfigValue& value);

/// One key of a plugin's configuration: its type, default and description in
/// one place, feeding validation, `nudge describe` and the reference docs.
struct ConfigField {
  std::string key;
  ConfigType type = ConfigType::string;
  /// nullopt makes the key required.
  std::optional<ConfigValue> default_value;
  std::string description;
  std::string example;
  std::optional<std::int64_t> min;
  std::optional<std::int64_t> max;
  std::vector<std::string> allowed;
  /// Extra check; returns an empty string when the value is fine, else what
  /// was expected ("must be host:port").
  std::function<std::string(const ConfigValue&)> check;
  /// The plugin can take a new value of this key while running
  /// (Plugin::reconfigure); other keys need a restart to change.
  bool live = false;

  bool required() const noexcept { return !default_value.has_value(); }

  /// Inclusive bounds for integers and numbers, and for the length of lists.
  ConfigField& range(std::int64_t lo, std::int64_t hi) {
    min = lo;
    max = hi;
    return *this;
  }
  /// The only values a string may take.
  ConfigField& one_of(std::vector<std::string> values) {
    allowed = std::move(values);
    return *this;
  }
  ConfigField& with_check(std::function<std::string(const ConfigValue&)> fn) {
    check = std::move(fn);
    return *this;
  }
  ConfigField& with_example(std::string text) {
    example = std::move(text);
    return *this;
  }
  /// Declares the key changeable live: `nudge reload` passes a new value to
  /// Plugin::reconfigure instead of refusing it as needing a restart.
  ConfigField& reloadable() {
    live = true;
    return *this;
  }

  /// Checks a value already of this field's type against range, allowed
  /// values and the extra check. Returns what was expected, or "" when valid.
  std::string validate(const ConfigValue& value) const;
};

/// A plugin's configuration schema. Built once by the plugin's `schema()`;
/// keys absent from it are errors in a pipeline file.
///
///     ConfigSchema s;
///     s.integer("batch_size", 500, "Rows per INSERT").range(1, 10000);
///     s.required_string("path", "Database file").with_example("var/chat.db");
class ConfigSchema {
 public:
  ConfigField& boolean(std::string key, bool default_value, std::string description);
  ConfigField& integer(std::string key, std::int64_t default_value, std::string description);
  ConfigField& number(std::string key, double default_value, std::string description);
  ConfigField& string(std::string key, std::string default_value, std::string description);
  ConfigField& string_list(std::string key, std::vector<std::string> default_value, std::string description);
  /// A key without a default, which every pipeline must set.
  ConfigField& required(std::string key, ConfigType type, std::string description);
  /// Adds a fully described field. Declaring a key twice throws std::logic_error.
  ConfigField& add(ConfigField field);

  /// The field named `key`, or nullptr.
  const ConfigField* find(std::string_view key) const;
  /// Fields in declaration order (references stay valid as fields are added).
  const std::deque<ConfigField>& fields() const noexcept { return fields_; }

 private:
  std::deque<ConfigField> fields_;
};

/// A plugin's validated configuration: every key of its schema is present,
/// with the pipeline's value or the default, already type-checked.
/// Read-only after construction; safe to read from any thread.
class Config {
 public:
  Config() = default;
  Config(std::map<std::string, ConfigValue, std::less<>> values, std::vector<std::string> explicitly_set)
      : values_(std::move(values)), explicitly_set_(std::move(explicitly_set)) {}

  /// Typed getters. Asking for a key the schema does not declare, or with
  /// the wrong type, is a plugin bug and throws std::logic_error.
  bool get_bool(std::string_view key) const;
  std::int64_t get_int(std::string_view key) const;
  double get_number(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<std::string>& get_strings(std::string_view key) const;

  /// True when the pipeline file set `key` (rather than the default applying).
  bool is_set(std::string_view key) const;

  const std::map<std::string, ConfigValue, std::less<>>& values() const noexcept { return values_; }

 private:
  const ConfigValue& at(std::string_view key) const;

  std::map<std::string, ConfigValue, std::less<>> values_;
  std::vector<std::string> explicitly_set_;
};

/// Parses "host:port" (IPv4, a name, or "[v6]:port"). Returns false when the
/// text is not of that form or the port is not in 0..65535.
bool parse_host_port(std::string_view text, std::string& host, std::uint16_t& port);

}  // namespace nudge
