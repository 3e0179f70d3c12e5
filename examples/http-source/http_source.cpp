// A source that takes messages by HTTP POST and hands them to the pipeline:
//
//   POST /messages  {"room": "general", "sender": "alice", "text": "hi"}
//   → 202 {"id": "..."}  once the message is durable (appended to the log, or
//                         written by the sink where there is no log)
//   → 400 {"error": "..."} for a bad request, 422 {"error": reason} when a
//     transform rejected it, 503 when the pipeline could not store it
//
// The plugin guide's example of a source (docs/plugin-guide.md): one event
// loop (the Context's executor), backpressure through Ingress::when_ready,
// a graceful stop that answers the requests in flight.
#include <memory>
#include <string>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nudge/sdk.hpp>

namespace example {

using namespace nudge;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

/// `text` as a JSON string.
std::string json_string(std::string_view text) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  return std::string(buffer.GetString(), buffer.GetSize());
}

struct Shared {
  Ingress* ingress = nullptr;
  bool open = true;
  std::int64_t max_body_bytes = 0;
  std::string instance_id;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::shared_ptr<Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(static_cast<std::uint64_t>(shared_->max_body_bytes));
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec == http::error::body_limit)
        return self->answer(http::status::payload_too_large, R"({"error":"body too large"})");
      if (ec) return;
      self->handle();
    });
  }

 private:
  void handle() {
    const auto& req = parser_->get();
    if (req.target() != "/messages") return answer(http::status::not_found, R"({"error":"POST to /messages"})");
    if (req.method() != http::verb::post) return answer(http::status::method_not_allowed, R"({"error":"POST only"})");
    if (!shared_->ingress || !shared_->open)
      return answer(http::status::service_unavailable, R"({"error":"shutting down"})");
    rapidjson::Document doc;
    doc.Parse(req.body().data(), req.body().size());
    auto field = [&](const char* key) -> const rapidjson::Value* {
      if (!doc.IsObject()) return nullptr;
      auto it = doc.FindMember(key);
      return it != doc.MemberEnd() && it->value.IsString() ? &it->value : nullptr;
    };
    const auto* room = field("room");
    const auto* sender = field("sender");
    const auto* text = field("text");
    if (doc.HasParseError() || !room || !text)
      return answer(http::status::bad_request,
                    R"({"error":"expected JSON {\"room\": string, \"text\": string, \"sender\"?: string}"})");
    auto message = std::make_shared<Message>();
    message->id = MessageId::generate();
    message->room.assign(room->GetString(), room->GetStringLength());
    message->sender = sender ? std::string(sender->GetString(), sender->GetStringLength()) : "http";
    message->payload.assign(text->GetString(), text->GetStringLength());
    message->timestamp_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    message->origin = shared_->instance_id;
    const std::string id = message->id.to_string();
    // Backpressure: the request is taken in when the pipeline has room.
    shared_->ingress->when_ready([self = shared_from_this(), message, id]() mutable {
      if (!self->shared_->ingress)
        return self->answer(http::status::service_unavailable, R"({"error":"shutting down"})");
      self->shared_->ingress->publish(std::move(message), [self, id](Status status) {
        if (status.ok()) return self->answer(http::status::accepted, "{\"id\":\"" + id + "\"}");
        // A transform refused it: the reason is for the sender, and sending again will not help.
        if (status.code() == StatusCode::rejected)
          return self->answer(http::status::unprocessable_entity, "{\"error\":" + json_string(status.message()) + "}");
        self->answer(http::status::service_unavailable, R"({"error":"not stored; send again"})");
      });
    });
  }

  void answer(http::status status, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>(status, parser_->get().version());
    res->set(http::field::content_type, "application/json");
    res->keep_alive(parser_->get().keep_alive() && status != http::status::payload_too_large);
    res->body() = std::move(body);
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec || !res->keep_alive()) return self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      self->read();
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Shared> shared_;
};

class HttpSource final : public Source {
 public:
  HttpSource(const Config& config, Context& context)
      : context_(context), acceptor_(context.executor()), shared_(std::make_shared<Shared>()) {
    const std::string listen = config.get_string("listen");
    const auto colon = listen.rfind(':');
    host_ = listen.substr(0, colon);
    port_ = static_cast<std::uint16_t>(std::stoi(listen.substr(colon + 1)));
    shared_->max_body_bytes = config.get_int("max_body_bytes");
    shared_->instance_id = std::string(context.instance_id());
  }
  ~HttpSource() override { shared_->ingress = nullptr; }

  static ConfigSchema schema() {
    ConfigSchema s;
    s.string("listen", "127.0.0.1:8090", "Address and port to take POST /messages on (port 0 picks one)")
        .with_check([](const ConfigValue& v) {
          const auto& text = std::get<std::string>(v);
          const auto colon = text.rfind(':');
          const bool ok = colon != std::string::npos && colon + 1 < text.size() &&
                          text.find_first_not_of("0123456789", colon + 1) == std::string::npos;
          return ok ? std::string() : std::string("must be host:port, e.g. \"127.0.0.1:8090\"");
        });
    s.integer("max_body_bytes", 64 * 1024, "Largest request body accepted; larger ones get HTTP 413")
        .range(16, 16 << 20);
    return s;
  }

  Status start(Ingress& ingress) override {
    boost::system::error_code ec;
    const tcp::endpoint endpoint(boost::asio::ip::make_address(host_, ec), port_);
    if (ec) return Status::error(StatusCode::invalid_argument, "listen: '" + host_ + "' is not an IP address");
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(boost::asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Status::error(StatusCode::unavailable,
                           "cannot listen on " + host_ + ":" + std::to_string(port_) + ": " + ec.message());
    shared_->ingress = &ingress;
    context_.logger().info("taking messages at http://", host_, ":", acceptor_.local_endpoint().port(), "/messages");
    accept();
    return Status::success();
  }

  // Nothing to deliver to: an HTTP client is not subscribed to rooms.
  void deliver(const MessagePtr&) override {}

  void stop_intake() override {
    shared_->open = false;
    boost::system::error_code ec;
    acceptor_.close(ec);
  }

  void stop(std::function<void()> done) override {
    stop_intake();
    shared_->ingress = nullptr;
    done();
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) std::make_shared<Connection>(std::move(socket), shared_)->read();
      accept();
    });
  }

  Context& context_;
  tcp::acceptor acceptor_;
  std::shared_ptr<Shared> shared_;
  std::string host_;
  std::uint16_t port_ = 0;
};

}  // namespace example

NUDGE_PLUGIN(example::HttpSource, "http", "0.1.0", "Takes messages by HTTP POST /messages (JSON) into the pipeline")
