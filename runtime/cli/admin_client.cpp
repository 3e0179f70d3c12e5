#include "cli/admin_client.hpp"

#include <cctype>
#include <charconv>
#include <cstdio>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace nudge::runtime {

namespace {

std::string seconds_text(std::chrono::milliseconds timeout) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", static_cast<double>(timeout.count()) / 1000.0);
  return std::string(text) + " s";
}

/// An error in the few words a person reads in a status line.
std::string describe(const boost::system::error_code& ec, const AdminUrl& url, std::chrono::milliseconds timeout) {
  namespace error = boost::asio::error;
  if (ec == error::connection_refused) return "connection refused";
  if (ec == boost::beast::error::timeout || ec == error::timed_out) return "timed out after " + seconds_text(timeout);
  if (ec == error::host_not_found || ec == error::host_not_found_try_again) return "unknown host '" + url.host + "'";
  // "Connection reset by peer" reads "connection reset by peer" mid-sentence; "EOF" stays.
  std::string text = ec.message();
  if (text.size() > 1 && std::isupper(static_cast<unsigned char>(text[0])) &&
      !std::isupper(static_cast<unsigned char>(text[1])))
    text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

}  // namespace

std::optional<AdminUrl> parse_admin_url(std::string_view text, std::string& error) {
  std::string_view rest = text;
  if (rest.starts_with("https://")) {
    error = "'" + std::string(text) + "': https is not supported; the admin endpoint speaks http://";
    return std::nullopt;
  }
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  else if (rest.find("://") != std::string_view::npos) {
    error = "'" + std::string(text) + "' is not an http:// URL";
    return std::nullopt;
  }
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  std::string_view host = authority, port = "80";
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "'" + std::string(text) + "': unclosed '[' in the host";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        error = "'" + std::string(text) + "': expected ':PORT' after the host";
        return std::nullopt;
      }
      port = authority.substr(close + 2);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  int port_number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (host.empty() || ec != std::errc() || end != port.data() + port.size() || port_number < 1 || port_number > 65535) {
    error = "'" + std::string(text) + "' is not an admin URL like http://127.0.0.1:9100";
    return std::nullopt;
  }
  AdminUrl url;
  url.host = std::string(host);
  url.port = std::string(port);
  while (path.ends_with('/')) path.remove_suffix(1);
  if (path.ends_with("/metrics")) path.remove_suffix(8);
  url.prefix = std::string(path);
  const bool v6 = url.host.find(':') != std::string::npos;
  url.base = "http://" + (v6 ? "[" + url.host + "]" : url.host) + ":" + url.port + url.prefix;
  return url;
}

AdminResponse admin_request(const std::string& method, const AdminUrl& url, const std::string& path,
                            std::chrono::milliseconds timeout, const std::function<bool()>& cancelled,
                            const AdminHeaders& headers) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = asio::ip::tcp;

  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::string_body> request{http::string_to_verb(method), url.prefix + path, 11};
  const bool v6 = url.host.find(':') != std::string::npos;
  request.set(http::field::host, (v6 ? "[" + url.host + "]" : url.host) + ":" + url.port);
  request.set(http::field::user_agent, "nudge");
  request.set(http::field::connection, "close");
  for (const auto& [name, value] : headers) request.set(name, value);
  request.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);

  AdminResponse result;
  bool finished = false;
  auto fail = [&](const beast::error_code& ec) {
    result.error = describe(ec, url, timeout);
    finished = true;
  };
  stream.expires_after(timeout);
  resolver.async_resolve(url.host, url.port, [&](const beast::error_code& ec, tcp::resolver::results_type found) {
    if (ec) return fail(ec);
    stream.async_connect(found, [&](const beast::error_code& ec, const tcp::endpoint&) {
      if (ec) return fail(ec);
      http::async_write(stream, request, [&](const beast::error_code& ec, std::size_t) {
        if (ec) return fail(ec);
        http::async_read(stream, buffer, parser, [&](const beast::error_code& ec, std::size_t) {
          if (ec) return fail(ec);
          const auto& answer = parser.get();
          result.status = answer.result_int();
          result.reason = std::string(answer.reason());
          result.body = answer.body();
          finished = true;
        });
      });
    });
  });
  // The stream's deadline ends a silent peer; the resolver has none, hence
  // the wall-clock limit. Short slices keep a cancellation quick.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!finished && !io.stopped() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(100));
    if (!finished && cancelled && cancelled()) {
      result.error = "cancelled";
      break;
    }
  }
  if (!finished && result.error.empty()) result.error = "timed out after " + seconds_text(timeout);
  return result;
}

AdminResponse admin_stream(const AdminUrl& url, const std::string& path, const AdminHeaders& headers,
                           const std::function<void(unsigned status)>& on_header,
                           const std::function<void(std::string_view)>& on_data, const std::function<bool()>& cancelled,
                           std::chrono::milliseconds timeout) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = asio::ip::tcp;

  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, url.prefix + path, 11};
  const bool v6 = url.host.find(':') != std::string::npos;
  request.set(http::field::host, (v6 ? "[" + url.host + "]" : url.host) + ":" + url.port);
  request.set(http::field::user_agent, "nudge");
  for (const auto& [name, value] : headers) request.set(name, value);
  http::response_parser<http::string_body> parser;
  // A stream has no end known in advance; a refusal is small.
  parser.body_limit(boost::none);

  AdminResponse result;
  bool finished = false;
  bool streaming = false;
  auto fail = [&](const beast::error_code& ec) {
    result.error = describe(ec, url, timeout);
    finished = true;
  };
  // The parser keeps a reference to the callback: it must outlive the reads.
  auto on_chunk = [&](std::uint64_t, std::string_view data, beast::error_code&) -> std::size_t {
    if (streaming) on_data(data);
    else if (result.body.size() < 64 * 1024) result.body.append(data);
    return data.size();
  };
  parser.on_chunk_body(on_chunk);
  std::function<void()> read_body = [&] {
    http::async_read_some(stream, buffer, parser, [&](const beast::error_code& ec, std::size_t) {
      if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == asio::error::eof) {
        result.error = "the connection closed before the end of the stream";
        finished = true;
        return;
      }
      if (ec) return fail(ec);
      if (parser.is_done()) {
        if (!streaming) result.body += parser.get().body();
        finished = true;
        return;
      }
      read_body();
    });
  };
  stream.expires_after(timeout);
  resolver.async_resolve(url.host, url.port, [&](const beast::error_code& ec, tcp::resolver::results_type found) {
    if (ec) return fail(ec);
    stream.async_connect(found, [&](const beast::error_code& ec, const tcp::endpoint&) {
      if (ec) return fail(ec);
      http::async_write(stream, request, [&](const beast::error_code& ec, std::size_t) {
        if (ec) return fail(ec);
        http::async_read_header(stream, buffer, parser, [&](const beast::error_code& ec, std::size_t) {
          if (ec) return fail(ec);
          result.status = parser.get().result_int();
          result.reason = std::string(parser.get().reason());
          streaming = result.status == 200;
          if (on_header) on_header(result.status);
          // The events come when they come: no deadline while they do.
          if (streaming) stream.expires_never();
          if (parser.is_done()) {
            finished = true;
            return;
          }
          read_body();
        });
      });
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!finished && !io.stopped()) {
    io.run_for(std::chrono::milliseconds(100));
    if (!finished && cancelled && cancelled()) {
      result.error = "cancelled";
      break;
    }
    if (!finished && !streaming && result.status == 0 && std::chrono::steady_clock::now() >= deadline) {
      result.error = "timed out after " + seconds_text(timeout);
      break;
    }
  }
  return result;
}

}  // namespace nudge::runtime
