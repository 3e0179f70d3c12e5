#include "engine/interpolate.hpp"

#include <cctype>
#include <cstdlib>

namespace nudge::runtime {

std::optional<std::string> environment_variable(std::string_view name) {
  const char* value = std::getenv(std::string(name).c_str());
  if (!value) return std::nullopt;
  return std::string(value);
}

namespace {
bool valid_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}
}  // namespace

bool interpolate(std::string_view text, const VariableLookup& lookup, std::string& out, std::string& error) {
  out.clear();
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] != '$') {
      out.push_back(text[i++]);
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '$') {
      out.push_back('$');
      i += 2;
      continue;
    }
    if (i + 1 >= text.size() || text[i + 1] != '{') {
      out.push_back(text[i++]);
      continue;
    }
    const auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      error = "unclosed '${' in \"" + std::string(text) + "\"";
      return false;
    }
    const std::string_view body = text.substr(i + 2, close - i - 2);
    const auto sep = body.find(":-");
    const std::string_view name = body.substr(0, sep);
    if (!valid_name(name)) {
      error = "invalid variable name '" + std::string(name) + "' in \"" + std::string(text) + "\"";
      return false;
    }
    const auto value = lookup(name);
    if (sep != std::string_view::npos) {
      out += (value && !value->empty()) ? *value : std::string(body.substr(sep + 2));
    } else if (value) {
      out += *value;
    } else {
      error = "environment variable '" + std::string(name) + "' is not set and has no default (write ${" +
              std::string(name) + ":-default} to give one)";
      return false;
    }
    i = close + 1;
  }
  return true;
}

}  // namespace nudge::runtime
