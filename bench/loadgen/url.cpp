#include "url.hpp"

#include <stdexcept>

#include "nudge/sdk/url.hpp"

namespace nudge::bench {

Url Url::parse(std::string_view text) {
  static const ServerUrlForm form{{"ws", "http"}, true, 80, true, true, false};
  const std::string quoted = "'" + std::string(text) + "': ";
  UrlError why;
  const auto url = parse_server_url(text, form, why);
  if (!url) {
    using Part = UrlError::Part;
    switch (why.part) {
      case Part::scheme:
        if (why.text == "wss" || why.text == "https")
          throw std::invalid_argument(quoted + "TLS is not supported; use ws://");
        throw std::invalid_argument(quoted + "expected ws://HOST:PORT/PATH");
      case Part::empty:
        throw std::invalid_argument(quoted + "expected ws://HOST:PORT/PATH");
      case Part::host_empty:
        throw std::invalid_argument(quoted + "no host");
      case Part::userinfo:
      case Part::host_name:
      case Part::ipv6:
      case Part::port_empty:
      case Part::port:
      case Part::path_not_allowed:
      case Part::path:
      case Part::query_not_allowed:
      case Part::query:
        throw std::invalid_argument(quoted + why.describe());
    }
  }
  return Url{url->host, url->port, url->target};
}

std::string Url::host_header() const { return join_host_port(host, port); }

}  // namespace nudge::bench
