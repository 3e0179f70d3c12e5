#include "options.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "engine/interpolate.hpp"

namespace nudge::conformance {

std::string usage() {
  return R"(nudge-conformance — runs the conformance suite of a plugin kind against one plugin

Usage:
  nudge-conformance --kind fanout|sink|log --plugin NAME [options] [gtest flags]

Options:
  --kind KIND            the suite to run: fanout, sink or log; the plugin must be of this kind
  --plugin NAME          the plugin under test, found as nudge-KIND-NAME.so
  --set key=value        a key of the plugin's config (repeatable), typed by its schema:
                         integer, number, true/false, string, or a comma-separated list;
                         ${VAR} and ${VAR:-default} are taken from the environment
  --plugin-dir DIR       look for the plugin in DIR first (repeatable); then in
                         $NUDGE_PLUGIN_PATH (colon-separated), then in the plugin folder
                         next to this executable (the build's or the install's)
  --outage-begin CMD     shell command that takes the plugin's server down
  --outage-end CMD       shell command that brings it back (both or neither); without
                         them the outage and restart cases are skipped
  --max-payload BYTES    largest payload the fanout and sink cases send (default 65536)
  --single-instance      fanout only: messages do not cross instances (an in-process
                         fanout such as memory); each instance then expects its own only
  --require-server ADDR  host:port or URL of the plugin's server; when nothing accepts a
                         connection there, every case is skipped and the exit status is 77
  --help                 this text

GoogleTest flags (--gtest_filter=..., --gtest_list_tests, --gtest_repeat=N,
--gtest_output=xml:FILE) work as usual.

Config keys the suites fill in when not set: a sink's `table` (a fresh table per run),
a sink's required `path` (a temporary file, removed afterwards), a log's `topic` and
`group_id` (fresh per test case).

Exit status: 0 all cases passed or were skipped, 1 a case failed, 2 a usage or
loading error, 77 the server given to --require-server did not answer.

Examples:
  nudge-conformance --kind sink --plugin mysink --plugin-dir ./build --set path=/tmp/x.db
  nudge-conformance --kind fanout --plugin redis --set url=redis://127.0.0.1:6379 \
      --outage-begin 'scripts/services/redis stop' --outage-end 'scripts/services/redis start'
)";
}

namespace {

bool expand(const std::string& text, std::string& out, std::string& error) {
  std::string why;
  if (!runtime::interpolate(text, runtime::environment_variable, out, why)) {
    error = "'" + text + "': " + why;
    return false;
  }
  return true;
}

}  // namespace

std::optional<Options> parse_options(const std::vector<std::string>& args, std::string& error) {
  Options o;
  bool have_kind = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::optional<std::string> inline_value;
    if (arg.starts_with("--")) {
      if (const auto eq = arg.find('='); eq != std::string::npos && arg != "--set") {
        // --kind=sink, and --set=key=value
        inline_value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
    }
    auto value = [&](std::string& out) {
      if (inline_value) {
        out = *inline_value;
        return true;
      }
      if (i + 1 >= args.size()) {
        error = arg + " needs a value";
        return false;
      }
      out = args[++i];
      return true;
    };
    std::string v;
    if (arg == "--help" || arg == "-h") {
      o.help = true;
    } else if (arg == "--kind") {
      if (!value(v)) return std::nullopt;
      const auto kind = parse_plugin_kind(v);
      if (!kind || *kind == PluginKind::source) {
        error = "--kind must be fanout, sink or log, not '" + v + "'" +
                (kind ? " (there is no conformance suite for sources yet)" : "");
        return std::nullopt;
      }
      o.kind = *kind;
      have_kind = true;
    } else if (arg == "--plugin") {
      if (!value(o.plugin)) return std::nullopt;
      if (o.plugin.empty()) {
        error = "--plugin needs a plugin name";
        return std::nullopt;
      }
    } else if (arg == "--set") {
      if (!value(v)) return std::nullopt;
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) {
        error = "--set expects key=value, got '" + v + "'";
        return std::nullopt;
      }
      std::string text;
      if (!expand(v.substr(eq + 1), text, error)) {
        error = "--set " + v.substr(0, eq) + ": " + error;
        return std::nullopt;
      }
      o.sets.emplace_back(v.substr(0, eq), std::move(text));
    } else if (arg == "--plugin-dir") {
      if (!value(v)) return std::nullopt;
      o.plugin_dirs.emplace_back(v);
    } else if (arg == "--outage-begin") {
      if (!value(o.outage_begin)) return std::nullopt;
    } else if (arg == "--outage-end") {
      if (!value(o.outage_end)) return std::nullopt;
    } else if (arg == "--max-payload") {
      if (!value(v)) return std::nullopt;
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size() || n > 64 * 1024 * 1024) {
        error = "--max-payload must be a number of bytes from 0 to 67108864, got '" + v + "'";
        return std::nullopt;
      }
      o.max_payload = n;
    } else if (arg == "--single-instance") {
      o.single_instance = true;
    } else if (arg == "--require-server") {
      if (!value(v)) return std::nullopt;
      if (!expand(v, o.require_server, error)) {
        error = "--require-server " + error;
        return std::nullopt;
      }
    } else if (arg.starts_with("--gtest")) {
      error = "unknown GoogleTest flag '" + arg + "'";
      return std::nullopt;
    } else {
      error = "unknown argument '" + arg + "'";
      return std::nullopt;
    }
  }
  if (o.help) return o;
  if (!have_kind) {
    error = "--kind is required (fanout, sink or log)";
    return std::nullopt;
  }
  if (o.plugin.empty()) {
    error = "--plugin is required (the name in nudge-" + std::string(to_string(o.kind)) + "-NAME.so)";
    return std::nullopt;
  }
  if (o.outage_begin.empty() != o.outage_end.empty()) {
    error = "--outage-begin and --outage-end go together: give both or neither";
    return std::nullopt;
  }
  if (o.single_instance && o.kind != PluginKind::fanout) {
    error = "--single-instance applies to the fanout suite only";
    return std::nullopt;
  }
  return o;
}

bool parse_value(const ConfigField& field, std::string_view text, ConfigValue& out, std::string& error) {
  switch (field.type) {
    case ConfigType::boolean:
      if (text == "true" || text == "false") {
        out = text == "true";
        return true;
      }
      error = "expected true or false";
      return false;
    case ConfigType::integer: {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) {
        out = v;
        return true;
      }
      error = "expected an integer";
      return false;
    }
    case ConfigType::number: {
      const std::string copy(text);
      char* end = nullptr;
      const double v = std::strtod(copy.c_str(), &end);
      if (!copy.empty() && end == copy.c_str() + copy.size() && std::isfinite(v)) {
        out = v;
        return true;
      }
      error = "expected a number";
      return false;
    }
    case ConfigType::string:
      out = std::string(text);
      return true;
    case ConfigType::string_list: {
      std::vector<std::string> items;
      std::size_t start = 0;
      while (!text.empty() && start <= text.size()) {
        const auto comma = text.find(',', start);
        const auto length = comma == std::string_view::npos ? std::string_view::npos : comma - start;
        items.emplace_back(text.substr(start, length));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
      out = std::move(items);
      return true;
    }
  }
  error = "unsupported type";
  return false;
}

bool parse_server_address(std::string_view text, std::string& host, std::uint16_t& port, std::string& error) {
  std::string_view rest = text;
  if (const auto scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  }
  rest = rest.substr(0, rest.find(','));
  if (!parse_host_port(rest, host, port) || host.empty()) {
    error = "expected host:port or a URL with a host and a port, got '" + std::string(text) + "'";
    return false;
  }
  return true;
}

}  // namespace nudge::conformance
