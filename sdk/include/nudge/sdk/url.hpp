#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nudge {

// Server URLs (`redis://:pw@host:6380/2`, `mysql://user@[::1]/db`) and
// percent-decoding, on Boost.URL, for plugins that take a server address as
// a URL. One parser, so every plugin accepts the same forms (IPv6 literals in
// brackets, percent-encoded user and password, a default port) and tells
// which part of a URL is wrong. Plain functions and values: they keep no
// state, do no I/O (names are not resolved) and may be called from any thread.

/// What a plugin accepts as its server URL.
struct ServerUrlForm {
  /// Accepted schemes, lower-case, without "://" (`{"mysql", "mariadb"}`).
  /// Empty accepts any scheme.
  std::vector<std::string> schemes;
  /// False makes the scheme case-sensitive (`MYSQL://` refused).
  bool scheme_ignores_case = true;
  /// The port when the URL has none.
  std::uint16_t default_port = 0;
  /// Whether anything may follow the host and port: a path, a query (`?`),
  /// a fragment (`#`). What is not allowed is an error.
  bool allow_path = true;
  bool allow_query = false;
  bool allow_fragment = false;
};

/// A parsed server URL. Text parts are percent-decoded.
struct ServerUrl {
  std::string scheme;         ///< lower-case
  bool has_userinfo = false;  ///< an '@' was there (`nats://token@host`, `redis://:pw@host`)
  std::string user;
  bool has_password = false;  ///< a ':' in the user part, even with nothing after it
  std::string password;
  std::string host;  ///< a name as written, an IPv4 address, or an IPv6 address without brackets
  bool host_is_ipv6 = false;
  bool has_port = false;
  std::uint16_t port = 0;  ///< ServerUrlForm::default_port when the URL has none
  /// The path without its leading '/', decoded ("" for `redis://h` and `redis://h/`).
  std::string path;
  /// The path and query as written (not decoded), "/" at least: an HTTP request target.
  std::string target;
  /// The query's `key=value` pairs, decoded, in order (a key without '=' has an empty value).
  std::vector<std::pair<std::string, std::string>> query;

  /// `host:port`, an IPv6 host in brackets: for connecting and log lines
  /// (it never holds the password).
  std::string endpoint() const;
};

/// Why a URL was refused: the part that is wrong, and the offending text.
struct UrlError {
  enum class Part {
    empty,              ///< the text is empty
    scheme,             ///< not `<scheme>://` with an accepted scheme; `text` is the scheme found, lower-case
    userinfo,           ///< a malformed %-escape in the user or password
    host_empty,         ///< no host
    host_name,          ///< characters a host name cannot have; `text` is the host
    ipv6,               ///< `[` without `]`, an invalid address in brackets, or text after `]` other than `:port`
    port_empty,         ///< a ':' with no port after it
    port,               ///< not a number in [1, 65535]; `text` is the port
    path_not_allowed,   ///< a path where ServerUrlForm::allow_path is false
    path,               ///< a malformed %-escape or a character a path cannot have
    query_not_allowed,  ///< a query or fragment where the form does not allow one
    query,              ///< a malformed %-escape or a character a query cannot have
  };
  Part part = Part::empty;
  std::string text;

  /// What is wrong in a few words ("the port must be a number in [1, 65535], got \"0\""),
  /// for a plugin that needs no wording of its own. Says nothing of the URL's form: the
  /// caller adds what was expected.
  std::string describe() const;
};

/// Parses `scheme://[user[:password]@]host[:port][/path][?query][#fragment]`.
/// Accepts an '@' in the password unencoded (the last '@' before the host
/// ends the user part) and, in the user and password, any character but
/// '/', '?' and '#' (they end the host part), as the hand-written parsers
/// before it did. A host name is letters, digits, '-', '.' and '_'.
/// Returns the URL, or nullopt with `error` set.
std::optional<ServerUrl> parse_server_url(std::string_view text, const ServerUrlForm& form, UrlError& error);

/// Decodes %XX escapes ('+' stays '+'); nullopt when an escape is malformed
/// (a '%' not followed by two hex digits).
std::optional<std::string> percent_decode(std::string_view text);

/// `host:port`, an IPv6 host (one with a ':') in brackets.
std::string join_host_port(std::string_view host, std::uint16_t port);

}  // namespace nudge
