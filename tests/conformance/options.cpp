#include "options.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>

#include <CLI/CLI.hpp>

#include "engine/interpolate.hpp"
#include "nudge/sdk/url.hpp"

namespace nudge::conformance {

namespace {

constexpr const char* kFooter = R"(GoogleTest flags (--gtest_filter=..., --gtest_list_tests, --gtest_repeat=N,
--gtest_output=xml:FILE) work as usual.

Config keys the suites fill in when not set: a sink's `table` (a fresh table per run),
a sink's required `path` (a temporary file, removed afterwards), a log's `topic` and
`group_id` (fresh per test case).

Exit status: 0 all cases passed or were skipped, 1 a case failed, 2 a usage or
loading error, 77 the server given to --require-server did not answer.

Examples:
  nudge-conformance --kind sink --plugin mysink --plugin-dir ./build --set path=/tmp/x.db
  nudge-conformance --kind fanout --plugin redis --set url=redis://127.0.0.1:6379 \
      --outage-begin 'scripts/services/redis stop' --outage-end 'scripts/services/redis start')";

/// The options as written; checked and converted by parse_options.
struct Written {
  std::string kind;
  std::vector<std::string> sets;
  std::vector<std::string> plugin_dirs;
  std::string max_payload;
  std::string require_server;
};

/// The grammar of the command line, writing into `o` and `w`; --help is generated from it.
std::unique_ptr<CLI::App> make_app(Options& o, Written& w) {
  auto app = std::make_unique<CLI::App>(
      "nudge-conformance — runs the conformance suite of a plugin kind against one plugin\n\n"
      "  nudge-conformance --kind fanout|sink|log --plugin NAME [OPTIONS] [gtest flags]",
      "nudge-conformance");
  app->footer(kFooter);
  app->set_help_flag("-h,--help", "this text");
  app->allow_extras();  // explained by parse_options
  app->add_option("--kind", w.kind, "the suite to run: fanout, sink or log; the plugin must be of this kind")
      ->option_text("KIND");
  app->add_option("--plugin", o.plugin, "the plugin under test, found as nudge-KIND-NAME.so")->option_text("NAME");
  app->add_option("--set", w.sets,
                  "a key of the plugin's config (repeatable), typed by its schema:\n"
                  "integer, number, true/false, string, or a comma-separated list;\n"
                  "${VAR} and ${VAR:-default} are taken from the environment")
      ->option_text("KEY=VALUE")
      ->allow_extra_args(false);
  app->add_option("--plugin-dir", w.plugin_dirs,
                  "look for the plugin in DIR first (repeatable); then in\n"
                  "$NUDGE_PLUGIN_PATH (colon-separated), then in the plugin folder\n"
                  "next to this executable (the build's or the install's)")
      ->option_text("DIR")
      ->allow_extra_args(false);
  app->add_option("--outage-begin", o.outage_begin, "shell command that takes the plugin's server down")
      ->option_text("CMD");
  app->add_option("--outage-end", o.outage_end,
                  "shell command that brings it back (both or neither); without\n"
                  "them the outage and restart cases are skipped")
      ->option_text("CMD");
  app->add_option("--max-payload", w.max_payload, "largest payload the fanout and sink cases send (default 65536)")
      ->option_text("BYTES");
  app->add_flag("--single-instance", o.single_instance,
                "fanout only: messages do not cross instances (an in-process\n"
                "fanout such as memory); each instance then expects its own only");
  app->add_option("--require-server", w.require_server,
                  "host:port or URL of the plugin's server; when nothing accepts a\n"
                  "connection there, every case is skipped and the exit status is 77")
      ->option_text("ADDR");
  app->add_option("--readiness-within-ms", o.readiness_within_ms,
                  "how soon, without traffic, a sink must report that it lost its\n"
                  "server and that it has it back (default 5000)")
      ->option_text("MS")
      ->check(CLI::Range(std::int64_t{100}, std::int64_t{600000}));
  return app;
}

bool expand(const std::string& text, std::string& out, std::string& error) {
  std::string why;
  if (!runtime::interpolate(text, runtime::environment_variable, out, why)) {
    error = "'" + text + "': " + why;
    return false;
  }
  return true;
}

}  // namespace

std::string usage() {
  Options o;
  Written w;
  return make_app(o, w)->help();
}

std::optional<Options> parse_options(const std::vector<std::string>& args, std::string& error) {
  Options o;
  Written w;
  const auto app = make_app(o, w);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  try {
    app->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    o.help = true;
    return o;
  } catch (const CLI::ArgumentMismatch& e) {
    // "--kind: 1 required TEXT missing": a flag at the end without its value.
    const std::string what = e.what();
    error = what.substr(0, what.find(':')) + " needs a value";
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    error = e.what();
    return std::nullopt;
  }
  for (const auto& extra : app->remaining()) {
    error =
        extra.starts_with("--gtest") ? "unknown GoogleTest flag '" + extra + "'" : "unknown argument '" + extra + "'";
    return std::nullopt;
  }
  if (app->count("--kind")) {
    const auto kind = parse_plugin_kind(w.kind);
    if (!kind || *kind == PluginKind::source) {
      error = "--kind must be fanout, sink or log, not '" + w.kind + "'" +
              (kind ? " (there is no conformance suite for sources yet)" : "");
      return std::nullopt;
    }
    o.kind = *kind;
  }
  if (app->count("--plugin") && o.plugin.empty()) {
    error = "--plugin needs a plugin name";
    return std::nullopt;
  }
  for (const auto& v : w.sets) {
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
  }
  o.plugin_dirs.assign(w.plugin_dirs.begin(), w.plugin_dirs.end());
  if (app->count("--max-payload")) {
    const std::string& v = w.max_payload;
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n > 64 * 1024 * 1024) {
      error = "--max-payload must be a number of bytes from 0 to 67108864, got '" + v + "'";
      return std::nullopt;
    }
    o.max_payload = n;
  }
  if (app->count("--require-server") && !expand(w.require_server, o.require_server, error)) {
    error = "--require-server " + error;
    return std::nullopt;
  }
  if (!app->count("--kind")) {
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
  const std::string_view first = text.substr(0, text.find(','));
  std::uint16_t parsed_port = 0;
  bool found = false;
  if (first.find("://") != std::string_view::npos) {
    static const ServerUrlForm any_scheme{{}, true, 0, true, true, true};
    UrlError why;
    if (const auto url = parse_server_url(first, any_scheme, why); url && url->has_port) {
      host = url->host;
      parsed_port = url->port;
      found = true;
    }
  } else {
    found = parse_host_port(first, host, parsed_port) && !host.empty();
  }
  if (!found) {
    error = "expected host:port or a URL with a host and a port, got '" + std::string(text) + "'";
    return false;
  }
  port = parsed_port;
  return true;
}

}  // namespace nudge::conformance
