#include "engine/pipeline_config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <unistd.h>

#include <toml++/toml.h>

#include "engine/toml_support.hpp"

namespace nudge::runtime {

namespace fs = std::filesystem;

namespace {

// At most one plugin of each of these kinds; sources and transforms may be several.
constexpr std::array<PluginKind, 3> kKinds = {PluginKind::fanout, PluginKind::log, PluginKind::sink};

/// Where a node sits, for diagnostics.
struct Place {
  const std::string& file;
  int line;
  int column;
};

Place place_of(const std::string& file, const toml::source_region& region) {
  return {file, static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
}

void report(Diagnostics& d, const Place& p, std::string key_path, std::string message) {
  // Nodes made by --set have no source; name the flag instead of a line.
  d.add({p.line > 0 ? p.file : std::string("--set"), p.line, p.column, std::move(key_path), std::move(message)});
}

/// Replaces `${VAR}` in every string of the tree, in place.
void interpolate_tree(toml::node& node, const std::string& file, const std::string& key_path,
                      const VariableLookup& lookup, Diagnostics& diags, std::set<std::string>& failed) {
  if (auto* table = node.as_table()) {
    for (auto&& [key, child] : *table)
      interpolate_tree(child, file, key_path.empty() ? std::string(key.str()) : key_path + "." + std::string(key.str()),
                       lookup, diags, failed);
  } else if (auto* array = node.as_array()) {
    for (auto& child : *array) interpolate_tree(child, file, key_path, lookup, diags, failed);
  } else if (auto* str = node.as_string()) {
    std::string out;
    std::string error;
    if (interpolate(str->get(), lookup, out, error)) {
      str->get() = std::move(out);
    } else {
      report(diags, place_of(file, node.source()), key_path, error);
      failed.insert(key_path);
    }
  }
}

bool apply_override(toml::table& root, const std::string& text, Diagnostics& diags) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    diags.add({"--set", 0, 0, text, "expected table.key=value"});
    return false;
  }
  const std::string path = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream stream(path);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  if (parts.size() < 2 || std::any_of(parts.begin(), parts.end(), [](auto& p) { return p.empty(); })) {
    diags.add({"--set", 0, 0, path, "expected a dotted key such as source.websocket.listen"});
    return false;
  }
  toml::table* table = &root;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    auto* next = table->get(parts[i]);
    if (!next) next = &table->insert_or_assign(parts[i], toml::table{}).first->second;
    table = next->as_table();
    if (!table) {
      diags.add({"--set", 0, 0, path, "'" + parts[i] + "' is not a table"});
      return false;
    }
  }
  // A value that parses as TOML (10, true, ["a"]) keeps its type; anything
  // else is taken as a plain string, so `--set x.y=127.0.0.1:0` needs no quotes.
  try {
    auto parsed = toml::parse("v = " + value);
    if (auto* node = parsed.get("v")) {
      if (node->is_string()) table->insert_or_assign(parts.back(), node->as_string()->get());
      else if (node->is_integer()) table->insert_or_assign(parts.back(), node->as_integer()->get());
      else if (node->is_floating_point()) table->insert_or_assign(parts.back(), node->as_floating_point()->get());
      else if (node->is_boolean()) table->insert_or_assign(parts.back(), node->as_boolean()->get());
      else if (auto* arr = node->as_array()) {
        toml::array fresh;
        for (auto& e : *arr)
          if (e.is_string()) fresh.push_back(e.as_string()->get());
        table->insert_or_assign(parts.back(), std::move(fresh));
      } else table->insert_or_assign(parts.back(), value);
      return true;
    }
  } catch (const toml::parse_error&) {
  }
  table->insert_or_assign(parts.back(), value);
  return true;
}

std::optional<ConfigValue> convert(const toml::node& node, const ConfigField& field, std::string& expected) {
  const auto want = [&] { return "expected " + std::string(to_string(field.type)) + ", got " + type_name(node); };
  // Numbers and booleans may come from `${VAR}` strings: accept their text.
  const std::string* text = node.is_string() ? &node.as_string()->get() : nullptr;
  switch (field.type) {
    case ConfigType::boolean:
      if (auto* b = node.as_boolean()) return b->get();
      if (text && (*text == "true" || *text == "false")) return *text == "true";
      break;
    case ConfigType::integer:
      if (auto* i = node.as_integer()) return i->get();
      if (text) {
        std::int64_t v = 0;
        auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
        if (ec == std::errc() && end == text->data() + text->size()) return v;
      }
      break;
    case ConfigType::number:
      if (auto* f = node.as_floating_point()) return f->get();
      if (auto* i = node.as_integer()) return static_cast<double>(i->get());
      if (text) {
        try {
          std::size_t used = 0;
          const double v = std::stod(*text, &used);
          if (used == text->size()) return v;
        } catch (...) {
        }
      }
      break;
    case ConfigType::string:
      if (text) return *text;
      break;
    case ConfigType::string_list:
      if (auto* arr = node.as_array()) {
        std::vector<std::string> out;
        for (auto& e : *arr) {
          if (!e.is_string()) {
            expected = "expected an array of strings, found " + type_name(e) + " in it";
            return std::nullopt;
          }
          out.push_back(e.as_string()->get());
        }
        return out;
      }
      break;
  }
  expected = want();
  if (text) expected += " \"" + *text + "\"";
  return std::nullopt;
}

/// Validates `table` against `schema`: unknown keys, types, ranges, required
/// keys. Every problem is reported.
/// Keys listed in `already_reported` had an error before binding (an unset
/// variable); they are not checked again, so each problem is reported once.
Config bind_table(const toml::table& table, const ConfigSchema& schema, const std::string& key_path,
                  const std::string& file, Diagnostics& diags, const std::set<std::string>& already_reported) {
  std::map<std::string, ConfigValue, std::less<>> values;
  std::vector<std::string> set;
  std::vector<std::string> known;
  for (const auto& f : schema.fields()) known.push_back(f.key);

  for (auto&& [key, node] : table) {
    const std::string name(key.str());
    const ConfigField* field = schema.find(name);
    if (already_reported.contains(key_path + "." + name)) continue;
    if (!field) {
      report(diags, place_of(file, key.source()), key_path, unknown_key_message(name, known));
      continue;
    }
    std::string expected;
    auto value = convert(node, *field, expected);
    if (!value) {
      report(diags, place_of(file, node.source()), key_path + "." + name, expected);
      continue;
    }
    if (auto problem = field->validate(*value); !problem.empty()) {
      report(diags, place_of(file, node.source()), key_path + "." + name, problem);
      continue;
    }
    values.emplace(name, std::move(*value));
    set.push_back(name);
  }
  for (const auto& field : schema.fields()) {
    if (values.contains(field.key)) continue;
    if (field.default_value) {
      values.emplace(field.key, *field.default_value);
    } else if (std::find(set.begin(), set.end(), field.key) == set.end()) {
      // Only report a missing key when it is absent, not when it was present but invalid.
      if (!table.contains(field.key))
        report(diags, place_of(file, table.source()), key_path + "." + field.key,
               "missing required key (" + std::string(to_string(field.type)) + ": " + field.description + ")");
    }
  }
  return Config(std::move(values), std::move(set));
}

std::optional<AdminSettings> bind_admin(const toml::table& table, const std::string& file, Diagnostics& diags,
                                        const std::set<std::string>& already_reported) {
  const Config admin = bind_table(table, admin_schema(), "admin", file, diags, already_reported);
  if (admin.values().size() != admin_schema().fields().size()) return std::nullopt;
  AdminSettings settings;
  settings.listen = admin.get_string("listen");
  settings.token = admin.get_string("token");
  settings.token_file = admin.get_string("token_file");
  settings.allowed_hosts = admin.get_strings("allowed_hosts");
  settings.max_connections = static_cast<std::size_t>(admin.get_int("max_connections"));
  settings.max_taps = static_cast<std::size_t>(admin.get_int("max_taps"));
  settings.tap_queue_bytes = static_cast<std::size_t>(admin.get_int("tap_queue_bytes"));
  settings.tap_events_per_second = static_cast<std::size_t>(admin.get_int("tap_events_per_second"));
  settings.config = admin;
  if (!settings.token.empty() && !settings.token_file.empty()) {
    report(diags, place_of(file, table.source()), "admin", "token and token_file are both set: use one");
    return std::nullopt;
  }
  // A tap holds its connection for as long as it watches: taps alone must
  // never fill the endpoint, or probes and scrapes would find no room. The
  // default gives way to a small max_connections; a max_taps asked for does not.
  if (!admin.is_set("max_taps")) settings.max_taps = std::min(settings.max_taps, settings.max_connections - 1);
  if (settings.max_taps >= settings.max_connections) {
    report(diags, place_of(file, table.source()), "admin.max_taps",
           "must be less than max_connections (" + std::to_string(settings.max_connections) + "), got " +
               std::to_string(settings.max_taps) + ": each tap holds an admin connection open");
    return std::nullopt;
  }
  return settings;
}

std::string default_instance_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "nudge");
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x", rd() & 0xffffff);
  return std::string(host) + "-" + suffix;
}

}  // namespace

const ConfigSchema& pipeline_schema() {
  static const ConfigSchema schema = [] {
    ConfigSchema s;
    s.string("name", "", "Name of the pipeline, used in logs and metrics (default: the file's name)");
    s.string("instance_id", "",
             "Id of this runtime instance, stamped on every message it takes in (default: host name "
             "plus a random suffix, new each run)");
    s.integer("shutdown_grace_ms", 10000,
              "On SIGINT/SIGTERM, how long to wait for in-flight messages to become durable before "
              "giving up")
        .range(0, 600000)
        .reloadable();
    s.integer("max_in_flight", 10000,
              "Messages taken in but not yet durable, across all clients; at the limit the source "
              "stops reading from clients (backpressure)")
        .range(1, 10'000'000)
        .reloadable();
    s.integer("max_in_flight_bytes", 64 * 1024 * 1024,
              "Bytes of messages taken in but not yet durable, across all clients (a message counts its room, "
              "sender, origin, payload and headers, plus 512 bytes and 112 per header); at the limit the source "
              "stops reading from clients, as at max_in_flight. A larger message still goes through, alone. A log "
              "keeps an encoded copy of each message besides: the memory held is up to about twice this")
        .range(64 * 1024, std::int64_t{1} << 40)
        .reloadable();
    s.string("deliver", "durable",
             "When a message is fanned out to clients: \"durable\" once it is in the log (or the "
             "sink), so nobody sees a message that could still be lost; \"immediate\" as soon as it "
             "is taken in, for the lowest latency")
        .one_of({"durable", "immediate"});
    s.boolean("ephemeral", true,
              "Whether clients may send ephemeral messages (typing indicators, read receipts): fanned out to "
              "the room, acknowledged once handed to the fanout, never logged, stored or kept in history. Off, "
              "such a send is refused with code rejected");
    s.boolean("presence", true,
              "Whether the pipeline keeps presence (who is in a room) when its fanout can: sources report "
              "their clients' joins and leaves to the fanout, which lists them to clients. Off, nothing is "
              "reported or kept per connection, and a presence request is answered that the pipeline keeps none");
    s.string("log_format", "text",
             "How log lines are written to stderr: \"text\" for people, \"logfmt\" or \"json\" for log "
             "collectors (every line carries pipeline, instance, stage and plugin); --log-format overrides it")
        .one_of({"text", "logfmt", "json"})
        .reloadable();
    s.integer("progress_interval_ms", 5000,
              "While a backlog drains (from when the consumer lag reaches backlog_threshold until it falls "
              "below half of it), how often a progress line with rows/s, the remaining lag and an ETA is logged")
        .range(100, 3'600'000)
        .reloadable();
    s.integer("backlog_threshold", 1000,
              "Consumer lag (messages) from which the sink's catching up is reported as a backlog draining; "
              "it is over once the lag falls below half of this")
        .range(1, 1'000'000'000)
        .reloadable();
    return s;
  }();
  return schema;
}

const ConfigSchema& sink_runtime_schema() {
  static const ConfigSchema schema = [] {
    ConfigSchema s;
    s.integer("batch_max_messages", 500, "Most messages written to the sink in one batch (runtime)")
        .range(1, 100000)
        .reloadable();
    s.integer("batch_linger_ms", 5,
              "With no log, how long the runtime waits to fill a batch before writing it (runtime)")
        .range(0, 60000)
        .reloadable();
    s.integer("retry_initial_ms", 100, "First delay before retrying a failed batch write; doubles each time (runtime)")
        .range(1, 600000)
        .reloadable();
    s.integer("retry_max_ms", 5000, "Longest delay between retries of a failed batch write (runtime)")
        .range(1, 3600000)
        .reloadable();
    return s;
  }();
  return schema;
}

namespace {

constexpr std::size_t kMinAdminTokenBytes = 16;

/// Why `token` cannot be an admin token, or "" when it can. It travels in
/// an `Authorization: Bearer` header, hence visible ASCII only.
std::string admin_token_problem(std::string_view token) {
  if (token.size() < kMinAdminTokenBytes)
    return "must be at least " + std::to_string(kMinAdminTokenBytes) + " bytes, got " + std::to_string(token.size()) +
           " (make one with `openssl rand -hex 32`)";
  for (const char c : token)
    if (c < 0x21 || c > 0x7e)
      return "must be visible ASCII characters, without spaces (make one with `openssl rand -hex 32`)";
  return {};
}

}  // namespace

const ConfigSchema& admin_schema() {
  static const ConfigSchema schema = [] {
    ConfigSchema s;
    s.string("listen", "127.0.0.1:9100",
             "Address of the admin HTTP endpoint (/healthz, /readyz, /metrics, POST /reload); loopback by "
             "default: the read-only endpoints answer anyone who can connect")
        .with_check([](const ConfigValue& v) {
          std::string host;
          std::uint16_t port = 0;
          return parse_host_port(std::get<std::string>(v), host, port) ? std::string() : "must be host:port";
        });
    s.string("token", "",
             "Bearer token that POST /reload requires (`Authorization: Bearer TOKEN`), at least 16 visible ASCII "
             "characters; with neither token nor token_file, POST /reload is refused (SIGHUP still reloads)")
        .with_example(R"("${NUDGE_ADMIN_TOKEN}")")
        .with_check([](const ConfigValue& v) {
          const auto& token = std::get<std::string>(v);
          return token.empty() ? std::string() : admin_token_problem(token);
        });
    s.string("token_file", "",
             "File holding the admin token instead of token (read at start; one trailing newline is ignored)")
        .with_example("\"/etc/nudge/admin.token\"");
    s.string_list("allowed_hosts", {},
                  "Host names requests may address (the Host header) besides IP addresses, localhost and the listen "
                  "host; others get 403, which stops DNS rebinding. Add the name Prometheus scrapes by")
        .with_example("[\"nudge-1.internal\"]");
    s.integer("max_connections", 16,
              "Admin connections open at once; past it a new connection takes the place of the one idle longest "
              "(see docs/operations.md), and is closed at accept only when every one is in the middle of a request")
        .range(1, 10000);
    s.integer("max_taps", 2,
              "Taps (GET /tap, nudge tap) attached at once, each holding an admin connection; 0 turns taps off. "
              "Must be less than max_connections (unset, it is at most max_connections - 1)")
        .range(0, 64);
    s.integer("tap_queue_bytes", 1024 * 1024,
              "Bytes of events waiting for one tap's client; past it events are missed (counted, and the tapper "
              "told), never waited for")
        .range(4096, 64 * 1024 * 1024);
    s.integer("tap_events_per_second", 1000,
              "Events one tap is sent per second at most (a burst of as many); past it events are missed")
        .range(1, 1000000);
    return s;
  }();
  return schema;
}

Status read_admin_token(const AdminSettings& admin, std::string& token) {
  token = admin.token;
  if (admin.token_file.empty()) return Status::success();
  std::ifstream in(admin.token_file, std::ios::binary);
  if (!in)
    return Status::error(StatusCode::invalid_argument,
                         "admin.token_file: cannot read '" + admin.token_file + "': " + std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  token = bytes.str();
  if (token.ends_with("\r\n")) token.resize(token.size() - 2);
  else if (token.ends_with("\n")) token.pop_back();
  if (const auto problem = admin_token_problem(token); !problem.empty()) {
    token.clear();
    return Status::error(StatusCode::invalid_argument,
                         "admin.token_file: the token in '" + admin.token_file + "' " + problem);
  }
  return Status::success();
}

ConfigSchema effective_schema(const LoadedPlugin& plugin) {
  ConfigSchema schema = plugin.descriptor->schema();
  if (plugin.kind() == PluginKind::sink)
    for (const auto& field : sink_runtime_schema().fields())
      if (!schema.find(field.key)) schema.add(field);
  return schema;
}

std::optional<PipelineSpec> load_pipeline_text(std::string_view text, const std::string& display_name,
                                               const fs::path& base_dir, const PluginRegistry& registry,
                                               const LoadOptions& options, Diagnostics& diags) {
  auto parsed = parse_toml(text, display_name, diags);
  if (!parsed) return std::nullopt;
  toml::table& root = *parsed;
  for (const auto& o : options.overrides) apply_override(root, o, diags);

  // ${PIPELINE_DIR} lets a pipeline name files beside it (the chat page) however it is started.
  const std::string pipeline_dir = fs::absolute(base_dir).lexically_normal().string();
  const VariableLookup lookup = [&](std::string_view name) -> std::optional<std::string> {
    if (auto v = options.lookup(name)) return v;
    if (name == "PIPELINE_DIR") return pipeline_dir;
    return std::nullopt;
  };
  std::set<std::string> failed_interpolation;
  interpolate_tree(root, display_name, "", lookup, diags, failed_interpolation);

  PipelineSpec spec;
  spec.file = display_name;
  const std::vector<std::string> top_level = {"pipeline", "admin", "source", "transform", "fanout", "log", "sink"};
  for (auto&& [key, node] : root) {
    const std::string name(key.str());
    if (std::find(top_level.begin(), top_level.end(), name) == top_level.end()) {
      std::string message = "unknown table '" + name + "'";
      if (auto guess = closest_match(name, top_level); !guess.empty()) message += " (did you mean '" + guess + "'?)";
      else message += "; expected one of: pipeline, admin, source, transform, fanout, log, sink";
      report(diags, place_of(display_name, key.source()), name, message);
    } else if (!node.is_table()) {
      report(diags, place_of(display_name, node.source()), name, "expected a table, got " + type_name(node));
    }
  }

  const toml::table empty;
  const toml::table* pipeline_table = root["pipeline"].as_table();
  const Config pipeline = bind_table(pipeline_table ? *pipeline_table : empty, pipeline_schema(), "pipeline",
                                     display_name, diags, failed_interpolation);
  if (pipeline.values().size() == pipeline_schema().fields().size()) {
    spec.settings.name = pipeline.get_string("name");
    if (spec.settings.name.empty()) spec.settings.name = fs::path(display_name).stem().string();
    spec.settings.instance_id = pipeline.get_string("instance_id");
    if (spec.settings.instance_id.empty()) spec.settings.instance_id = default_instance_id();
    spec.settings.shutdown_grace_ms = pipeline.get_int("shutdown_grace_ms");
    spec.settings.max_in_flight = pipeline.get_int("max_in_flight");
    spec.settings.max_in_flight_bytes = pipeline.get_int("max_in_flight_bytes");
    spec.settings.deliver = pipeline.get_string("deliver");
    spec.settings.ephemeral = pipeline.get_bool("ephemeral");
    spec.settings.presence = pipeline.get_bool("presence");
    spec.settings.log_format = pipeline.get_string("log_format");
    spec.settings.progress_interval_ms = pipeline.get_int("progress_interval_ms");
    spec.settings.backlog_threshold = pipeline.get_int("backlog_threshold");
  }
  spec.pipeline_config = pipeline;
  if (const toml::table* admin_table = root["admin"].as_table())
    spec.admin = bind_admin(*admin_table, display_name, diags, failed_interpolation);

  for (const PluginKind kind : kKinds) {
    const std::string kind_name(to_string(kind));
    const toml::table* kind_table = root[kind_name].as_table();
    if (!kind_table || kind_table->empty()) continue;
    if (kind_table->size() > 1) {
      report(diags, place_of(display_name, kind_table->source()), kind_name,
             "a pipeline has at most one " + kind_name + "; found " + std::to_string(kind_table->size()));
    }
    const auto first = kind_table->cbegin();
    const toml::key& plugin_key = first->first;
    const toml::node& plugin_node = first->second;
    const std::string plugin_name(plugin_key.str());
    const std::string key_path = kind_name + "." + plugin_name;
    const toml::table* plugin_table = plugin_node.as_table();
    if (!plugin_table) {
      report(diags, place_of(display_name, plugin_node.source()), key_path,
             "expected a table [" + key_path + "], got " + type_name(plugin_node));
      continue;
    }
    std::string error;
    auto library = registry.load(kind, plugin_name, error);
    if (!library) {
      report(diags, place_of(display_name, plugin_key.source()), key_path, error);
      continue;
    }
    StageSpec stage{
        kind, plugin_name, key_path, library,
        bind_table(*plugin_table, effective_schema(*library), key_path, display_name, diags, failed_interpolation)};
    switch (kind) {
      case PluginKind::fanout:
        spec.fanout = std::move(stage);
        break;
      case PluginKind::log:
        spec.log = std::move(stage);
        break;
      case PluginKind::sink:
        spec.sink = std::move(stage);
        break;
      case PluginKind::source:
      case PluginKind::transform:
        break;  // not in kKinds: read below, in file order
    }
  }

  // Sources and transforms: any number, in the order the file lists them
  // (toml++ keeps a table's keys sorted, so the order comes from their
  // lines). Transforms run in that order; sources all feed the same stages.
  // A plugin appears once per kind: TOML has one [source.<name>] table per name.
  for (const PluginKind kind : {PluginKind::source, PluginKind::transform}) {
    const std::string kind_name(to_string(kind));
    const toml::table* tables = root[kind_name].as_table();
    if (!tables) continue;
    std::vector<std::pair<const toml::key*, const toml::node*>> listed;
    for (auto&& [key, node] : *tables) listed.emplace_back(&key, &node);
    std::stable_sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) {
      const auto& pa = a.first->source().begin;
      const auto& pb = b.first->source().begin;
      return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
    });
    for (const auto& [key, node] : listed) {
      const std::string plugin_name(key->str());
      const std::string key_path = kind_name + "." + plugin_name;
      const toml::table* plugin_table = node->as_table();
      if (!plugin_table) {
        report(diags, place_of(display_name, node->source()), key_path,
               "expected a table [" + key_path + "], got " + type_name(*node));
        continue;
      }
      std::string error;
      auto library = registry.load(kind, plugin_name, error);
      if (!library) {
        report(diags, place_of(display_name, key->source()), key_path, error);
        continue;
      }
      StageSpec stage{
          kind, plugin_name, key_path, library,
          bind_table(*plugin_table, effective_schema(*library), key_path, display_name, diags, failed_interpolation)};
      (kind == PluginKind::source ? spec.sources : spec.transforms).push_back(std::move(stage));
    }
  }

  if (spec.sink && spec.sink->config.values().size() >= sink_runtime_schema().fields().size()) {
    const Config& c = spec.sink->config;
    if (c.values().contains("batch_max_messages")) {
      spec.sink_settings.batch_max_messages = c.get_int("batch_max_messages");
      spec.sink_settings.batch_linger_ms = c.get_int("batch_linger_ms");
      spec.sink_settings.retry_initial_ms = c.get_int("retry_initial_ms");
      spec.sink_settings.retry_max_ms = c.get_int("retry_max_ms");
    }
  }

  const Place file_place{display_name, 1, 1};
  if (diags.empty()) {
    if (spec.sources.empty() && !(spec.log && spec.sink))
      report(diags, file_place, "",
             "a pipeline needs a [source.*] table, or a [log.*] and a [sink.*] table to persist from the log");
    if (spec.fanout && spec.sources.empty())
      report(diags, file_place, "fanout." + spec.fanout->plugin,
             "a fanout delivers to a source's clients; add a [source.*] table");
    if (!spec.transforms.empty() && spec.sources.empty())
      report(diags, file_place, spec.transforms.front().key_path,
             "a transform works on what a source takes in; add a [source.*] table");
  }
  if (!diags.empty()) return std::nullopt;
  return spec;
}

namespace {

std::optional<std::string> read_pipeline_file(const fs::path& file, Diagnostics& diags) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    diags.add({file.string(), 0, 0, "", "cannot open pipeline file: " + std::string(std::strerror(errno))});
    return std::nullopt;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

std::optional<AdminSettings> load_admin_settings(const fs::path& file, const LoadOptions& options, Diagnostics& diags) {
  const auto text = read_pipeline_file(file, diags);
  if (!text) return std::nullopt;
  const std::string display_name = file.string();
  auto parsed = parse_toml(*text, display_name, diags);
  if (!parsed) return std::nullopt;
  for (const auto& o : options.overrides)
    if (o.starts_with("admin.")) apply_override(*parsed, o, diags);
  toml::table* admin_table = (*parsed)["admin"].as_table();
  if (!admin_table || !diags.empty()) return std::nullopt;
  // Only this table's variables: the rest may name secrets this shell lacks.
  const std::string pipeline_dir =
      fs::absolute(file.parent_path().empty() ? "." : file.parent_path()).lexically_normal().string();
  const VariableLookup lookup = [&](std::string_view name) -> std::optional<std::string> {
    if (auto v = options.lookup(name)) return v;
    if (name == "PIPELINE_DIR") return pipeline_dir;
    return std::nullopt;
  };
  std::set<std::string> failed_interpolation;
  interpolate_tree(*admin_table, display_name, "admin", lookup, diags, failed_interpolation);
  auto admin = bind_admin(*admin_table, display_name, diags, failed_interpolation);
  if (!diags.empty()) return std::nullopt;
  return admin;
}

std::optional<PipelineSpec> load_pipeline(const fs::path& file, const PluginRegistry& registry,
                                          const LoadOptions& options, Diagnostics& diags) {
  const auto text = read_pipeline_file(file, diags);
  if (!text) return std::nullopt;
  return load_pipeline_text(*text, file.string(), file.parent_path().empty() ? "." : file.parent_path(), registry,
                            options, diags);
}

}  // namespace nudge::runtime
