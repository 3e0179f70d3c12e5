#pragma once

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace nudge::plugins::websocket {

/// A TLS server context (TLS 1.2 and later) holding the certificate chain of
/// `cert_file` and the private key of `key_file`, both PEM. Reads the files:
/// call it from start(), not at config time. Returns null and sets `error` to
/// a sentence naming the key and the file when a file is unreadable, holds
/// no certificate or key, or the key does not match the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const std::string& cert_file, const std::string& key_file,
                                                            std::string& error);

}  // namespace nudge::plugins::websocket
