#include "nudge/sdk/url.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <boost/url/ipv6_address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_path.hpp>
#include <boost/url/pct_string_view.hpp>
#include <boost/url/url_view.hpp>

namespace nudge {

namespace urls = boost::urls;

namespace {

using Part = UrlError::Part;

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_scheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

/// Stricter than RFC 3986's reg-name (which allows sub-delims and escapes):
/// what DNS and /etc/hosts names are made of.
bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

/// RFC 3986 allows in userinfo unreserved, sub-delims, ':' and escapes.
bool userinfo_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("-._~!$&'()*+,;=:%").find(c) != std::string_view::npos;
}

/// Escapes what RFC 3986 does not allow raw in userinfo (an '@' in a
/// password, a space) so Boost.URL takes URLs written for the older parsers;
/// '%' stays, so a malformed escape is still an error.
std::string escape_userinfo(std::string_view userinfo) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(userinfo.size());
  for (char c : userinfo) {
    if (userinfo_char(c)) {
      out += c;
    } else {
      const auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

bool parse_port(std::string_view text, std::uint16_t& port) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

bool fail(UrlError& error, Part part, std::string_view text = {}) {
  error = {part, std::string(text)};
  return false;
}

/// Checks a host and port as written (`name:port`, `[v6]:port`) and fills them in.
bool check_host_port(std::string_view hostport, ServerUrl& url, UrlError& error) {
  std::string_view port_text;
  bool has_port = false;
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) return fail(error, Part::ipv6, hostport);
    const std::string_view inside = hostport.substr(1, close - 1);
    const auto address = urls::parse_ipv6_address(inside);
    if (!address) return fail(error, Part::ipv6, hostport);
    const std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail(error, Part::ipv6, hostport);
      port_text = after.substr(1);
      has_port = true;
    }
    url.host = std::string(inside);  // as written: a log line shows what the operator wrote
    url.host_is_ipv6 = true;
  } else {
    const auto colon = hostport.find(':');
    const std::string_view host = hostport.substr(0, colon);
    if (host.empty()) return fail(error, Part::host_empty);
    if (!is_host_name(host)) return fail(error, Part::host_name, host);
    url.host = std::string(host);
    if (colon != std::string_view::npos) {
      port_text = hostport.substr(colon + 1);
      has_port = true;
    }
  }
  if (has_port) {
    if (port_text.empty()) return fail(error, Part::port_empty);
    if (!parse_port(port_text, url.port)) return fail(error, Part::port, port_text);
    url.has_port = true;
  }
  return true;
}

/// Boost.URL refused the URL: finds the part to blame, in the order a
/// reader goes through it. `rest` follows "scheme://".
void diagnose(std::string_view rest, const ServerUrlForm& form, UrlError& error) {
  const auto end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    if (!urls::make_pct_string_view(authority.substr(0, at))) return (void)fail(error, Part::userinfo);
    authority.remove_prefix(at + 1);
  }
  ServerUrl ignored;
  if (!check_host_port(authority, ignored, error)) return;
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  const auto query_at = tail.find_first_of("?#");
  const std::string_view path = tail.substr(0, query_at);
  if (!path.empty()) {
    if (!form.allow_path) return (void)fail(error, Part::path_not_allowed, path);
    if (!urls::parse_path(path)) return (void)fail(error, Part::path, path);
  }
  if (query_at != std::string_view::npos) {
    const bool fragment = tail[query_at] == '#';
    if (!(fragment ? form.allow_fragment : form.allow_query))
      return (void)fail(error, Part::query_not_allowed, tail.substr(query_at));
    return (void)fail(error, Part::query, tail.substr(query_at));
  }
  // Everything looked right part by part; blame the host, where most odd characters land.
  fail(error, Part::host_name, authority);
}

}  // namespace

std::string ServerUrl::endpoint() const { return join_host_port(host, port); }

std::string UrlError::describe() const {
  switch (part) {
    case Part::empty:
      return "it is empty";
    case Part::scheme:
      return text.empty() ? "it does not start with a scheme (scheme://)"
                          : "the scheme " + text + ":// is not accepted";
    case Part::userinfo:
      return "bad percent-encoding in the user or password";
    case Part::host_empty:
      return "the host is empty";
    case Part::host_name:
      return "the host has characters a host name cannot have";
    case Part::ipv6:
      return "bad IPv6 address in brackets (expected [address] or [address]:port)";
    case Part::port_empty:
      return "the port after ':' is empty";
    case Part::port:
      return "the port must be a number in [1, 65535], got \"" + text + "\"";
    case Part::path_not_allowed:
      return "a path is not supported";
    case Part::path:
      return "bad percent-encoding or characters in the path";
    case Part::query_not_allowed:
      return "query parameters and fragments are not supported";
    case Part::query:
      return "bad percent-encoding or characters in the query";
  }
  return "it is not a valid URL";
}

std::optional<ServerUrl> parse_server_url(std::string_view text, const ServerUrlForm& form, UrlError& error) {
  error = {};
  if (text.empty()) {
    fail(error, Part::empty);
    return std::nullopt;
  }
  const auto separator = text.find("://");
  const std::string_view written_scheme =
      separator == std::string_view::npos ? std::string_view() : text.substr(0, separator);
  ServerUrl url;
  url.scheme = lower(written_scheme);
  const bool accepted =
      is_scheme(written_scheme) &&
      (form.schemes.empty() || std::any_of(form.schemes.begin(), form.schemes.end(), [&](const std::string& s) {
         return form.scheme_ignores_case ? s == url.scheme : s == written_scheme;
       }));
  if (!accepted) {
    fail(error, Part::scheme, is_scheme(written_scheme) ? url.scheme : std::string());
    return std::nullopt;
  }

  const std::string_view rest = text.substr(separator + 3);
  const auto authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  std::string normalized = url.scheme + "://";
  if (const auto at = authority.rfind('@'); at != std::string_view::npos)
    normalized += escape_userinfo(authority.substr(0, at)) + std::string(authority.substr(at));
  else normalized += authority;
  if (authority_end != std::string_view::npos) normalized += rest.substr(authority_end);

  const auto parsed = urls::parse_uri(normalized);
  if (!parsed) {
    diagnose(rest, form, error);
    return std::nullopt;
  }
  const urls::url_view& u = *parsed;

  url.has_userinfo = u.has_userinfo();
  url.user = u.user();
  url.has_password = u.has_password();
  url.password = u.password();
  // Boost.URL parsed the authority; the host and port rules are ours (names
  // only of DNS characters, a port in [1, 65535]), checked on the same text.
  if (!check_host_port(authority.substr(authority.rfind('@') + 1), url, error)) return std::nullopt;
  if (!url.has_port) url.port = form.default_port;

  const std::string_view path = u.encoded_path();
  if (!path.empty() && !form.allow_path) {
    fail(error, Part::path_not_allowed, path);
    return std::nullopt;
  }
  if ((u.has_query() && !form.allow_query) || (u.has_fragment() && !form.allow_fragment)) {
    fail(error, Part::query_not_allowed, rest.substr(rest.find_first_of("?#")));
    return std::nullopt;
  }
  url.path = u.path();
  if (!url.path.empty() && url.path.front() == '/') url.path.erase(0, 1);
  url.target = path.empty() ? "/" : std::string(path);
  if (u.has_query()) {
    url.target += "?" + std::string(u.encoded_query());
    // Decoded without '+' as space: these are server options, not HTML forms.
    for (const auto& param : u.encoded_params())
      url.query.emplace_back(param.key.decode(), param.has_value ? param.value.decode() : std::string());
  }
  return url;
}

std::optional<std::string> percent_decode(std::string_view text) {
  const auto checked = urls::make_pct_string_view(text);
  if (!checked) return std::nullopt;
  return checked->decode();
}

std::string join_host_port(std::string_view host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string_view::npos;
  return (v6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" + std::to_string(port);
}

}  // namespace nudge
