#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nudge::runtime {

/// Where an instance's admin endpoint is (`nudge top`, `nudge reload`,
/// `nudge deploy status`).
struct AdminUrl {
  std::string host;    ///< without brackets
  std::string port;    ///< "80" when not given
  std::string base;    ///< `http://host:port[/prefix]`, as shown to people
  std::string prefix;  ///< a path before the endpoints (behind a proxy), or ""
};

/// `http://HOST:PORT[/prefix][/]` or `HOST:PORT`; a trailing `/metrics` is
/// dropped so a scrape URL works too. nullopt with `error` saying why.
std::optional<AdminUrl> parse_admin_url(std::string_view text, std::string& error);

/// The answer to one request, or `error` in a few words ("connection
/// refused", "timed out after 2 s") when there was none.
struct AdminResponse {
  unsigned status = 0;
  std::string reason;  ///< "Service Unavailable"
  std::string body;
  std::string error;

  bool answered() const noexcept { return error.empty(); }
};

/// Header fields added to a request (`Authorization`); one named Host
/// replaces the one made from the URL.
using AdminHeaders = std::vector<std::pair<std::string, std::string>>;

/// One blocking HTTP/1.1 request to `url.prefix + path` within `timeout`.
/// `cancelled`, when given, is asked every 100 ms and ends the wait early
/// (Ctrl-C in `nudge top`).
AdminResponse admin_request(const std::string& method, const AdminUrl& url, const std::string& path,
                            std::chrono::milliseconds timeout = std::chrono::seconds(5),
                            const std::function<bool()>& cancelled = {}, const AdminHeaders& headers = {});

/// A GET of `url.prefix + path` whose answer is a stream (`GET /tap`): the
/// connection and the response's header must come within `timeout`, then
/// `on_data` is handed the body as it arrives (each piece a chunk, or part
/// of one), with no time limit, until the server ends the body, the
/// connection breaks (`error` says so) or `cancelled()` (asked every 100 ms)
/// is true (`error` is "cancelled"). `on_header` runs with the status once
/// the header is in. A non-200 answer is read whole into `body` instead.
AdminResponse admin_stream(const AdminUrl& url, const std::string& path, const AdminHeaders& headers,
                           const std::function<void(unsigned status)>& on_header,
                           const std::function<void(std::string_view)>& on_data, const std::function<bool()>& cancelled,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace nudge::runtime
