#include "config.hpp"

#include <stdexcept>

namespace nudge::plugins::http {

ConfigSchema HttpConfig::schema() {
  ConfigSchema s;
  s.string("listen", "localhost:8090",
           "Address and port of the publish API (port 0 picks a free one); localhost listens on both 127.0.0.1 and "
           "::1. Empty turns the source off, so one pipeline file serves instances with and without it")
      .with_example("\"${NUDGE_HTTP_LISTEN:-}\"")
      .with_check([](const ConfigValue& v) {
        const auto& text = std::get<std::string>(v);
        std::string host;
        std::uint16_t port = 0;
        return text.empty() || parse_host_port(text, host, port)
                   ? std::string()
                   : std::string("must be host:port, e.g. \"127.0.0.1:8090\", or empty (off)");
      });
  s.string_list("api_keys", {},
                "Keys a backend presents as `Authorization: Bearer <key>` or `X-API-Key: <key>` (compared in constant "
                "time); each at least 16 bytes. Empty entries are ignored, so `[\"${NUDGE_API_KEY:-}\"]` with the "
                "variable unset means no key")
      .with_example("[\"${NUDGE_API_KEY:-}\"]")
      .with_check([](const ConfigValue& v) {
        for (const auto& key : std::get<std::vector<std::string>>(v))
          if (!key.empty() && key.size() < kMinApiKeyBytes)
            return std::string("each key must be at least 16 bytes (make one with `openssl rand -hex 32`)");
        return std::string();
      });
  s.string("jwt_secret", "",
           "HMAC key (raw bytes, at least 32) of HS256 JWTs a backend may present as `Authorization: Bearer "
           "<token>` instead of a key (as the websocket source checks them: exp required, alg fixed); the token's "
           "identity is the caller and its default sender. Empty: no tokens")
      .with_example("\"${NUDGE_JWT_SECRET:-}\"")
      .with_check([](const ConfigValue& v) {
        const auto size = std::get<std::string>(v).size();
        return size == 0 || size >= kMinJwtSecretBytes
                   ? std::string()
                   : std::string(
                         "must be empty (no tokens) or at least 32 bytes; make one with `openssl rand -base64 32`");
      });
  s.integer("jwt_leeway_ms", 5000, "Clock skew tolerated when checking a token's exp and nbf").range(0, 300000);
  s.string("jwt_issuer", "", "When set, a token's iss claim must equal it");
  s.string("jwt_audience", "", "When set, a token's aud claim (a string or an array) must contain it");
  s.string("jwt_identity_claim", "sub", "Claim naming the caller (1 to 64 bytes of UTF-8)")
      .with_check([](const ConfigValue& v) {
        return std::get<std::string>(v).empty() ? std::string("must name a claim, e.g. \"sub\"") : std::string();
      });
  s.boolean("allow_anonymous", false,
            "Take requests without a key. Without keys and without this the source refuses to start: a publish API "
            "open to anyone is a choice, not a default");
  s.string("default_sender", "api", "Sender of a message whose request names none")
      .with_check([](const ConfigValue& v) {
        const auto& text = std::get<std::string>(v);
        return !text.empty() && text.size() <= 64 ? std::string() : std::string("must be 1 to 64 bytes");
      });
  s.integer("max_body_bytes", 64 * 1024,
            "Largest request body; a larger one gets 413 too_large and its connection closed")
      .range(256, 16 * 1024 * 1024);
  s.integer("max_header_bytes", 8 * 1024,
            "Largest request header (request line and fields); larger gets 413. Also bounds a chunked body's "
            "chunk-size line (extensions included) and trailer section: one over this plus 16 KiB gets 413 and "
            "its connection closed")
      .range(1024, 1024 * 1024);
  s.integer("max_batch_messages", 100, "Messages one POST /api/messages may carry; more gets 413 too_large")
      .range(1, 10000);
  s.integer("max_connections", 1024,
            "TCP connections open at once; past it a new connection takes the place of the oldest one that has "
            "not yet presented a valid key or token, and is closed at accept only when every one has")
      .range(1, 1'000'000);
  s.integer("max_connections_per_address", 64,
            "TCP connections open at once from one address (IPv6: its /64); more are closed at accept. 0 disables "
            "the limit")
      .range(0, 1'000'000);
  s.integer("max_requests_in_flight", 1024,
            "Requests taken in and not yet answered (waiting for room in the pipeline or for durability); more get "
            "503 unavailable")
      .range(1, 1'000'000);
  s.integer("header_timeout_ms", 10000,
            "Time a connection has to deliver a whole request header, counted from its accept or its previous "
            "response; an idle keep-alive connection or a slow sender (slowloris) is closed after it")
      .range(100, 600000);
  s.integer("body_timeout_ms", 10000, "Time a request has to deliver its body once its header is in")
      .range(100, 600000);
  s.integer("write_timeout_ms", 10000, "Time a response has to be written; a client that does not read is dropped")
      .range(100, 600000);
  s.number("rate_limit_per_second", 1000,
           "Messages per second one API key (or all anonymous callers together) may publish on average; past it a "
           "request gets 429 rate_limited. 0 disables the limit")
      .range(0, 1'000'000);
  s.integer("rate_limit_burst", 2000, "Messages one API key may publish at once before the rate limit applies")
      .range(1, 1'000'000);
  s.integer("idempotency_window_ms", 300000,
            "How long a request's idempotency key is remembered on this instance (a resend within it gets the first "
            "id and publishes nothing), and how old a UUIDv7 key's time may be (docs/http-api.md)")
      .range(1000, 86400000);
  s.integer("idempotency_max_entries", 100000,
            "Idempotency keys remembered at most (about 200 bytes each; oldest settled first out); new keys get 503 "
            "while this many are in flight")
      .range(1, 100'000'000);
  return s;
}

HttpConfig HttpConfig::from(const Config& c) {
  HttpConfig out;
  const auto& listen = c.get_string("listen");
  out.enabled = !listen.empty();
  if (out.enabled) parse_host_port(listen, out.host, out.port);
  for (const auto& key : c.get_strings("api_keys"))
    if (!key.empty()) out.api_keys.push_back(key);
  out.allow_anonymous = c.get_bool("allow_anonymous");
  out.jwt_secret = c.get_string("jwt_secret");
  out.jwt_leeway_ms = c.get_int("jwt_leeway_ms");
  out.jwt_issuer = c.get_string("jwt_issuer");
  out.jwt_audience = c.get_string("jwt_audience");
  out.jwt_identity_claim = c.get_string("jwt_identity_claim");
  out.default_sender = c.get_string("default_sender");
  out.max_body_bytes = c.get_int("max_body_bytes");
  out.max_header_bytes = c.get_int("max_header_bytes");
  out.max_batch_messages = c.get_int("max_batch_messages");
  out.max_connections = c.get_int("max_connections");
  out.max_connections_per_address = c.get_int("max_connections_per_address");
  out.max_requests_in_flight = c.get_int("max_requests_in_flight");
  out.header_timeout_ms = c.get_int("header_timeout_ms");
  out.body_timeout_ms = c.get_int("body_timeout_ms");
  out.write_timeout_ms = c.get_int("write_timeout_ms");
  out.rate_limit_per_second = c.get_number("rate_limit_per_second");
  out.rate_limit_burst = c.get_int("rate_limit_burst");
  out.idempotency_window_ms = c.get_int("idempotency_window_ms");
  out.idempotency_max_entries = c.get_int("idempotency_max_entries");
  if (out.enabled && out.api_keys.empty() && out.jwt_secret.empty() && !out.allow_anonymous)
    throw std::invalid_argument(
        "no authentication: api_keys holds no key (is the variable it reads, e.g. NUDGE_API_KEY, empty?) and "
        "jwt_secret is empty; set one, or allow_anonymous = true, or listen = \"\" to turn the source off");
  return out;
}

}  // namespace nudge::plugins::http
