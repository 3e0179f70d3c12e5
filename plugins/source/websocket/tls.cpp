#include "tls.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace nudge::plugins::websocket {

namespace ssl = boost::asio::ssl;

namespace {

bool readable(const std::string& key, const std::string& file, std::string& error) {
  std::ifstream in(file, std::ios::binary);
  if (in && in.peek() != std::ifstream::traits_type::eof()) return true;
  error = in ? key + " '" + file + "' is empty" : "cannot read " + key + " '" + file + "': " + std::strerror(errno);
  return false;
}

}  // namespace

std::unique_ptr<ssl::context> make_tls_context(const std::string& cert_file, const std::string& key_file,
                                               std::string& error) {
  if (!readable("tls_cert_file", cert_file, error) || !readable("tls_key_file", key_file, error)) return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  // OpenSSL would otherwise prompt on the terminal for an encrypted key's passphrase.
  ctx->set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
  boost::system::error_code ec;
  if (ctx->use_certificate_chain_file(cert_file, ec); ec) {
    error = "tls_cert_file '" + cert_file + "' holds no usable PEM certificate: " + ec.message();
    return nullptr;
  }
  if (ctx->use_private_key_file(key_file, ssl::context::pem, ec); ec) {
    // OpenSSL checks the key against the certificate as it loads it.
    if (ec.category() == boost::asio::error::get_ssl_category() &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
      error = "tls_key_file '" + key_file + "' is not the key of the certificate in tls_cert_file '" + cert_file + "'";
      return nullptr;
    }
    error = "tls_key_file '" + key_file +
            "' holds no usable PEM private key (encrypted keys are not supported): " + ec.message();
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    error = "tls_key_file '" + key_file + "' is not the key of the certificate in tls_cert_file '" + cert_file + "'";
    return nullptr;
  }
  return ctx;
}

}  // namespace nudge::plugins::websocket
