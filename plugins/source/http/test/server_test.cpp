// The source on a real socket, driven by blocking clients from the test's
// thread while the source's event loop runs on its own: answers, auth, and
// every bound a client could push.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "http_source.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::plugins::http {
namespace {

namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using ::testing::HasSubstr;

const std::string kKey = "test-key-0123456789abcdef";

/// The pipeline as the source sees it: completes each publish with
/// `outcome` at once, or holds the completions while `hold` is set.
class FakeIngress final : public Ingress {
 public:
  explicit FakeIngress(boost::asio::io_context& io) : io_(io) {}
  void publish(MessagePtr message, Completion done) override {
    std::lock_guard lock(mutex_);
    published_.push_back(message);
    if (hold_) return held_.push_back(std::move(done));
    boost::asio::post(io_, [done = std::move(done), outcome = outcome_] { done(outcome); });
  }
  void when_ready(std::function<void()> resume) override { boost::asio::post(io_, std::move(resume)); }
  void set_room_interest(std::string_view, bool) override { ++interest_calls; }
  bool has_history() const override { return false; }
  void read_history(HistoryQuery, HistoryHandler) override {}

  std::vector<MessagePtr> published() {
    std::lock_guard lock(mutex_);
    return published_;
  }
  void set_outcome(Status s) {
    std::lock_guard lock(mutex_);
    outcome_ = std::move(s);
  }
  void set_hold(bool hold) {
    std::lock_guard lock(mutex_);
    hold_ = hold;
  }
  /// Completes what was held (on the loop).
  void release() {
    std::lock_guard lock(mutex_);
    for (auto& done : held_) boost::asio::post(io_, [done = std::move(done)] { done(Status::success()); });
    held_.clear();
  }
  std::atomic<int> interest_calls{0};

 private:
  boost::asio::io_context& io_;
  std::mutex mutex_;
  std::vector<MessagePtr> published_;
  std::vector<Completion> held_;
  Status outcome_ = Status::success();
  bool hold_ = false;
};

/// An HS256 token signed here, apart from jwt.cpp: base64url by hand, HMAC from OpenSSL.
std::string b64url(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out += kAlphabet[(acc >> (bits - 6)) & 63];
      bits -= 6;
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

std::string sign_token(std::string_view secret, const std::string& claims) {
  const std::string input = b64url(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &size);
  return input + "." + b64url(std::string_view(reinterpret_cast<const char*>(mac), size));
}

struct Reply {
  unsigned status = 0;
  std::string body;
};

class HttpSourceTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (source_) {
      on_loop([&] {
        source_->stop_intake();
        source_->stop([] {});
      });
      on_loop([&] { source_.reset(); });
    }
    work_.reset();
    if (loop_.joinable()) loop_.join();
  }

  void start(std::map<std::string, ConfigValue> overrides = {}) {
    overrides.try_emplace("listen", std::string("127.0.0.1:0"));
    overrides.try_emplace("api_keys", std::vector<std::string>{kKey});
    source_ = std::make_unique<HttpSource>(testing::make_config(HttpConfig::schema(), overrides), context_);
    loop_ = std::thread([this] { io_.run(); });
    on_loop([&] { ASSERT_TRUE(source_->start(ingress_).ok()); });
    port_ = source_->port();
  }

  template <class F>
  void on_loop(F f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  tcp::socket connect() {
    tcp::socket socket(client_io_);
    socket.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_));
    return socket;
  }

  static void send(tcp::socket& socket, const std::string& target, const std::string& body,
                   std::vector<std::pair<std::string, std::string>> headers) {
    bhttp::request<bhttp::string_body> req(bhttp::verb::post, target, 11);
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::content_type, "application/json");
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = body;
    req.prepare_payload();
    bhttp::write(socket, req);
  }

  static Reply receive(tcp::socket& socket) {
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    boost::beast::error_code ec;
    bhttp::read(socket, buffer, res, ec);
    if (ec) return {0, ec.message()};
    return {res.result_int(), res.body()};
  }

  Reply post(const std::string& target, const std::string& body,
             std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer " + kKey}}) {
    auto socket = connect();
    send(socket, target, body, std::move(headers));
    return receive(socket);
  }

  /// True when the server closes `socket` (EOF or a reset) within `within`;
  /// false when it stays open and silent that long.
  static bool closed_by_server(tcp::socket& socket, std::chrono::milliseconds within) {
    pollfd fd{socket.native_handle(), POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(within.count())) <= 0) return false;
    char byte;
    const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  /// True when `socket` has something to read (an answer or its end) within `within`.
  static bool readable_within(tcp::socket& socket, std::chrono::milliseconds within) {
    pollfd fd{socket.native_handle(), POLLIN, 0};
    return ::poll(&fd, 1, static_cast<int>(within.count())) > 0;
  }

  /// Writes `raw` as is on a new connection and reads the answer (status 0 if none within 5 s).
  Reply raw_request(const std::string& raw) {
    auto socket = connect();
    boost::asio::write(socket, boost::asio::buffer(raw));
    if (!readable_within(socket, std::chrono::seconds(5))) return {0, "no answer"};
    Reply reply = receive(socket);
    if (!closed_by_server(socket, std::chrono::seconds(2))) reply.body += " (connection left open)";
    return reply;
  }

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  std::thread loop_;
  testing::TestContext context_{io_, "source.http"};
  FakeIngress ingress_{io_};
  std::unique_ptr<HttpSource> source_;
  boost::asio::io_context client_io_;
  std::uint16_t port_ = 0;
};

TEST_F(HttpSourceTest, APostIsAnsweredWithItsIdOnceDurable) {
  start();
  ingress_.set_hold(true);
  auto socket = connect();
  send(socket, "/api/rooms/general/messages", R"({"text":"deploy finished","sender":"ci"})",
       {{"Authorization", "Bearer " + kKey}});
  // Not durable yet: no answer.
  EXPECT_FALSE(closed_by_server(socket, std::chrono::milliseconds(200)));
  ASSERT_EQ(ingress_.published().size(), 1u);
  ingress_.release();
  const Reply reply = receive(socket);
  EXPECT_EQ(reply.status, 202u) << reply.body;
  const auto message = ingress_.published().front();
  EXPECT_EQ(reply.body, R"({"id":")" + message->id.to_string() + "\"}");
  EXPECT_EQ(message->room, "general");
  EXPECT_EQ(message->sender, "ci");
  EXPECT_EQ(message->payload, "deploy finished");
  EXPECT_EQ(ingress_.interest_calls.load(), 0) << "an HTTP caller is in no room";
}

TEST_F(HttpSourceTest, KeysComeAsBearerOrXApiKeyAndAWrongOrMissingOneIs401Json) {
  start();
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"a"})", {{"X-API-Key", kKey}}).status, 202u);
  const Reply missing = post("/api/rooms/general/messages", R"({"text":"a"})", {});
  EXPECT_EQ(missing.status, 401u);
  EXPECT_THAT(missing.body, HasSubstr(R"("code":"unauthorized")"));
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"a"})", {{"Authorization", "Bearer " + kKey + "x"}}).status,
            401u);
  EXPECT_EQ(ingress_.published().size(), 1u);
}

TEST_F(HttpSourceTest, BadRequestsGetTheirCodes) {
  start({{"max_body_bytes", std::int64_t{1024}}, {"max_header_bytes", std::int64_t{1024}}});
  EXPECT_EQ(post("/api/rooms/no%20spaces/messages", R"({"text":"a"})").status, 400u);
  EXPECT_EQ(post("/api/rooms/general/messages", "not json").status, 400u);
  EXPECT_EQ(post("/api/nothing", "{}").status, 404u);
  const Reply big = post("/api/rooms/general/messages", R"({"text":")" + std::string(2000, 'x') + "\"}");
  EXPECT_EQ(big.status, 413u);
  EXPECT_THAT(big.body, HasSubstr(R"("code":"too_large")"));
  const Reply big_header = post("/api/rooms/general/messages", R"({"text":"a"})",
                                {{"Authorization", "Bearer " + kKey}, {"X-Padding", std::string(2000, 'p')}});
  EXPECT_EQ(big_header.status, 413u);
  EXPECT_TRUE(ingress_.published().empty());
}

TEST_F(HttpSourceTest, ABatchAnswersEachItemAndIsBoundedInSize) {
  start({{"max_batch_messages", std::int64_t{3}}});
  const Reply reply =
      post("/api/messages",
           R"({"messages":[{"room":"a","text":"one"},{"room":"b c","text":"two"},{"room":"c","text":"three"}]})");
  EXPECT_EQ(reply.status, 202u);
  const auto published = ingress_.published();
  ASSERT_EQ(published.size(), 2u);
  EXPECT_EQ(
      reply.body,
      R"({"results":[{"id":")" + published[0]->id.to_string() +
          R"("},{"error":{"code":"bad_request","message":"invalid room name: use 1 to 128 characters of A-Z a-z 0-9 _ - . :"}},{"id":")" +
          published[1]->id.to_string() + "\"}]}");
  const Reply too_many = post(
      "/api/messages",
      R"({"messages":[{"room":"a","text":"1"},{"room":"a","text":"2"},{"room":"a","text":"3"},{"room":"a","text":"4"}]})");
  EXPECT_EQ(too_many.status, 413u);
  EXPECT_EQ(ingress_.published().size(), 2u);
}

TEST_F(HttpSourceTest, TheSameIdempotencyKeyGivesTheSameIdAndPublishesOnce) {
  start();
  const Reply first = post("/api/rooms/general/messages", R"({"text":"once","idempotency_key":"order-42"})");
  const Reply again = post("/api/rooms/general/messages", R"({"text":"once"})",
                           {{"Authorization", "Bearer " + kKey}, {"Idempotency-Key", "order-42"}});
  EXPECT_EQ(first.status, 202u);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(ingress_.published().size(), 1u);
  const Reply other = post("/api/rooms/general/messages", R"({"text":"something else","idempotency_key":"order-42"})");
  EXPECT_EQ(other.status, 409u);
  // A failed first attempt: the resend publishes again under the same id.
  ingress_.set_outcome(Status::error(StatusCode::unavailable, "log down"));
  const Reply failed = post("/api/rooms/general/messages", R"({"text":"retry me","idempotency_key":"order-43"})");
  EXPECT_EQ(failed.status, 503u);
  ingress_.set_outcome(Status::success());
  const Reply retried = post("/api/rooms/general/messages", R"({"text":"retry me","idempotency_key":"order-43"})");
  EXPECT_EQ(retried.status, 202u);
  const auto published = ingress_.published();
  ASSERT_EQ(published.size(), 3u);
  EXPECT_EQ(published[1]->id, published[2]->id);
}

TEST_F(HttpSourceTest, ATransformsRejectIs422WithItsReason) {
  start();
  ingress_.set_outcome(Status::error(StatusCode::rejected, "no links"));
  const Reply reply = post("/api/rooms/general/messages", R"({"text":"http://x"})");
  EXPECT_EQ(reply.status, 422u);
  EXPECT_THAT(reply.body, HasSubstr("no links"));
}

TEST_F(HttpSourceTest, ConnectionsAreBoundedPerAddressAndInTotal) {
  start({{"max_connections_per_address", std::int64_t{2}}});
  auto a = connect(), b = connect(), c = connect();
  EXPECT_TRUE(closed_by_server(c, std::chrono::milliseconds(2000))) << "a third from one address";
  EXPECT_FALSE(closed_by_server(a, std::chrono::milliseconds(100)));
  a.close();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto d = connect();
  send(d, "/api/rooms/general/messages", R"({"text":"a"})", {{"Authorization", "Bearer " + kKey}});
  EXPECT_EQ(receive(d).status, 202u) << "a slot freed by a close is taken again";
  EXPECT_EQ(context_.metrics().value("connections_refused"), 1u);
}

TEST_F(HttpSourceTest, TotalConnectionsAreBounded) {
  start({{"max_connections", std::int64_t{1}}, {"max_connections_per_address", std::int64_t{0}}});
  auto a = connect();
  // Authenticated, so not displaced (see AtMaxConnections... below).
  send(a, "/api/rooms/general/messages", R"({"text":"a"})", {{"Authorization", "Bearer " + kKey}});
  EXPECT_EQ(receive(a).status, 202u);
  auto b = connect();
  EXPECT_TRUE(closed_by_server(b, std::chrono::milliseconds(2000)));
}

TEST_F(HttpSourceTest, RequestsInFlightAreBounded) {
  start({{"max_requests_in_flight", std::int64_t{1}}});
  ingress_.set_hold(true);
  auto a = connect();
  send(a, "/api/rooms/general/messages", R"({"text":"held"})", {{"Authorization", "Bearer " + kKey}});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const Reply refused = post("/api/rooms/general/messages", R"({"text":"second"})");
  EXPECT_EQ(refused.status, 503u);
  EXPECT_THAT(refused.body, HasSubstr("in flight"));
  ingress_.release();
  EXPECT_EQ(receive(a).status, 202u);
  ingress_.set_hold(false);
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"third"})").status, 202u);
}

TEST_F(HttpSourceTest, ASlowHeaderAndAnIdleConnectionAreClosedAfterTheHeaderTimeout) {
  start({{"header_timeout_ms", std::int64_t{300}}});
  auto slow = connect();
  boost::asio::write(slow, boost::asio::buffer(std::string("POST /api/messages HTTP/1.1\r\nHost: x\r\n")));
  // Closed well before the default 10 s: the configured bound applies.
  EXPECT_TRUE(closed_by_server(slow, std::chrono::milliseconds(3000)));
  auto idle = connect();
  EXPECT_TRUE(closed_by_server(idle, std::chrono::milliseconds(3000)));
  // The client may see the close before the server's loop has counted it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (context_.metrics().value("timeouts") < 2u && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(context_.metrics().value("timeouts"), 2u);
}

TEST_F(HttpSourceTest, TheRateLimitPerKeyIs429) {
  start({{"rate_limit_per_second", 0.001}, {"rate_limit_burst", std::int64_t{2}}});
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"1"})").status, 202u);
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"2"})").status, 202u);
  const Reply limited = post("/api/rooms/general/messages", R"({"text":"3"})");
  EXPECT_EQ(limited.status, 429u);
  EXPECT_THAT(limited.body, HasSubstr("rate_limited"));
  EXPECT_EQ(context_.metrics().value("requests", {{"code", "429"}}), 1u);
  EXPECT_EQ(context_.metrics().value("requests", {{"code", "202"}}), 2u);
}

TEST_F(HttpSourceTest, AfterStopIntakeRequestsAre503AndNewConnectionsRefused) {
  start();
  auto open = connect();
  send(open, "/api/rooms/general/messages", R"({"text":"early"})", {{"Authorization", "Bearer " + kKey}});
  EXPECT_EQ(receive(open).status, 202u);
  on_loop([&] { source_->stop_intake(); });
  send(open, "/api/rooms/general/messages", R"({"text":"late"})", {{"Authorization", "Bearer " + kKey}});
  EXPECT_EQ(receive(open).status, 503u) << "a keep-alive connection open at the stop";
  EXPECT_EQ(ingress_.published().size(), 1u);
  EXPECT_THROW(connect(), boost::system::system_error) << "the listener is closed";
}

TEST_F(HttpSourceTest, AValidTokenStandsInForAKeyAndNamesTheSender) {
  const std::string secret = "0123456789abcdef0123456789abcdef-jwt";
  start({{"api_keys", std::vector<std::string>{}}, {"jwt_secret", secret}});
  const std::int64_t exp =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() +
      600;
  const std::string token = sign_token(secret, R"({"sub":"billing","exp":)" + std::to_string(exp) + "}");
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"paid"})", {{"Authorization", "Bearer " + token}}).status,
            202u);
  ASSERT_EQ(ingress_.published().size(), 1u);
  EXPECT_EQ(ingress_.published()[0]->sender, "billing") << "a token's identity is the default sender";
  const Reply expired = post("/api/rooms/general/messages", R"({"text":"late"})",
                             {{"Authorization", "Bearer " + sign_token(secret, R"({"sub":"billing","exp":1})")}});
  EXPECT_EQ(expired.status, 401u);
  EXPECT_THAT(expired.body, HasSubstr("expired"));
  const Reply forged =
      post("/api/rooms/general/messages", R"({"text":"forged"})",
           {{"Authorization",
             "Bearer " + sign_token(std::string(40, 'x'), R"({"sub":"billing","exp":)" + std::to_string(exp) + "}")}});
  EXPECT_EQ(forged.status, 401u);
  EXPECT_EQ(ingress_.published().size(), 1u);
}

TEST_F(HttpSourceTest, AnEndlessChunkExtensionOrTrailerIsRefusedAtTheReadBoundAndClosed) {
  // A body timeout far off: without a bound the server would read on until it.
  start({{"body_timeout_ms", std::int64_t{60000}}, {"max_header_bytes", std::int64_t{1024}}});
  const std::string head = "POST /api/rooms/general/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kKey +
                           "\r\nTransfer-Encoding: chunked\r\n\r\n";
  auto attack = [&](const std::string& start_of_body) {
    auto socket = connect();
    boost::asio::write(socket, boost::asio::buffer(head + start_of_body));
    // 1 MiB of one line, written on another thread: the server stops reading it.
    std::thread writer([&socket] {
      const std::string filler(64 * 1024, 'e');
      boost::system::error_code ec;
      for (int i = 0; i < 16 && !ec; ++i) boost::asio::write(socket, boost::asio::buffer(filler), ec);
    });
    const bool answered = readable_within(socket, std::chrono::seconds(5));
    Reply reply = answered ? receive(socket) : Reply{0, "no answer"};
    const bool closed = answered && closed_by_server(socket, std::chrono::seconds(5));
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    writer.join();
    EXPECT_EQ(reply.status, 413u) << reply.body;
    EXPECT_THAT(reply.body, HasSubstr("chunk"));
    EXPECT_TRUE(closed);
  };
  attack("5;");                              // a chunk extension
  attack("5\r\nhello\r\n0\r\nX-Trailer: ");  // a trailer field
  EXPECT_EQ(context_.metrics().value("bad_framing"), 2u);
  EXPECT_EQ(context_.logger().count(LogLevel::warn, "chunk"), 1u) << "logged once in the limiter's period";
  EXPECT_TRUE(ingress_.published().empty());
  // The bound leaves room for an ordinary chunked body, extensions and all.
  const Reply chunked = raw_request(head.substr(0, head.size() - 2) + "Connection: close\r\n\r\n" +
                                    "d;name=value\r\n{\"text\":\"ok\"}\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.status, 202u) << chunked.body;
}

TEST_F(HttpSourceTest, AtMaxConnectionsANewcomerDisplacesTheOldestConnectionThatShowedNoKey) {
  start({{"max_connections", std::int64_t{4}}, {"max_connections_per_address", std::int64_t{0}}});
  std::vector<tcp::socket> squatters;
  for (int i = 0; i < 4; ++i) {
    squatters.push_back(connect());
    boost::asio::write(squatters.back(), boost::asio::buffer(std::string("P")));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(post("/api/rooms/general/messages", R"({"text":"backend"})").status, 202u)
      << "a backend with a key gets in while idle connections fill every slot";
  EXPECT_TRUE(closed_by_server(squatters[0], std::chrono::milliseconds(2000))) << "the oldest went";
  EXPECT_FALSE(closed_by_server(squatters[3], std::chrono::milliseconds(100))) << "the newest stays";
  EXPECT_EQ(context_.metrics().value("connections_displaced"), 1u);
  EXPECT_EQ(context_.metrics().value("connections_refused"), 0u);
  for (auto& squatter : squatters) squatter.close();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(context_.metrics().value("bad_framing"), 0u) << "a client hanging up mid-request is no framing fault";
}

TEST_F(HttpSourceTest, AtMaxConnectionsWhenAllAreAuthenticatedANewcomerIsRefused) {
  start({{"max_connections", std::int64_t{2}}, {"max_connections_per_address", std::int64_t{0}}});
  auto a = connect(), b = connect();
  for (auto* socket : {&a, &b}) {
    send(*socket, "/api/rooms/general/messages", R"({"text":"kept"})", {{"Authorization", "Bearer " + kKey}});
    EXPECT_EQ(receive(*socket).status, 202u);
  }
  auto c = connect();
  EXPECT_TRUE(closed_by_server(c, std::chrono::milliseconds(2000)));
  EXPECT_EQ(context_.metrics().value("connections_refused"), 1u);
  EXPECT_EQ(context_.metrics().value("connections_displaced"), 0u);
  send(a, "/api/rooms/general/messages", R"({"text":"still"})", {{"Authorization", "Bearer " + kKey}});
  EXPECT_EQ(receive(a).status, 202u) << "an authenticated connection is never displaced";
}

TEST_F(HttpSourceTest, ATransferEncodingOtherThanChunkedOrNoHostIs400AndCloses) {
  start();
  const std::string body = R"({"text":"smuggled"})";
  for (const std::string coding : {"xchunked", "gzip", "chunked, gzip", "gzip, chunked"}) {
    const Reply reply = raw_request("POST /api/rooms/general/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                    kKey + "\r\nTransfer-Encoding: " + coding +
                                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    EXPECT_EQ(reply.status, 400u) << coding << ": " << reply.body;
    // Beast itself refuses a Content-Length beside a final chunked.
    if (coding != "gzip, chunked") {
      EXPECT_THAT(reply.body, HasSubstr("Transfer-Encoding")) << coding;
    }
  }
  const Reply no_host = raw_request("POST /api/rooms/general/messages HTTP/1.1\r\nAuthorization: Bearer " + kKey +
                                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(no_host.status, 400u) << no_host.body;
  EXPECT_THAT(no_host.body, HasSubstr("Host"));
  EXPECT_TRUE(ingress_.published().empty());
  EXPECT_EQ(context_.metrics().value("bad_framing"), 5u);
  const Reply chunked =
      raw_request("POST /api/rooms/general/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kKey +
                  "\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n" + "13\r\n" + body + "\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.status, 202u) << chunked.body;
}

TEST_F(HttpSourceTest, ATextWithAnUnpairedSurrogateOrADuplicateKeyIs400) {
  start();
  const Reply surrogate = post("/api/rooms/general/messages", R"({"text":"A\udc00B"})");
  EXPECT_EQ(surrogate.status, 400u);
  EXPECT_THAT(surrogate.body, HasSubstr("not valid UTF-8"));
  const Reply twice = post("/api/rooms/general/messages", R"({"text":"FIRST","text":"SECOND"})");
  EXPECT_EQ(twice.status, 400u);
  EXPECT_THAT(twice.body, HasSubstr("duplicate key"));
  EXPECT_TRUE(ingress_.published().empty());
}

TEST_F(HttpSourceTest, ATokenWhoseIdentityTheWebsocketWouldRefuseIs401) {
  const std::string secret = "0123456789abcdef0123456789abcdef-jwt";
  start({{"api_keys", std::vector<std::string>{}}, {"jwt_secret", secret}});
  const std::int64_t exp =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() +
      600;
  for (const std::string sub : {"\\u202Eadmin", "admin\\u200B", " admin", "\\u0301admin"}) {
    const std::string token = sign_token(secret, R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}");
    const Reply reply = post("/api/rooms/general/messages", R"({"text":"hi"})", {{"Authorization", "Bearer " + token}});
    EXPECT_EQ(reply.status, 401u) << sub;
    EXPECT_THAT(reply.body, HasSubstr("identity")) << sub;
  }
  EXPECT_TRUE(ingress_.published().empty());
}

TEST(HttpSourceOff, AnEmptyListenStartsNothingAndIsReady) {
  boost::asio::io_context io;
  testing::TestContext context(io, "source.http");
  HttpSource source(testing::make_config(HttpConfig::schema(), {{"listen", std::string()}}), context);
  FakeIngress ingress(io);
  ASSERT_TRUE(source.start(ingress).ok());
  EXPECT_EQ(source.port(), 0);
  EXPECT_TRUE(source.readiness().ready);
  EXPECT_EQ(context.logger().count(LogLevel::info, "off"), 1u);
}

}  // namespace
}  // namespace nudge::plugins::http
