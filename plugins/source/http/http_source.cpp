#include "http_source.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <list>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "api.hpp"
#include "idempotency.hpp"
#include "nudge/sdk/jwt.hpp"

namespace nudge::plugins::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// An IPv4 address as is, an IPv6 address by its /64 (a subscriber is given
/// a whole /64), as the websocket source counts addresses.
std::string peer_key(const boost::asio::ip::address& address) {
  if (address.is_v4()) return address.to_string();
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
  auto bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

/// Up to `burst` tokens refilled at `rate` a second; a rate of 0 allows all.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, Clock::time_point now)
      : rate_(rate), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}
  /// Takes `n` tokens if all are there.
  bool take(double n, Clock::time_point now) {
    if (rate_ <= 0) return true;
    if (now > last_) {
      tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
      last_ = now;
    }
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

 private:
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

std::string_view trimmed(std::string_view text) noexcept {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

constexpr std::array<unsigned, 11> kStatuses = {202, 400, 401, 404, 405, 409, 413, 422, 429, 500, 503};
/// Room in a connection's read buffer beyond max_header_bytes: a chunked
/// body's chunk-size line (with its extensions) or its trailer section must
/// fit in what is left, so neither can make a connection hold more than
/// max_header_bytes + this before it is refused.
constexpr std::size_t kReadMargin = 16 * 1024;

constexpr std::array<double, 12> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

}  // namespace

class Session;

struct Listener {
  explicit Listener(boost::asio::any_io_executor executor) : acceptor(executor) {}
  tcp::acceptor acceptor;
};

/// What the source and its sessions share; sessions hold it, so it outlives them.
struct Hub {
  Hub(HttpConfig cfg, Context& context)
      : config(std::move(cfg)),
        logger(context.logger()),
        instance_id(context.instance_id()),
        idempotency(std::chrono::milliseconds(config.idempotency_window_ms),
                    static_cast<std::size_t>(config.idempotency_max_entries)),
        connections_open(context.metrics().gauge("connections", "TCP connections open")),
        connections_refused(context.metrics().counter(
            "connections_refused", "Connections closed at accept: max_connections or max_connections_per_address")),
        requests_in_flight_gauge(context.metrics().gauge("requests_in_flight", "Requests waiting for their answer")),
        messages_published(context.metrics().counter("messages_published", "Messages handed to the pipeline")),
        idempotent_replays(context.metrics().counter(
            "idempotent_replays", "Requests answered with the id of an earlier one with the same idempotency key")),
        timeouts(context.metrics().counter("timeouts", "Connections closed for a slow header, body or write")),
        connections_displaced(context.metrics().counter(
            "connections_displaced",
            "Connections not yet authenticated closed at max_connections to make room for a new one")),
        bad_framing(context.metrics().counter(
            "bad_framing",
            "Requests refused and their connection closed for their HTTP framing: a chunk line or "
            "trailer over the read bound, a Transfer-Encoding other than chunked, no Host, malformed")),
        latency_sum_us(context.metrics().counter("request_microseconds_sum",
                                                 "Total time from a request's header to its answer, in microseconds")),
        latency_count(context.metrics().counter("request_seconds_count", "Requests answered (for the latency)")) {
    for (unsigned status : kStatuses)
      by_status[status] = &context.metrics().counter("requests", "Requests answered, by HTTP status",
                                                     {{"code", std::to_string(status)}});
    for (double bound : kLatencyBounds) {
      std::ostringstream le;
      le << bound;
      latency_buckets.push_back(&context.metrics().counter(
          "request_seconds_bucket", "Requests answered within `le` seconds of their header (cumulative)",
          {{"le", le.str()}}));
    }
    latency_buckets.push_back(&context.metrics().counter(
        "request_seconds_bucket", "Requests answered within `le` seconds of their header (cumulative)",
        {{"le", "+Inf"}}));
    const auto now = Clock::now();
    for (const auto& key : config.api_keys) {
      fingerprints.push_back(key_fingerprint(key));
      buckets.emplace_back(config.rate_limit_per_second, static_cast<double>(config.rate_limit_burst), now);
    }
    // Then one shared by every token holder, and one by every anonymous caller.
    buckets.emplace_back(config.rate_limit_per_second, static_cast<double>(config.rate_limit_burst), now);
    buckets.emplace_back(config.rate_limit_per_second, static_cast<double>(config.rate_limit_burst), now);
    if (!config.jwt_secret.empty())
      verifier.emplace(JwtPolicy{config.jwt_secret, config.jwt_leeway_ms, config.jwt_issuer, config.jwt_audience,
                                 config.jwt_identity_claim});
  }

  std::size_t token_bucket() const noexcept { return buckets.size() - 2; }
  std::size_t anonymous_bucket() const noexcept { return buckets.size() - 1; }

  void count_answer(unsigned status, Clock::time_point started) {
    if (auto it = by_status.find(status); it != by_status.end()) it->second->add();
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    latency_sum_us.add(static_cast<std::uint64_t>(seconds * 1e6));
    latency_count.add();
    for (std::size_t i = 0; i < kLatencyBounds.size(); ++i)
      if (seconds <= kLatencyBounds[i]) latency_buckets[i]->add();
    latency_buckets.back()->add();
  }

  HttpConfig config;
  Logger& logger;
  std::string instance_id;
  Ingress* ingress = nullptr;
  /// Intake open: false once stop_intake ran.
  bool open = false;
  std::size_t connections = 0;
  std::unordered_map<std::string, std::size_t> per_address;
  std::size_t requests_in_flight = 0;
  IdempotencyCache idempotency;
  std::vector<std::string> fingerprints;
  std::vector<TokenBucket> buckets;
  std::optional<JwtVerifier> verifier;
  std::unordered_set<Session*> sessions;
  /// Sessions that have not yet presented a valid key or token, oldest
  /// first: at max_connections the oldest is closed for a newcomer, so that
  /// idle anonymous connections cannot lock authenticated backends out.
  std::list<Session*> unauthenticated;

  Gauge& connections_open;
  Counter& connections_refused;
  Gauge& requests_in_flight_gauge;
  Counter& messages_published;
  Counter& idempotent_replays;
  Counter& timeouts;
  Counter& connections_displaced;
  Counter& bad_framing;
  Counter& latency_sum_us;
  Counter& latency_count;
  std::unordered_map<unsigned, Counter*> by_status;
  std::vector<Counter*> latency_buckets;
  LogLimiter error_log{std::chrono::seconds(10)};
  LogLimiter framing_log{std::chrono::seconds(10)};
};

/// One TCP connection: reads a request (header under header_timeout_ms,
/// body under body_timeout_ms), answers it, and reads the next while the
/// client keeps the connection alive. One request at a time: a client that
/// pipelines waits for each answer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Hub> hub, std::string peer)
      : stream_(std::move(socket)),
        buffer_(static_cast<std::size_t>(hub->config.max_header_bytes) + kReadMargin),
        hub_(std::move(hub)),
        peer_(std::move(peer)) {
    hub_->sessions.insert(this);
    unauthenticated_at_ = hub_->unauthenticated.insert(hub_->unauthenticated.end(), this);
  }
  ~Session() {
    leave_displaceable();
    hub_->sessions.erase(this);
    --hub_->connections;
    hub_->connections_open.add(-1);
    if (auto it = hub_->per_address.find(peer_); it != hub_->per_address.end() && --it->second == 0)
      hub_->per_address.erase(it);
  }

  void start() { read_header(); }

  /// Leaves the hub's list of sessions that may be displaced (once for all).
  void leave_displaceable() {
    if (!unauthenticated_at_) return;
    hub_->unauthenticated.erase(*unauthenticated_at_);
    unauthenticated_at_.reset();
  }

  /// Closes the socket (a stop): pending operations end with operation_aborted.
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

 private:
  /// One message of the request being answered, and how it ended.
  struct Item {
    std::optional<Draft> draft;
    std::optional<MessageId> id;
    ApiError error = ApiError::unavailable;
    std::string error_message;
  };

  void read_header() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(hub_->config.max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(hub_->config.max_body_bytes));
    stream_.expires_after(std::chrono::milliseconds(hub_->config.header_timeout_ms));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  /// A read that failed: a bound (413), a malformed request (400), or the
  /// connection is done (closed, timed out, stopped).
  bool read_failed(beast::error_code ec) {
    if (!ec) return false;
    if (ec == bhttp::error::body_limit || ec == bhttp::error::header_limit) {
      answer_error(ApiError::too_large,
                   ec == bhttp::error::body_limit
                       ? "the body is over " + std::to_string(hub_->config.max_body_bytes) + " bytes"
                       : "the header is over " + std::to_string(hub_->config.max_header_bytes) + " bytes",
                   true);
      return true;
    }
    if (ec == beast::error::timeout) {
      hub_->timeouts.add();
      return true;
    }
    if (ec == bhttp::error::buffer_overflow) {
      // A chunk-size line, chunk extension or trailer section that never ends.
      refuse_framing(ApiError::too_large, "a chunk-size line, chunk extension or trailer section is over " +
                                              std::to_string(buffer_.max_size()) + " bytes");
      return true;
    }
    // partial_message: the client hung up mid-request; nothing to answer, nor to count as framing.
    if (ec == boost::asio::error::operation_aborted || ec == bhttp::error::end_of_stream ||
        ec == bhttp::error::partial_message || ec == boost::asio::error::eof ||
        ec == boost::asio::error::connection_reset)
      return true;
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category()) {
      refuse_framing(ApiError::bad_request, "malformed HTTP request: " + ec.message());
      return true;
    }
    return true;
  }

  /// A request whose framing cannot be trusted: answered, counted, logged
  /// now and then, and its connection closed (what follows may be anything).
  void refuse_framing(ApiError error, const std::string& message) {
    hub_->bad_framing.add();
    std::uint64_t suppressed = 0;
    if (hub_->framing_log.allow(suppressed))
      hub_->logger.warn("refused a request from ", peer_, " and closed its connection: ", message, " (", suppressed,
                        " more since the last report)");
    answer_error(error, message, true);
  }

  void on_header(beast::error_code ec) {
    if (read_failed(ec)) return;
    started_ = Clock::now();
    const auto& req = parser_->get();
    // RFC 9112 6.1: a coding the server does not know leaves the body's end
    // unknown, and guessing it (Content-Length) lets a second request hide
    // in the first one's body. Only "chunked" alone is known here.
    if (req.count(bhttp::field::transfer_encoding) > 0 &&
        (req.count(bhttp::field::transfer_encoding) > 1 ||
         !beast::iequals(trimmed(req[bhttp::field::transfer_encoding]), "chunked")))
      return refuse_framing(ApiError::bad_request, "Transfer-Encoding must be chunked (no other coding is taken)");
    if (req.version() >= 11 && req.count(bhttp::field::host) != 1)
      return refuse_framing(ApiError::bad_request, "an HTTP/1.1 request needs one Host field");
    std::string room;
    route_ = route_of(req.target(), room);
    room_ = std::move(room);
    // Decided from the header, answered once the body is in (bounded by
    // max_body_bytes): a client whose body is left unread would get a reset
    // that can destroy the answer before it reads it.
    refusal_.reset();
    const auto key = presented_key(req[bhttp::field::authorization], req["X-API-Key"]);
    credential_ = -1;
    token_identity_.clear();
    std::string token_problem;
    if (!key.empty()) credential_ = match_api_key(key, hub_->config.api_keys);
    if (credential_ < 0 && !key.empty() && hub_->verifier) {
      const auto checked = hub_->verifier->verify(key, now_ms());
      if (checked) token_identity_ = checked.identity().name;
      else token_problem = std::string(to_string(checked.error()));
    }
    const bool authenticated = credential_ >= 0 || !token_identity_.empty();
    if (authenticated) leave_displaceable();
    if (route_ == Route::unknown)
      refusal_.emplace(ApiError::not_found, "POST to /api/rooms/{room}/messages or /api/messages");
    else if (req.method() != bhttp::verb::post) refusal_.emplace(ApiError::not_allowed, "POST only");
    else if (!hub_->open || !hub_->ingress) refusal_.emplace(ApiError::unavailable, "this instance is stopping");
    else if (!authenticated && !(key.empty() && hub_->config.allow_anonymous))
      refusal_.emplace(ApiError::unauthorized,
                       key.empty() ? "send an API key (Authorization: Bearer <key>, or X-API-Key) or a token"
                       : token_problem.empty() ? "the API key is not valid"
                                               : "neither a valid API key nor a valid token (" + token_problem + ")");
    header_key_ = std::string(req["Idempotency-Key"]);
    stream_.expires_after(std::chrono::milliseconds(hub_->config.body_timeout_ms));
    if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
      // A client that asked first sends no body when the answer is final.
      if (refusal_) return answer_error(refusal_->first, refusal_->second, true);
      // curl asks before sending a body over 1 KiB, and would wait a second for the answer.
      auto go_on = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, 11);
      bhttp::async_write(stream_, *go_on, [self = shared_from_this(), go_on](beast::error_code ec, std::size_t) {
        if (ec) return;
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    if (read_failed(ec)) return;
    if (refusal_) return answer_error(refusal_->first, refusal_->second, true);
    stream_.expires_never();  // answering waits on the pipeline, not on the client
    const std::string& body = parser_->get().body();
    std::string error;
    items_.clear();
    if (route_ == Route::room_messages) {
      auto draft = parse_message(body, room_, error);
      if (!draft) return answer_error(ApiError::bad_request, error, false);
      if (!header_key_.empty() && draft->idempotency_key.empty()) {
        if (!is_valid_idempotency_key(header_key_))
          return answer_error(ApiError::bad_request, "invalid Idempotency-Key: 1 to 128 visible ASCII characters",
                              false);
        draft->idempotency_key = header_key_;
      }
      items_.push_back(Item{std::move(draft), {}, ApiError::unavailable, {}});
    } else {
      bool too_many = false;
      auto batch = parse_batch(body, static_cast<std::size_t>(hub_->config.max_batch_messages), error, too_many);
      if (!batch) return answer_error(too_many ? ApiError::too_large : ApiError::bad_request, error, false);
      for (auto& item : *batch) {
        Item made{std::move(item.draft), {}, ApiError::bad_request, std::move(item.error)};
        items_.push_back(std::move(made));
      }
    }
    std::size_t publishable = 0;
    for (const auto& item : items_) publishable += item.draft ? 1 : 0;
    const std::size_t bucket = credential_ >= 0           ? static_cast<std::size_t>(credential_)
                               : !token_identity_.empty() ? hub_->token_bucket()
                                                          : hub_->anonymous_bucket();
    if (publishable > 0 && !hub_->buckets[bucket].take(static_cast<double>(publishable), Clock::now()))
      return answer_error(ApiError::rate_limited, "this key's rate limit is spent; send again later", false);
    if (hub_->requests_in_flight >= static_cast<std::size_t>(hub_->config.max_requests_in_flight))
      return answer_error(ApiError::unavailable, "too many requests in flight; send again later", false);
    ++hub_->requests_in_flight;
    hub_->requests_in_flight_gauge.set(static_cast<std::int64_t>(hub_->requests_in_flight));
    holds_slot_ = true;
    if (publishable == 0) return finish();
    // Backpressure: the messages go in when the pipeline has room for them.
    hub_->ingress->when_ready([self = shared_from_this()] { self->publish_all(); });
  }

  void publish_all() {
    if (!hub_->ingress) {
      for (auto& item : items_)
        if (item.draft) {
          item.error = ApiError::unavailable;
          item.error_message = "this instance is stopping";
        }
      return finish();
    }
    pending_ = 0;
    for (auto& item : items_)
      if (item.draft) ++pending_;
    const std::string scope_base = credential_ >= 0 ? hub_->fingerprints[static_cast<std::size_t>(credential_)]
                                   : !token_identity_.empty() ? "jwt:" + token_identity_
                                                              : "-";
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (!items_[i].draft) continue;
      Draft& draft = *items_[i].draft;
      if (draft.sender.empty()) draft.sender = token_identity_.empty() ? hub_->config.default_sender : token_identity_;
      if (draft.idempotency_key.empty()) {
        publish(i, MessageId::generate(), std::string());
        continue;
      }
      // One key per caller and sender: two backends may pick the same key without meeting.
      const std::string scope = scope_base + "\n" + draft.sender;
      bool out_of_window = false;
      const auto derived =
          derived_id(scope, draft.idempotency_key, now_ms(), hub_->config.idempotency_window_ms, out_of_window);
      if (out_of_window) {
        settle_item(i, std::nullopt, ApiError::bad_request,
                    "the idempotency_key is a UUIDv7 whose time is outside the idempotency window");
        continue;
      }
      const std::string cache_key = scope + "\n" + draft.idempotency_key;
      auto claim = hub_->idempotency.claim(cache_key, IdempotencyCache::content_of(draft.room, draft.text),
                                           derived ? *derived : MessageId::generate(), Clock::now(),
                                           [self = shared_from_this(), i](const Status& status, const MessageId& id) {
                                             self->hub_->idempotent_replays.add();
                                             self->settle_from_status(i, status, id);
                                           });
      switch (claim.outcome) {
        case IdempotencyCache::Outcome::publish:
          publish(i, claim.id, cache_key);
          break;
        case IdempotencyCache::Outcome::already_acked:
          hub_->idempotent_replays.add();
          settle_item(i, claim.id, ApiError::unavailable, {});
          break;
        case IdempotencyCache::Outcome::waiting:
          break;
        case IdempotencyCache::Outcome::conflict:
          settle_item(i, std::nullopt, ApiError::conflict,
                      "this idempotency_key was used for another message (room or text) within the window");
          break;
        case IdempotencyCache::Outcome::busy:
          settle_item(i, std::nullopt, ApiError::unavailable, "too many messages in flight; send again later");
          break;
      }
    }
  }

  void publish(std::size_t i, const MessageId& id, std::string cache_key) {
    Draft& draft = *items_[i].draft;
    auto message = std::make_shared<Message>();
    message->id = id;
    message->room = draft.room;
    message->sender = draft.sender;
    message->payload = draft.text;
    message->timestamp_ms = now_ms();
    message->origin = hub_->instance_id;
    hub_->messages_published.add();
    // The hub is held, not only the session: the cache entry is settled (and
    // resends waiting on it answered) even after this client is gone.
    hub_->ingress->publish(std::move(message),
                           [self = shared_from_this(), i, id, key = std::move(cache_key)](Status status) {
                             if (!key.empty()) self->hub_->idempotency.settle(key, status, Clock::now());
                             self->settle_from_status(i, status, id);
                           });
  }

  void settle_from_status(std::size_t i, const Status& status, const MessageId& id) {
    if (status.ok()) return settle_item(i, id, ApiError::unavailable, {});
    if (status.code() == StatusCode::rejected)
      return settle_item(i, std::nullopt, ApiError::rejected, status.message());
    settle_item(i, std::nullopt, ApiError::unavailable,
                "not stored (" + status.message() + "); send again, with the same idempotency key");
  }

  void settle_item(std::size_t i, std::optional<MessageId> id, ApiError error, std::string message) {
    items_[i].id = id;
    items_[i].error = error;
    items_[i].error_message = std::move(message);
    if (--pending_ == 0) finish();
  }

  /// Every item is settled: the answer.
  void finish() {
    if (route_ == Route::room_messages) {
      const Item& item = items_.front();
      if (item.id) return answer(202, id_body(*item.id), false);
      return answer_error(item.error, item.error_message, false);
    }
    std::string body = R"({"results":[)";
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (i) body += ',';
      body += items_[i].id ? id_body(*items_[i].id) : error_body(items_[i].error, items_[i].error_message);
    }
    body += "]}";
    answer(202, std::move(body), false);
  }

  void answer_error(ApiError error, const std::string& message, bool close) {
    if (error == ApiError::unavailable || error == ApiError::bad_request) {
      std::uint64_t suppressed = 0;
      if (hub_->error_log.allow(suppressed))
        hub_->logger.debug("answered ", to_string(error), " to ", peer_, ": ", message, " (", suppressed,
                           " more since the last report)");
    }
    answer(http_status(error), error_body(error, message), close);
  }

  void answer(unsigned status, std::string body, bool close) {
    if (holds_slot_) {
      holds_slot_ = false;
      --hub_->requests_in_flight;
      hub_->requests_in_flight_gauge.set(static_cast<std::int64_t>(hub_->requests_in_flight));
    }
    hub_->count_answer(status, started_);
    const bool keep_alive = !close && parser_ && parser_->is_header_done() && parser_->get().keep_alive() && hub_->open;
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(static_cast<bhttp::status>(status), 11);
    res->set(bhttp::field::content_type, "application/json");
    if (status == 401) res->set(bhttp::field::www_authenticate, "Bearer");
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    stream_.expires_after(std::chrono::milliseconds(hub_->config.write_timeout_ms));
    bhttp::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec == beast::error::timeout) self->hub_->timeouts.add();
      if (ec) return;
      if (!res->keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return self->linger(0);
      }
      self->read_header();
    });
  }

  /// After the answer of a connection that closes: reads and drops what the
  /// client still sends (a body over the limit), for at most 2 s and 1 MiB,
  /// so that closing does not reset the connection before the client has
  /// read the answer (a "lingering close").
  void linger(std::size_t drained) {
    constexpr std::size_t kMostDrained = 1024 * 1024;
    buffer_.consume(buffer_.size());
    if (drained == 0) stream_.expires_after(std::chrono::seconds(2));
    stream_.async_read_some(buffer_.prepare(16 * 1024),
                            [self = shared_from_this(), drained](beast::error_code ec, std::size_t n) {
                              if (ec || drained + n > kMostDrained) return self->close();
                              self->linger(drained + n);
                            });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Hub> hub_;
  std::string peer_;
  Route route_ = Route::unknown;
  std::string room_;
  std::string header_key_;
  /// Why the request in hand is refused, decided from its header.
  std::optional<std::pair<ApiError, std::string>> refusal_;
  int credential_ = -1;
  /// The identity of a valid token the request presented (no key matched); empty without one.
  std::string token_identity_;
  std::vector<Item> items_;
  std::size_t pending_ = 0;
  bool holds_slot_ = false;
  Clock::time_point started_ = Clock::now();
  /// Where this session is in hub_->unauthenticated; empty once it authenticated.
  std::optional<std::list<Session*>::iterator> unauthenticated_at_;
};

HttpSource::HttpSource(const Config& config, Context& context)
    : context_(context), hub_(std::make_shared<Hub>(HttpConfig::from(config), context)) {}

HttpSource::~HttpSource() {
  hub_->ingress = nullptr;
  for (auto* session : hub_->sessions) session->close();
}

Status HttpSource::start(Ingress& ingress) {
  const auto& cfg = hub_->config;
  started_ = true;
  if (!cfg.enabled) {
    context_.logger().info("off: listen is empty (set it, e.g. NUDGE_HTTP_LISTEN, to take messages over HTTP)");
    return Status::success();
  }
  if (auto s = listen(); !s.ok()) return s;
  hub_->ingress = &ingress;
  hub_->open = true;
  for (auto& listener : listeners_) do_accept(*listener);
  const bool v6 = cfg.host.find(':') != std::string::npos;
  context_.logger().info(
      "taking messages at http://", v6 ? "[" + cfg.host + "]" : cfg.host, ":", bound_port_,
      "/api/rooms/{room}/messages and /api/messages (",
      cfg.api_keys.empty() && cfg.jwt_secret.empty()
          ? std::string("anonymous: no API key")
          : std::to_string(cfg.api_keys.size()) + " API key(s)" + (cfg.jwt_secret.empty() ? "" : ", JWTs"),
      cfg.allow_anonymous && !cfg.api_keys.empty() ? ", or anonymous" : "", ")");
  return Status::success();
}

Status HttpSource::listen() {
  const auto& cfg = hub_->config;
  const std::vector<std::string> hosts =
      cfg.host == "localhost" ? std::vector<std::string>{"127.0.0.1", "::1"} : std::vector<std::string>{cfg.host};
  std::uint16_t port = cfg.port;
  for (const auto& host : hosts) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(host, ec);
    if (ec)
      return Status::error(StatusCode::invalid_argument,
                           "listen: '" + cfg.host + "' is not an IP address or localhost");
    const std::string where = (address.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
    auto listener = std::make_unique<Listener>(context_.executor());
    auto& acceptor = listener->acceptor;
    const bool optional = &host != &hosts.front();  // ::1 of localhost, where there is no IPv6
    if (acceptor.open(address.is_v6() ? tcp::v6() : tcp::v4(), ec); ec) {
      if (optional) break;
      return Status::error(StatusCode::unavailable, "cannot open a socket for " + where + ": " + ec.message());
    }
    acceptor.set_option(boost::asio::socket_base::reuse_address(true), ec);
    if (address.is_v6()) acceptor.set_option(boost::asio::ip::v6_only(true), ec);
    if (acceptor.bind(tcp::endpoint(address, port), ec); ec) {
      if (optional && ec.value() == EADDRNOTAVAIL) break;
      const std::string hint = ec == boost::asio::error::address_in_use
                                   ? " (another process listens there; stop it or change source.http.listen)"
                                   : "";
      return Status::error(StatusCode::unavailable, "cannot listen on " + where + ": " + ec.message() + hint);
    }
    if (acceptor.listen(boost::asio::socket_base::max_listen_connections, ec); ec)
      return Status::error(StatusCode::unavailable, "cannot listen on " + where + ": " + ec.message());
    port = acceptor.local_endpoint().port();
    listeners_.push_back(std::move(listener));
  }
  bound_port_ = port;
  return Status::success();
}

void HttpSource::do_accept(Listener& listener) {
  listener.acceptor.async_accept([this, &listener](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !listener.acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors and the like: counted, logged now and then, and the accepting goes on.
      std::uint64_t suppressed = 0;
      if (hub_->error_log.allow(suppressed))
        context_.logger().warn("accept failed: ", ec.message(), " (", suppressed, " more since the last report)");
      return do_accept(listener);
    }
    boost::system::error_code peer_ec;
    const auto remote = socket.remote_endpoint(peer_ec);
    const std::string peer = peer_ec ? std::string("?") : peer_key(remote.address());
    const auto& cfg = hub_->config;
    const std::size_t from_peer = hub_->per_address.contains(peer) ? hub_->per_address[peer] : 0;
    const bool full = hub_->connections >= static_cast<std::size_t>(cfg.max_connections);
    if ((full && hub_->unauthenticated.empty()) ||
        (cfg.max_connections_per_address > 0 &&
         from_peer >= static_cast<std::size_t>(cfg.max_connections_per_address))) {
      hub_->connections_refused.add();
      socket.close(peer_ec);
      return do_accept(listener);
    }
    if (full) {
      // The oldest connection that has shown no key goes; its count drops
      // when its pending operations end, a moment later.
      Session* oldest = hub_->unauthenticated.front();
      oldest->leave_displaceable();  // out of the list: not displaced twice
      oldest->close();
      hub_->connections_displaced.add();
    }
    ++hub_->connections;
    ++hub_->per_address[peer];
    hub_->connections_open.add(1);
    std::make_shared<Session>(std::move(socket), hub_, peer)->start();
    do_accept(listener);
  });
}

// Nothing to deliver: a backend posting messages is not subscribed to rooms.
void HttpSource::deliver(const MessagePtr&) {}

void HttpSource::stop_intake() {
  hub_->open = false;
  boost::system::error_code ec;
  for (auto& listener : listeners_) listener->acceptor.close(ec);
}

void HttpSource::stop(std::function<void()> done) {
  stop_intake();
  hub_->ingress = nullptr;
  // Answers are out (the pipeline drained before stop): the connections go.
  for (auto* session : std::vector<Session*>(hub_->sessions.begin(), hub_->sessions.end())) session->close();
  boost::asio::post(context_.executor(), std::move(done));
}

Readiness HttpSource::readiness() const {
  if (hub_->config.enabled && !hub_->open) return Readiness::no(started_ ? "stopping" : "not started");
  return Readiness::yes();
}

}  // namespace nudge::plugins::http
