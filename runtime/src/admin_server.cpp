#include "admin_server.hpp"

#include <chrono>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "nudge/sdk/config.hpp"

namespace nudge::runtime {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

/// One admin connection: requests answered in turn, keep-alive honoured.
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket socket, std::shared_ptr<const AdminHandlers> handlers)
      : stream_(std::move(socket)), handlers_(std::move(handlers)) {}

  void read() {
    request_ = {};
    parser_.emplace();
    parser_->body_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      self->request_ = self->parser_->release();
      self->handle();
    });
  }

 private:
  void handle() {
    const std::string target(request_.target());
    const std::string path = target.substr(0, target.find('?'));
    const auto method = request_.method();
    if (path == "/reload") {
      if (method != http::verb::post) return answer(http::status::method_not_allowed, "use POST /reload\n");
      handlers_->reload([self = shared_from_this()](unsigned status, std::string body) {
        self->answer(static_cast<http::status>(status), std::move(body));
      });
      return;
    }
    if (method != http::verb::get && method != http::verb::head)
      return answer(http::status::method_not_allowed, "use GET\n");
    if (path == "/healthz") return answer(http::status::ok, "ok\n");
    if (path == "/readyz") {
      const auto problems = handlers_->not_ready();
      if (problems.empty()) return answer(http::status::ok, "ready\n");
      std::string body = "not ready\n";
      for (const auto& p : problems) body += p + "\n";
      return answer(http::status::service_unavailable, std::move(body));
    }
    if (path == "/metrics")
      return answer(http::status::ok, handlers_->metrics(), "text/plain; version=0.0.4; charset=utf-8");
    if (path == "/")
      return answer(http::status::ok,
                    "nudge admin endpoint\n  GET /healthz   the process is alive\n  GET /readyz    every stage "
                    "ready, or which is not\n  GET /metrics   Prometheus metrics\n  POST /reload   re-read the "
                    "pipeline file\n");
    answer(http::status::not_found, "no such endpoint: " + path + " (try /healthz, /readyz, /metrics, /reload)\n");
  }

  void answer(http::status status, std::string body, const char* type = "text/plain; charset=utf-8") {
    auto response = std::make_shared<http::response<http::string_body>>(status, request_.version());
    response->set(http::field::server, "nudge");
    response->set(http::field::content_type, type);
    response->set(http::field::cache_control, "no-store");
    response->keep_alive(request_.keep_alive());
    if (request_.method() != http::verb::head) response->body() = std::move(body);
    response->prepare_payload();
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write(stream_, *response, [self = shared_from_this(), response](beast::error_code ec, std::size_t) {
      if (ec || !response->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  std::shared_ptr<const AdminHandlers> handlers_;
};

}  // namespace

AdminServer::AdminServer(boost::asio::io_context& io, AdminHandlers handlers)
    : io_(io), handlers_(std::make_shared<const AdminHandlers>(std::move(handlers))), acceptor_(io) {}

AdminServer::~AdminServer() { stop(); }

Status AdminServer::start(const std::string& listen) {
  std::string host;
  std::uint16_t port = 0;
  if (!parse_host_port(listen, host, port))
    return Status::error(StatusCode::invalid_argument, "admin.listen: '" + listen + "' is not host:port");
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return Status::error(StatusCode::invalid_argument, "admin.listen: '" + host + "' is not an IP address");
  const tcp::endpoint endpoint(address, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::error(StatusCode::unavailable, "admin endpoint: cannot listen on " + listen + ": " + ec.message());
  const auto bound = acceptor_.local_endpoint();
  const std::string shown = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
  logger_.info("admin endpoint listening on http://", shown, ":", bound.port(), " (/healthz /readyz /metrics, POST /reload)");
  accept();
  return Status::success();
}

unsigned short AdminServer::port() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void AdminServer::stop() {
  boost::system::error_code ignored;
  if (acceptor_.is_open()) acceptor_.close(ignored);
}

void AdminServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<AdminSession>(std::move(socket), handlers_)->read();
    accept();
  });
}

}  // namespace nudge::runtime
