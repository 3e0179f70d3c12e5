#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "engine/logging.hpp"
#include "engine/metrics.hpp"
#include "engine/tap.hpp"
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
  /// Where GET /tap attaches (it must outlive the server's connections'
  /// handlers being run); null: GET /tap answers 404.
  TapRegistry* taps = nullptr;
};

/// Who may use the admin endpoint, and how much of it one client may hold.
struct AdminAccess {
  /// What POST /reload (every endpoint that changes something) and GET /tap
  /// (it shows messages) need in `Authorization: Bearer`; empty refuses
  /// those endpoints (403).
  std::string token;
  /// Host names a request may address besides IP literals, `localhost` and the listen host.
  std::vector<std::string> allowed_hosts;
  /// Connections open at once. A connection accepted past it takes the place
  /// of the one idle longest (see AdminServer); it is closed only when every
  /// open connection is in the middle of a request.
  std::size_t max_connections = 16;
  /// How long a client has to send a whole request, and how long a
  /// keep-alive connection may stay idle (each response may take as long).
  std::chrono::milliseconds request_timeout{30000};
  /// How long a new connection may stay silent: every program that asks the
  /// endpoint something sends its request as soon as it has connected. Also
  /// how long a request may take to arrive before the connection sending it
  /// may be closed to make room for a new one.
  std::chrono::milliseconds first_byte_timeout{2000};
};

/// The admin HTTP endpoint (`[admin] listen`): /healthz, /readyz, /metrics,
/// POST /reload and GET /tap, served on the pipeline's event loop.
///
/// It answers programs (curl, Prometheus, probes, `nudge`), never browsers:
/// a request carrying `Origin` or `Sec-Fetch-*` headers, or naming in its
/// `Host` a name it was not told of (DNS rebinding), gets 403 whatever the
/// endpoint, so a web page cannot reach it through an operator's browser.
/// POST /reload and GET /tap need the token. Requests are small and bounded (headers
/// 8 KiB, body 4 KiB, `request_timeout`); refusals are logged and counted.
///
/// Nobody can take it off the air by holding connections open: past
/// `max_connections`, a new connection takes the place of the one that has
/// waited longest for a request (a connection that has sent nothing yet, or
/// a keep-alive one between requests), else of one whose request has been
/// arriving for longer than `first_byte_timeout`; a connection whose request
/// is being answered is never closed for another. And a new connection that
/// sends nothing is closed after `first_byte_timeout`.
///
/// GET /tap answers with a stream of newline-delimited JSON events (chunked)
/// for as long as the client reads it or until its limit; the connection
/// counts as answering throughout, so `max_taps` must stay below
/// `max_connections` (the config checks it). A tapper that does not read
/// misses events (TapRegistry) and is closed after `request_timeout`
/// without progress.
class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, AdminHandlers handlers, AdminAccess access, MetricsRegistry& metrics);
  ~AdminServer();

  /// Binds `listen` (host:port; port 0 picks one) and starts accepting. Logs
  /// `admin endpoint listening on http://HOST:PORT`.
  Status start(const std::string& listen);
  /// Stops accepting; open connections finish their request.
  void stop();
  /// The bound port (after start).
  unsigned short port() const;

  /// Shared with the sessions, which may outlive the server by a request.
  struct State;

 private:
  void accept();

  boost::asio::io_context& io_;
  std::shared_ptr<State> state_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

/// Compares a presented secret with the expected one in time that depends
/// only on the expected one's length, so timing tells an attacker nothing
/// about how much of a guess was right.
bool secrets_equal(std::string_view presented, std::string_view expected) noexcept;

}  // namespace nudge::runtime
