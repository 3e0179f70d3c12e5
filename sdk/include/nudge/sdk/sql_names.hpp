#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::sql {

// Table and schema names from a sink's config, checked before they are pasted
// into SQL. A sink quotes its names (as `"name"` or `` `name` ``) only so
// keywords like `order` work: the check is what keeps SQL out of them. Plain
// functions and values: they keep no state and may be called from any thread.

/// The identifiers a database takes unquoted from a config file.
struct IdentifierRule {
  /// Longest name in bytes (PostgreSQL 63, MySQL 64).
  std::size_t max_length = 63;
  /// Lower case only, `[a-z_][a-z0-9_]*`; else `[A-Za-z_][A-Za-z0-9_]*`.
  /// Lower case spares the reader of PostgreSQL or MySQL (on Linux, where
  /// table names are case-sensitive) from guessing how a name was folded.
  bool lower_case_only = true;

  /// "a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)".
  std::string describe() const;
};

/// True when `name` is an identifier by `rule`: not empty, not starting with
/// a digit, only ASCII letters, digits and '_', at most max_length bytes.
bool is_identifier(std::string_view name, const IdentifierRule& rule);

/// A name optionally qualified by its schema (PostgreSQL) or database (MySQL):
/// `messages` or `archive.messages`.
struct QualifiedName {
  std::string qualifier;  ///< empty when the name had none
  std::string name;

  /// `qualifier.name` or `name`, for log lines.
  std::string display() const;
  /// Each part in `quote` characters (`"a"."b"`, `` `a`.`b` ``), ready for
  /// SQL: only valid for names that passed parse_qualified_name.
  std::string quoted(char quote) const;
};

/// Parses `name` or `qualifier.name`, both identifiers by `rule`.
/// `qualifier_word` names the qualifier in errors ("schema", "database").
/// Returns nullopt with `error` set to what was expected, e.g.
/// `must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63
/// characters), optionally qualified with its schema ("archive.messages")`.
std::optional<QualifiedName> parse_qualified_name(std::string_view text, const IdentifierRule& rule,
                                                  std::string_view qualifier_word, std::string& error);

}  // namespace nudge::sql
