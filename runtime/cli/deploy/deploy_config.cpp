// Deployment files: parsing, validation, and the nginx.conf made from them.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "cli/deploy/deploy.hpp"
#include "engine/toml_support.hpp"

namespace nudge::runtime {

namespace fs = std::filesystem;

std::string HostPort::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<HostPort> parse_host_port(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // bare IPv6 needs brackets
  }
  if (host.empty() || port.empty()) return std::nullopt;
  for (const char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == ':'))
      return std::nullopt;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) return std::nullopt;
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

std::vector<HostPort> server_addresses(std::string_view value) {
  static const std::map<std::string, std::uint16_t, std::less<>> kDefaultPorts = {
      {"redis", 6379},   {"rediss", 6379}, {"postgresql", 5432}, {"postgres", 5432}, {"mysql", 3306},
      {"mariadb", 3306}, {"nats", 4222},   {"tls", 4222},        {"kafka", 9092},    {"http", 80},
      {"https", 443},    {"ws", 80},       {"wss", 443},         {"amqp", 5672},     {"mongodb", 27017}};
  std::vector<HostPort> out;
  std::string_view hosts = value;
  std::optional<std::uint16_t> default_port;
  if (const auto scheme_end = value.find("://"); scheme_end != std::string_view::npos) {
    const auto scheme = value.substr(0, scheme_end);
    if (auto it = kDefaultPorts.find(scheme); it != kDefaultPorts.end()) default_port = it->second;
    hosts = value.substr(scheme_end + 3);
    hosts = hosts.substr(0, hosts.find_first_of("/?#"));
    if (const auto at = hosts.rfind('@'); at != std::string_view::npos) hosts = hosts.substr(at + 1);
  }
  std::size_t start = 0;
  while (start <= hosts.size()) {
    const auto comma = hosts.find(',', start);
    auto item = hosts.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (auto hp = parse_host_port(item)) {
      out.push_back(*hp);
    } else if (default_port && !item.empty() && item.find(':') == std::string_view::npos) {
      out.push_back({std::string(item), *default_port});
    } else if (!item.empty()) {
      return {};  // not an address list: a plain value
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string Deployment::public_url() const { return "http://" + listen.to_string() + "/"; }

namespace {

struct Reporter {
  const std::string& file;
  Diagnostics& diags;

  void at(const toml::source_region& where, std::string key_path, std::string message) const {
    diags.add({file, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), std::move(key_path),
               std::move(message)});
  }
  void at(const toml::node& node, std::string key_path, std::string message) const {
    at(node.source(), std::move(key_path), std::move(message));
  }
};

/// Reports every key of `table` not in `known`, with a guess when one is close.
void check_keys(const toml::table& table, const std::vector<std::string>& known, const std::string& key_path,
                const Reporter& report) {
  for (auto&& [key, node] : table) {
    const std::string name(key.str());
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    report.at(key.source(), key_path, unknown_key_message(name, known));
  }
}

/// A required or optional string key: its value, or nullopt (reported when
/// present with the wrong type, or absent and `required`).
std::optional<std::string> string_key(const toml::table& table, const std::string& key, const std::string& key_path,
                                      const std::string& meaning, bool required, const Reporter& report) {
  const toml::node* node = table.get(key);
  if (!node) {
    if (required) report.at(table, key_path + "." + key, "missing required key (string: " + meaning + ")");
    return std::nullopt;
  }
  if (const auto* s = node->as_string()) {
    if (s->get().empty()) {
      report.at(*node, key_path + "." + key, "expected a non-empty string: " + meaning);
      return std::nullopt;
    }
    return s->get();
  }
  report.at(*node, key_path + "." + key, "expected a string (" + meaning + "), got " + type_name(*node));
  return std::nullopt;
}

std::optional<HostPort> address_key(const toml::table& table, const std::string& key, const std::string& key_path,
                                    const std::string& meaning, const Reporter& report) {
  auto text = string_key(table, key, key_path, meaning + ", \"host:port\"", true, report);
  if (!text) return std::nullopt;
  auto hp = parse_host_port(*text);
  if (!hp)
    report.at(*table.get(key), key_path + "." + key,
              "expected \"host:port\" with a port in [1, 65535] (" + meaning + "), got \"" + *text + "\"");
  return hp;
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  }) && name.front() != '.';
}

bool valid_env_name(const std::string& name) {
  return !name.empty() && !std::isdigit(static_cast<unsigned char>(name.front())) &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

/// A table of environment variables (`[shared]`, an instance's `env`).
std::vector<std::pair<std::string, std::string>> env_table(const toml::table& table, const std::string& key_path,
                                                           const Reporter& report) {
  std::vector<std::pair<const toml::key*, const toml::node*>> listed;
  for (auto&& [key, node] : table) listed.emplace_back(&key, &node);
  // toml++ keeps keys sorted; keep the file's order.
  std::stable_sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) {
    const auto& pa = a.first->source().begin;
    const auto& pb = b.first->source().begin;
    return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
  });
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, node] : listed) {
    const std::string name(key->str());
    if (!valid_env_name(name)) {
      report.at(key->source(), key_path + "." + name,
                "expected an environment variable name (letters, digits, '_'; not starting with a digit)");
      continue;
    }
    if (const auto* s = node->as_string()) out.emplace_back(name, s->get());
    else if (const auto* i = node->as_integer()) out.emplace_back(name, std::to_string(i->get()));
    else if (const auto* b = node->as_boolean()) out.emplace_back(name, b->get() ? "true" : "false");
    else report.at(*node, key_path + "." + name, "expected a string (an environment value), got " + type_name(*node));
  }
  return out;
}

/// Where each port is used, to report a second use.
struct PortUse {
  std::string what;
  int line;
  int column;
};

}  // namespace

std::optional<Deployment> load_deployment_text(std::string_view text, const std::string& display_name,
                                               const fs::path& base_dir, Diagnostics& diags) {
  auto parsed = parse_toml(text, display_name, diags);
  if (!parsed) return std::nullopt;
  toml::table& root = *parsed;
  const std::size_t errors_before = diags.items().size();
  const Reporter report{display_name, diags};
  Deployment d;
  d.file = display_name;
  const fs::path dir = fs::absolute(base_dir).lexically_normal();
  d.path = dir / fs::path(display_name).filename();

  const std::vector<std::string> top_level = {"deployment", "shared", "instance"};
  for (auto&& [key, node] : root) {
    const std::string name(key.str());
    if (std::find(top_level.begin(), top_level.end(), name) == top_level.end()) {
      std::string message = "unknown table '" + name + "'";
      if (auto guess = closest_match(name, top_level); !guess.empty()) message += " (did you mean '" + guess + "'?)";
      else message += "; expected [deployment], [shared] and [[instance]]";
      report.at(key.source(), name, message);
    }
  }

  std::map<std::uint16_t, PortUse> ports;
  auto use_port = [&](const std::optional<HostPort>& hp, const toml::table& table, const std::string& key,
                      const std::string& key_path, const std::string& what) {
    if (!hp) return;
    const auto& where = table.get(key)->source().begin;
    auto [it, fresh] =
        ports.emplace(hp->port, PortUse{what, static_cast<int>(where.line), static_cast<int>(where.column)});
    if (!fresh)
      report.at(table.get(key)->source(), key_path + "." + key,
                "port " + std::to_string(hp->port) + " is already used by " + it->second.what + " (" + display_name +
                    ":" + std::to_string(it->second.line) + ")");
  };

  // [deployment]
  const toml::node* deployment_node = root.get("deployment");
  const toml::table* deployment = deployment_node ? deployment_node->as_table() : nullptr;
  if (!deployment_node) {
    diags.add({display_name, 1, 1, "deployment", "missing table [deployment] (name, listen, state_dir)"});
  } else if (!deployment) {
    report.at(*deployment_node, "deployment", "expected a table [deployment], got " + type_name(*deployment_node));
  } else {
    check_keys(*deployment, {"name", "listen", "state_dir", "nginx", "ready_timeout_s"}, "deployment", report);
    if (auto name =
            string_key(*deployment, "name", "deployment", "the deployment's name, used in messages", true, report)) {
      if (valid_name(*name)) d.name = *name;
      else
        report.at(*deployment->get("name"), "deployment.name",
                  "expected letters, digits, '-', '_' or '.' (at most 64), got \"" + *name + "\"");
    }
    if (auto listen = address_key(*deployment, "listen", "deployment", "nginx's public port", report)) {
      d.listen = *listen;
      use_port(listen, *deployment, "listen", "deployment", "deployment.listen");
    }
    const auto state =
        string_key(*deployment, "state_dir", "deployment", "folder for pid files, logs and nginx.conf", false, report);
    d.state_dir = (dir / (state ? fs::path(*state) : fs::path("var/deploy") / (d.name.empty() ? "nudge" : d.name)))
                      .lexically_normal();
    if (auto nginx = string_key(*deployment, "nginx", "deployment", "path of the nginx executable", false, report))
      d.nginx = *nginx;
    if (const toml::node* t = deployment->get("ready_timeout_s")) {
      const auto* i = t->as_integer();
      if (!i) report.at(*t, "deployment.ready_timeout_s", "expected an integer (seconds), got " + type_name(*t));
      else if (i->get() < 1 || i->get() > 3600)
        report.at(*t, "deployment.ready_timeout_s", "must be in [1, 3600], got " + std::to_string(i->get()));
      else d.ready_timeout_s = static_cast<int>(i->get());
    }
  }

  // [shared]
  if (const toml::node* shared = root.get("shared")) {
    if (const auto* table = shared->as_table()) d.shared = env_table(*table, "shared", report);
    else report.at(*shared, "shared", "expected a table [shared] of environment variables, got " + type_name(*shared));
  }

  // [[instance]]
  const toml::node* instances = root.get("instance");
  const toml::array* list = instances ? instances->as_array() : nullptr;
  if (!instances) {
    diags.add({display_name, 1, 1, "instance", "a deployment needs at least one [[instance]]"});
  } else if (!list) {
    report.at(*instances, "instance",
              "expected [[instance]] tables (an array of tables), got " + type_name(*instances));
  } else {
    std::map<std::string, int> names;
    for (std::size_t i = 0; i < list->size(); ++i) {
      const toml::node& node = *list->get(i);
      const toml::table* table = node.as_table();
      const std::string numbered = "instance[" + std::to_string(i + 1) + "]";
      if (!table) {
        report.at(node, numbered, "expected a table, got " + type_name(node));
        continue;
      }
      DeployInstance inst;
      inst.line = static_cast<int>(table->source().begin.line);
      std::string key_path = numbered;
      if (const auto* n = table->get("name"); n && n->is_string() && valid_name(n->as_string()->get()))
        key_path = "instance." + n->as_string()->get();
      check_keys(*table, {"name", "pipeline", "listen", "admin", "env"}, key_path, report);
      if (auto name =
              string_key(*table, "name", key_path, "the instance's name, for its log and state", true, report)) {
        if (!valid_name(*name)) {
          report.at(*table->get("name"), key_path + ".name",
                    "expected letters, digits, '-', '_' or '.' (at most 64), got \"" + *name + "\"");
        } else if (auto [it, fresh] = names.emplace(*name, static_cast<int>(table->get("name")->source().begin.line));
                   !fresh) {
          report.at(*table->get("name"), key_path + ".name",
                    "duplicate instance name '" + *name + "' (first at " + display_name + ":" +
                        std::to_string(it->second) + ")");
        } else if (*name == "nginx" || *name == "supervisor") {
          report.at(*table->get("name"), key_path + ".name", "'" + *name + "' is reserved; choose another name");
        }
        inst.name = *name;
      }
      if (auto pipeline = string_key(*table, "pipeline", key_path, "the pipeline file it runs", true, report)) {
        inst.pipeline = (dir / *pipeline).lexically_normal();
        std::error_code ec;
        if (!fs::is_regular_file(inst.pipeline, ec))
          report.at(*table->get("pipeline"), key_path + ".pipeline",
                    "no such pipeline file: " + inst.pipeline.string() +
                        " (relative paths start at the deployment "
                        "file's folder)");
      }
      if (auto listen = address_key(*table, "listen", key_path, "the instance's websocket listener", report)) {
        inst.listen = *listen;
        use_port(listen, *table, "listen", key_path, key_path + ".listen");
      }
      if (auto admin = address_key(*table, "admin", key_path, "the instance's admin endpoint", report)) {
        inst.admin = *admin;
        use_port(admin, *table, "admin", key_path, key_path + ".admin");
      }
      if (const toml::node* env = table->get("env")) {
        if (const auto* t = env->as_table()) inst.env = env_table(*t, key_path + ".env", report);
        else report.at(*env, key_path + ".env", "expected a table of environment variables, got " + type_name(*env));
      }
      d.instances.push_back(std::move(inst));
    }
    if (list->empty()) report.at(*instances, "instance", "a deployment needs at least one [[instance]]");
  }

  if (diags.items().size() != errors_before) return std::nullopt;
  return d;
}

std::optional<Deployment> load_deployment(const fs::path& file, Diagnostics& diags) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    diags.add({file.string(), 0, 0, "", "cannot read the deployment file: no such file or not readable"});
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  return load_deployment_text(text.str(), file.string(), dir, diags);
}

std::string nginx_config(const Deployment& d, bool as_root) {
  const fs::path root = d.state_dir / "nginx";
  std::string upstream = "nudge_" + d.name;
  std::replace_if(
      upstream.begin(), upstream.end(), [](char c) { return c == '-' || c == '.'; }, '_');
  // An instance that refused a connection is skipped for 2 s, not nginx's
  // default 10 s: the supervisor restarts it in about a second.
  constexpr const char* kPeer = " max_fails=1 fail_timeout=2s;  # ";
  std::ostringstream out;
  out << "# Generated by `nudge deploy up` from " << d.path.string() << "; rewritten on every `up`.\n"
      << "# Run by the deployment's supervisor: nginx -p " << root.string() << "/ -c nginx.conf -g 'daemon off;'\n";
  if (as_root) out << "user nobody nogroup;\n";
  out << "worker_processes auto;\n"
      << "error_log " << (root / "error.log").string() << " warn;\n"
      << "pid " << (root / "nginx.pid").string() << ";\n\n"
      << "events {\n  worker_connections 4096;\n}\n\n"
      << "http {\n"
      << "  access_log " << (root / "access.log").string() << ";\n"
      << "  client_body_temp_path " << (root / "tmp/client_body").string() << ";\n"
      << "  proxy_temp_path " << (root / "tmp/proxy").string() << ";\n"
      << "  fastcgi_temp_path " << (root / "tmp/fastcgi").string() << ";\n"
      << "  uwsgi_temp_path " << (root / "tmp/uwsgi").string() << ";\n"
      << "  scgi_temp_path " << (root / "tmp/scgi").string() << ";\n\n"
      << "  # WebSocket: pass the upgrade on; a plain request closes as usual.\n"
      << "  map $http_upgrade $connection_upgrade {\n    default upgrade;\n    ''      close;\n  }\n\n"
      << "  # Everything but Socket.IO: the instance with the fewest open connections.\n"
      << "  upstream " << upstream << " {\n    least_conn;\n    zone " << upstream << " 64k;\n";
  for (const auto& i : d.instances) out << "    server " << i.listen.to_string() << kPeer << i.name << "\n";
  out << "  }\n\n"
      << "  # Socket.IO polls and upgrades over several requests: one client, one instance.\n"
      << "  upstream " << upstream << "_sticky {\n    ip_hash;\n    zone " << upstream << "_sticky 64k;\n";
  for (const auto& i : d.instances) out << "    server " << i.listen.to_string() << kPeer << i.name << "\n";
  out << "  }\n\n"
      << "  server {\n"
      << "    listen " << d.listen.to_string() << ";\n\n"
      << "    proxy_http_version 1.1;\n"
      << "    proxy_set_header Upgrade $http_upgrade;\n"
      << "    proxy_set_header Connection $connection_upgrade;\n"
      << "    proxy_set_header Host $host;\n"
      << "    proxy_set_header X-Real-IP $remote_addr;\n"
      << "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
      << "    proxy_set_header X-Forwarded-Proto $scheme;\n"
      << "    # Chat connections stay open for hours; the instances ping idle clients.\n"
      << "    proxy_read_timeout 1h;\n"
      << "    proxy_send_timeout 1h;\n"
      << "    proxy_buffering off;\n\n"
      << "    location /socket.io/ {\n      proxy_pass http://" << upstream << "_sticky;\n    }\n\n"
      << "    location / {\n      proxy_pass http://" << upstream << ";\n    }\n"
      << "  }\n"
      << "}\n";
  return out.str();
}

}  // namespace nudge::runtime
