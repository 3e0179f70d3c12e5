// `nudge reload [ADMIN_URL | PIPELINE.toml] [--token T]`: POST /reload to a running instance.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "cli/admin_client.hpp"
#include "cli/commands.hpp"
#include "engine/admin_server.hpp"
#include "engine/pipeline_config.hpp"

namespace nudge::runtime {

namespace {

/// `nudge reload PIPELINE.toml`: a file, not an admin URL.
bool names_pipeline_file(const std::string& argument) {
  std::error_code ec;
  return argument.ends_with(".toml") ||
         (argument.find("://") == std::string::npos && std::filesystem::is_regular_file(argument, ec));
}

}  // namespace

int cmd_reload(const CommandLine& cl) {
  std::string target = cl.argument.empty() ? "http://127.0.0.1:9100" : cl.argument;
  std::optional<AdminSettings> from_file;
  if (names_pipeline_file(cl.argument)) {
    Diagnostics diags;
    LoadOptions options;
    options.overrides = cl.overrides;
    from_file = load_admin_settings(cl.argument, options, diags);
    if (!from_file) {
      if (diags.empty())
        std::cerr << "nudge reload: " << cl.argument
                  << " has no [admin] table, so its instances serve no admin endpoint; send them SIGHUP instead\n";
      else std::cerr << diags.to_string();
      return 2;
    }
    std::string host;
    std::uint16_t port = 0;
    nudge::parse_host_port(from_file->listen, host, port);
    if (port == 0) {
      std::cerr << "nudge reload: " << cl.argument << ": admin.listen '" << from_file->listen
                << "' picks a free port; give the admin URL the instance logged (nudge reload URL --token ...)\n";
      return 2;
    }
    // An instance listening on every address is reached on loopback.
    if (host == "0.0.0.0") host = "127.0.0.1";
    else if (host == "::") host = "::1";
    target = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
  std::string error;
  const auto url = parse_admin_url(target, error);
  if (!url) {
    std::cerr << "nudge reload: " << error << "\n";
    return 2;
  }
  std::string token = cl.token;
  if (const char* env = std::getenv("NUDGE_ADMIN_TOKEN"); token.empty() && env) token = env;
  if (token.empty() && from_file) {
    if (auto status = read_admin_token(*from_file, token); !status.ok()) {
      std::cerr << "nudge reload: " << status.message() << "\n";
      return 2;
    }
  }
  AdminHeaders headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  // A reload re-reads the file and may wait on plugins: more time than a status request.
  const auto response = admin_request("POST", *url, "/reload", std::chrono::seconds(30), {}, headers);
  if (!response.answered()) {
    std::cerr << "nudge reload: cannot reach the admin endpoint at " << url->base << ": " << response.error
              << "\n(is the instance running with an [admin] table? SIGHUP reloads it too)\n";
    return 1;
  }
  (response.status == 200 ? std::cout : std::cerr) << response.body;
  if (response.status == 401 && token.empty())
    std::cerr << "(nudge reload sent no token: give it with --token, $NUDGE_ADMIN_TOKEN, or the pipeline file: "
                 "nudge reload PIPELINE.toml)\n";
  return response.status == 200 ? 0 : 1;
}

}  // namespace nudge::runtime
