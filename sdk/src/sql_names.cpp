#include "nudge/sdk/sql_names.hpp"

namespace nudge::sql {

std::string IdentifierRule::describe() const {
  return std::string(lower_case_only ? "a lower-case SQL identifier ([a-z_][a-z0-9_]*"
                                     : "a SQL identifier ([A-Za-z_][A-Za-z0-9_]*") +
         ", at most " + std::to_string(max_length) + " characters)";
}

bool is_identifier(std::string_view name, const IdentifierRule& rule) {
  if (name.empty() || name.size() > rule.max_length || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool lower = c >= 'a' && c <= 'z';
    const bool upper = c >= 'A' && c <= 'Z';
    const bool digit = c >= '0' && c <= '9';
    if (!(lower || digit || c == '_' || (upper && !rule.lower_case_only))) return false;
  }
  return true;
}

std::string QualifiedName::display() const { return qualifier.empty() ? name : qualifier + "." + name; }

std::string QualifiedName::quoted(char quote) const {
  const std::string q(1, quote);
  return (qualifier.empty() ? "" : q + qualifier + q + ".") + q + name + q;
}

std::optional<QualifiedName> parse_qualified_name(std::string_view text, const IdentifierRule& rule,
                                                  std::string_view qualifier_word, std::string& error) {
  QualifiedName out;
  std::string_view name = text;
  if (const auto dot = text.find('.'); dot != std::string_view::npos) {
    out.qualifier = std::string(text.substr(0, dot));
    name = text.substr(dot + 1);
    if (!is_identifier(out.qualifier, rule)) {
      error = "the " + std::string(qualifier_word) + " '" + out.qualifier + "' must be " + rule.describe();
      return std::nullopt;
    }
  }
  if (!is_identifier(name, rule)) {
    error = "must be " + rule.describe() + ", optionally qualified with its " + std::string(qualifier_word) +
            " (\"archive.messages\")";
    return std::nullopt;
  }
  out.name = std::string(name);
  return out;
}

}  // namespace nudge::sql
