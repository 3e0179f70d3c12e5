#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/diagnostics.hpp"

namespace nudge::runtime {

/// `nudge deploy up|down|status FILE`: runs a deployment file's instances on
/// this machine as supervised processes behind nginx. `command` is up, down,
/// status or __supervise (the supervisor `up` starts).
int run_deploy(const std::string& command, const std::string& file);

/// A TCP address as written in a deployment: `127.0.0.1:8000`, `[::1]:8000`, `localhost:8000`.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;

  /// `host:port`, with IPv6 hosts in brackets.
  std::string to_string() const;
  friend bool operator==(const HostPort&, const HostPort&) = default;
};

/// `host:port` with a port in [1, 65535]; nullopt otherwise.
std::optional<HostPort> parse_host_port(std::string_view text);

/// The servers a `[shared]` value names, to check they are reachable: the
/// authority of a URL (`redis://h:6379`, `postgresql://u:p@h:5432/db`, a
/// scheme's usual port when none is written) or a `host:port[,host:port]`
/// list (Kafka brokers). Empty when the value names no server (a topic name).
std::vector<HostPort> server_addresses(std::string_view value);

/// One `[[instance]]`: a `nudge run` of a pipeline with its own ports.
struct DeployInstance {
  std::string name;
  std::filesystem::path pipeline;                        ///< absolute
  HostPort listen;                                       ///< --set source.websocket.listen=...
  HostPort admin;                                        ///< --set admin.listen=...
  std::vector<std::pair<std::string, std::string>> env;  ///< extra environment, file order
  int line = 0;                                          ///< of its [[instance]] header
};

/// A deployment file, validated.
struct Deployment {
  std::string file;            ///< as given, for messages
  std::filesystem::path path;  ///< absolute
  std::string name;
  HostPort listen;                  ///< nginx's public port
  std::filesystem::path state_dir;  ///< absolute: pid and state files, logs, nginx.conf
  std::filesystem::path nginx = "/usr/sbin/nginx";
  int ready_timeout_s = 60;
  /// `[shared]`: environment for every instance (server URLs), file order.
  std::vector<std::pair<std::string, std::string>> shared;
  std::vector<DeployInstance> instances;

  /// `http://LISTEN/`.
  std::string public_url() const;
};

/// Parses and validates a deployment. Every problem goes to `diags`
/// (file:line:column, key path, what was expected); nullopt when there was any.
/// `base_dir` resolves relative paths (pipelines, state_dir). Checks that
/// pipeline files exist; opens no connection.
std::optional<Deployment> load_deployment_text(std::string_view text, const std::string& display_name,
                                               const std::filesystem::path& base_dir, Diagnostics& diags);
/// Reads `file` and calls load_deployment_text with its folder.
std::optional<Deployment> load_deployment(const std::filesystem::path& file, Diagnostics& diags);

/// The nginx.conf the supervisor runs nginx with (`nginx -p STATE/nginx -c nginx.conf
/// -g 'daemon off;'`): every path inside the state folder, one upstream of the
/// instances' listeners (least_conn), `/socket.io/` sticky by ip_hash, WebSocket
/// upgrades passed through. `as_root` adds a `user` line so workers drop privileges.
std::string nginx_config(const Deployment& deployment, bool as_root);

}  // namespace nudge::runtime
