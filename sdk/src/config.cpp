#include "nudge/sdk/config.hpp"

#include <algorithm>
#include <charconv>
#include <sstream>
#include <stdexcept>

namespace nudge {

std::string_view to_string(ConfigType type) noexcept {
  switch (type) {
    case ConfigType::boolean:
      return "boolean";
    case ConfigType::integer:
      return "integer";
    case ConfigType::number:
      return "number";
    case ConfigType::string:
      return "string";
    case ConfigType::string_list:
      return "array of strings";
  }
  return "unknown";
}

namespace {

void quote(std::ostringstream& out, const std::string& s) {
  out << '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out << '\\';
    out << c;
  }
  out << '"';
}

}  // namespace

std::string to_toml(const ConfigValue& value) {
  std::ostringstream out;
  if (const auto* b = std::get_if<bool>(&value)) {
    out << (*b ? "true" : "false");
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    out << *i;
  } else if (const auto* d = std::get_if<double>(&value)) {
    out << *d;
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    quote(out, *s);
  } else if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
    out << '[';
    for (std::size_t n = 0; n < list->size(); ++n) {
      if (n) out << ", ";
      quote(out, (*list)[n]);
    }
    out << ']';
  }
  return out.str();
}

std::string ConfigField::validate(const ConfigValue& value) const {
  std::ostringstream expected;
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    if ((min && *i < *min) || (max && *i > *max)) {
      expected << "must be in [" << (min ? std::to_string(*min) : "-inf") << ", "
               << (max ? std::to_string(*max) : "inf") << "], got " << *i;
      return expected.str();
    }
  } else if (const auto* d = std::get_if<double>(&value)) {
    if ((min && *d < static_cast<double>(*min)) || (max && *d > static_cast<double>(*max))) {
      expected << "must be in [" << (min ? std::to_string(*min) : "-inf") << ", "
               << (max ? std::to_string(*max) : "inf") << "], got " << *d;
      return expected.str();
    }
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), *s) == allowed.end()) {
      expected << "must be one of ";
      for (std::size_t n = 0; n < allowed.size(); ++n) expected << (n ? ", " : "") << '"' << allowed[n] << '"';
      expected << ", got \"" << *s << '"';
      return expected.str();
    }
  } else if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
    const auto n = static_cast<std::int64_t>(list->size());
    if ((min && n < *min) || (max && n > *max)) {
      expected << "must have between " << (min ? *min : 0) << " and " << (max ? std::to_string(*max) : "any")
               << " entries, got " << n;
      return expected.str();
    }
  }
  if (check) return check(value);
  return {};
}

ConfigField& ConfigSchema::add(ConfigField field) {
  if (find(field.key)) throw std::logic_error("config key '" + field.key + "' declared twice");
  fields_.push_back(std::move(field));
  return fields_.back();
}

namespace {
ConfigField make_field(std::string key, ConfigType type, std::optional<ConfigValue> default_value,
                       std::string description) {
  ConfigField f;
  f.key = std::move(key);
  f.type = type;
  f.default_value = std::move(default_value);
  f.description = std::move(description);
  return f;
}
}  // namespace

ConfigField& ConfigSchema::boolean(std::string key, bool default_value, std::string description) {
  return add(make_field(std::move(key), ConfigType::boolean, default_value, std::move(description)));
}

ConfigField& ConfigSchema::integer(std::string key, std::int64_t default_value, std::string description) {
  return add(make_field(std::move(key), ConfigType::integer, default_value, std::move(description)));
}

ConfigField& ConfigSchema::number(std::string key, double default_value, std::string description) {
  return add(make_field(std::move(key), ConfigType::number, default_value, std::move(description)));
}

ConfigField& ConfigSchema::string(std::string key, std::string default_value, std::string description) {
  return add(make_field(std::move(key), ConfigType::string, std::move(default_value), std::move(description)));
}

ConfigField& ConfigSchema::string_list(std::string key, std::vector<std::string> default_value,
                                       std::string description) {
  return add(make_field(std::move(key), ConfigType::string_list, std::move(default_value), std::move(description)));
}

ConfigField& ConfigSchema::required(std::string key, ConfigType type, std::string description) {
  return add(make_field(std::move(key), type, std::nullopt, std::move(description)));
}

const ConfigField* ConfigSchema::find(std::string_view key) const {
  for (const auto& f : fields_)
    if (f.key == key) return &f;
  return nullptr;
}

const ConfigValue& Config::at(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("config key '" + std::string(key) + "' is not in the schema");
  return it->second;
}

namespace {
template <class T>
const T& typed(const ConfigValue& v, std::string_view key, const char* type) {
  if (const auto* p = std::get_if<T>(&v)) return *p;
  throw std::logic_error("config key '" + std::string(key) + "' is not a " + type);
}
}  // namespace

bool Config::get_bool(std::string_view key) const { return typed<bool>(at(key), key, "boolean"); }
std::int64_t Config::get_int(std::string_view key) const { return typed<std::int64_t>(at(key), key, "integer"); }
double Config::get_number(std::string_view key) const {
  const auto& v = at(key);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  return typed<double>(v, key, "number");
}
const std::string& Config::get_string(std::string_view key) const { return typed<std::string>(at(key), key, "string"); }
const std::vector<std::string>& Config::get_strings(std::string_view key) const {
  return typed<std::vector<std::string>>(at(key), key, "array of strings");
}
bool Config::is_set(std::string_view key) const {
  return std::find(explicitly_set_.begin(), explicitly_set_.end(), key) != explicitly_set_.end();
}

bool parse_host_port(std::string_view text, std::string& host, std::uint16_t& port) {
  std::string_view h;
  std::string_view p;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return false;
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (h.empty() || p.empty()) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || end != p.data() + p.size() || value > 65535) return false;
  host.assign(h);
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace nudge
