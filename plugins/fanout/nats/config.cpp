#include "config.hpp"

#include <cctype>

#include "nudge/sdk/url.hpp"

namespace nudge::plugins::nats {

namespace {

constexpr std::string_view kForm = "must be nats://[user[:password]@]host[:port], or a comma-separated list of those";

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

/// One entry of the list; `error` is the reason without the expected form.
bool parse_one(std::string_view text, NatsServer& out, std::string& error) {
  static const ServerUrlForm form{{"nats"}, true, 4222, false, false, false};
  for (char c : text)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      error = "it contains spaces or control characters";
      return false;
    }
  UrlError why;
  const auto url = parse_server_url(text, form, why);
  if (!url) {
    using Part = UrlError::Part;
    switch (why.part) {
      case Part::scheme:
        error = why.text == "tls" ? "TLS (tls://) is not supported by this plugin; use nats://"
                                  : "it does not start with nats://";
        return false;
      case Part::path_not_allowed:
      case Part::path:
      case Part::query_not_allowed:
      case Part::query:
        error = "paths, query parameters and fragments are not supported";
        return false;
      case Part::port:
        error = "the port must be a number in [1, 65535]";
        return false;
      case Part::empty:
      case Part::userinfo:
      case Part::host_empty:
      case Part::host_name:
      case Part::ipv6:
      case Part::port_empty:
        error = why.describe();
        return false;
    }
  }
  if (url->has_userinfo && url->user.empty() && !url->has_password) {
    error = "the user (or token) before '@' is empty";
    return false;
  }
  // libnats parses the URL again; it is handed over as written.
  out = NatsServer{std::string(text), url->host, url->port, url->has_userinfo};
  return true;
}

bool is_token_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; }

}  // namespace

std::string NatsServer::endpoint() const { return join_host_port(host, port); }

bool parse_nats_urls(std::string_view text, std::vector<NatsServer>& out, std::string& error) {
  std::vector<NatsServer> servers;
  std::size_t begin = 0;
  while (true) {
    const std::size_t comma = text.find(',', begin);
    const std::string_view entry =
        trim(text.substr(begin, comma == std::string_view::npos ? text.npos : comma - begin));
    if (entry.empty()) {
      error = std::string(kForm) +
              (text.find(',') == std::string_view::npos ? " (it is empty)" : " (an entry of the list is empty)");
      return false;
    }
    NatsServer server;
    std::string why;
    if (!parse_one(entry, server, why)) {
      error = std::string(kForm) + " (" + why +
              (servers.empty() && comma == std::string_view::npos ? ")" : ", in \"" + std::string(entry) + "\")");
      return false;
    }
    servers.push_back(std::move(server));
    if (comma == std::string_view::npos) break;
    begin = comma + 1;
  }
  out = std::move(servers);
  return true;
}

std::string redact_url(std::string_view url) {
  const std::size_t scheme = url.find("://");
  const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const std::size_t at = url.rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  return std::string(url.substr(0, start)) + std::string(url.substr(at + 1));
}

std::string check_subject(std::string_view subject, bool as_prefix) {
  if (subject.empty()) return as_prefix ? std::string() : std::string("must not be empty");
  for (char c : subject) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= ' ' || u >= 0x7f) return "must be printable ASCII without spaces";
    if (c == '*' || c == '>') return "must not contain the wildcards '*' or '>'";
  }
  std::size_t begin = 0;
  while (true) {
    const std::size_t dot = subject.find('.', begin);
    if (dot == std::string_view::npos) break;
    if (dot == begin) return "must not start with '.' or contain '..' (empty tokens)";
    begin = dot + 1;
  }
  if (begin == subject.size() && !as_prefix) return "must not end with '.'";
  return {};
}

std::string room_token(std::string_view room) {
  if (room.empty()) return "%";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string token;
  token.reserve(room.size());
  for (char c : room) {
    const auto u = static_cast<unsigned char>(c);
    if (is_token_byte(u)) {
      token += c;
    } else {
      token += '%';
      token += kHex[u >> 4];
      token += kHex[u & 0xf];
    }
  }
  return token;
}

ConfigSchema NatsConfig::schema() {
  ConfigSchema s;
  s.string("url", "nats://127.0.0.1:4222",
           "NATS server as nats://[user[:password]@]host[:port] (port 4222 by default), or a comma-separated list "
           "of servers of one cluster. Names are resolved on each connect")
      .with_example("\"nats://nats-1.internal:4222,nats://nats-2.internal:4222\"")
      .with_check([](const ConfigValue& v) {
        std::vector<NatsServer> servers;
        std::string error;
        return parse_nats_urls(std::get<std::string>(v), servers, error) ? std::string() : error;
      });
  s.string("subject", "nudge.messages",
           "Subject every instance publishes to and subscribes to (when subject_per_room is false); a literal "
           "subject, no wildcards")
      .with_check([](const ConfigValue& v) { return check_subject(std::get<std::string>(v), false); });
  s.boolean("subject_per_room", false,
            "Publish each message on <subject_prefix><room token> and subscribe only to the rooms this instance has "
            "clients in, instead of one shared subject");
  s.string("subject_prefix", "nudge.room.",
           "Prefix of the per-room subjects (when subject_per_room is true); the room follows as one escaped token")
      .with_check([](const ConfigValue& v) { return check_subject(std::get<std::string>(v), true); });
  s.integer("reconnect_wait_ms", 500,
            "Delay between reconnect rounds (each round tries every server once) after a lost connection or a "
            "failed connect")
      .range(1, 600000);
  s.integer("reconnect_buffer_bytes", 8 * 1024 * 1024,
            "Bytes of publishes held while disconnected (sent on reconnect); beyond this new messages are dropped. "
            "Also bounds the messages waiting for the publishing thread")
      .range(1024, 1024 * 1024 * 1024);
  s.integer("connect_timeout_ms", 2000,
            "How long one connection attempt (TCP connect and handshake) may take; also the write deadline on the "
            "socket")
      .range(10, 600000);
  s.integer("max_pending_messages", 65536,
            "Received messages that may wait for the event loop (all subscriptions together), and in libnats per "
            "subscription; beyond this they are dropped and a slow consumer is reported")
      .range(1, 100000000);
  s.integer("presence_ttl_ms", 15000,
            "How long an instance's presence members stay listed after its last announcement. Each instance "
            "announces its members of each room every third of it and drops instances not heard from every sixth, "
            "so the members of an instance that dies leave everyone's list within presence_ttl_ms plus a sixth")
      .range(300, 3600000);
  s.integer("max_presence_per_room", 1000,
            "Members a presence list names at most (and kept per instance and room); beyond it the list carries "
            "only their count")
      .range(1, 100000);
  return s;
}

NatsConfig NatsConfig::from(const Config& c) {
  NatsConfig r;
  r.url_text = c.get_string("url");
  std::string why;
  if (!parse_nats_urls(r.url_text, r.servers, why)) r.error = "url: " + why + ", got \"" + r.url_text + "\"";
  r.subject = c.get_string("subject");
  r.subject_per_room = c.get_bool("subject_per_room");
  r.subject_prefix = c.get_string("subject_prefix");
  if (r.error.empty())
    if (auto e = check_subject(r.subject, false); !e.empty()) r.error = "subject: " + e + ", got \"" + r.subject + "\"";
  if (r.error.empty())
    if (auto e = check_subject(r.subject_prefix, true); !e.empty())
      r.error = "subject_prefix: " + e + ", got \"" + r.subject_prefix + "\"";
  r.reconnect_wait_ms = c.get_int("reconnect_wait_ms");
  r.reconnect_buffer_bytes = c.get_int("reconnect_buffer_bytes");
  r.presence_ttl_ms = c.get_int("presence_ttl_ms");
  r.max_presence_per_room = c.get_int("max_presence_per_room");
  r.connect_timeout_ms = c.get_int("connect_timeout_ms");
  r.max_pending_messages = c.get_int("max_pending_messages");
  return r;
}

std::string NatsConfig::subject_for(std::string_view room) const {
  if (!subject_per_room) return subject;
  return subject_prefix + room_token(room);
}

std::string NatsConfig::endpoints() const {
  std::string text;
  for (const auto& s : servers) text += (text.empty() ? "" : ", ") + s.endpoint();
  return text;
}

}  // namespace nudge::plugins::nats
