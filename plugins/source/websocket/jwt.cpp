#include "jwt.hpp"

#include "nudge/sdk/url.hpp"

namespace nudge::plugins::websocket {

std::string token_from_request(std::string_view authorization, std::string_view target) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  authorization = trim(authorization);
  constexpr std::string_view kBearer = "bearer";
  if (authorization.size() > kBearer.size() &&
      (authorization[kBearer.size()] == ' ' || authorization[kBearer.size()] == '\t')) {
    bool is_bearer = true;
    for (std::size_t i = 0; i < kBearer.size(); ++i)
      if ((authorization[i] | 0x20) != kBearer[i]) is_bearer = false;
    if (is_bearer) return std::string(trim(authorization.substr(kBearer.size())));
  }
  const auto query_start = target.find('?');
  if (query_start == std::string_view::npos) return {};
  std::string_view query = target.substr(query_start + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    const auto end = query.find('&');
    const std::string_view pair = query.substr(0, end);
    // A broken escape leaves the token as it was: it then fails verification as malformed.
    if (pair.starts_with("token=")) return percent_decode(pair.substr(6)).value_or(std::string(pair.substr(6)));
    if (end == std::string_view::npos) break;
    query.remove_prefix(end + 1);
  }
  return {};
}

}  // namespace nudge::plugins::websocket
