#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "logging.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge::runtime {

/// What the admin endpoint answers with; each runs on the event loop.
struct AdminHandlers {
  /// The /metrics body (Prometheus text format).
  std::function<std::string()> metrics;
  /// One line per stage not ready, `stage: reason`; empty when ready.
  std::function<std::vector<std::string>()> not_ready;
  /// Re-reads the pipeline file and answers (HTTP status, body text).
  std::function<void(std::function<void(unsigned status, std::string body)>)> reload;
};

/// The admin HTTP endpoint (`[admin] listen`): /healthz, /readyz, /metrics
/// and POST /reload, served on the pipeline's event loop. Small, bounded
/// requests only; each connection is closed after 30 s idle.
class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, AdminHandlers handlers);
  ~AdminServer();

  /// Binds `listen` (host:port; port 0 picks one) and starts accepting. Logs
  /// `admin endpoint listening on http://HOST:PORT`.
  Status start(const std::string& listen);
  /// Stops accepting; open connections finish their request.
  void stop();
  /// The bound port (after start).
  unsigned short port() const;

 private:
  void accept();

  boost::asio::io_context& io_;
  std::shared_ptr<const AdminHandlers> handlers_;
  boost::asio::ip::tcp::acceptor acceptor_;
  NamedLogger logger_{"admin"};
};

}  // namespace nudge::runtime
