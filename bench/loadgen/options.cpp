#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <vector>

#include <CLI/CLI.hpp>

namespace nudge::bench {
namespace {

double to_number(std::string_view text) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size() || text.empty() || !std::isfinite(v)) {
    throw std::invalid_argument("not a number: '" + std::string(text) + "'");
  }
  return v;
}

template <typename T>
T to_integer(std::string_view text, T lo, T hi) {
  T v{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size() || text.empty()) {
    throw std::invalid_argument("not an integer: '" + std::string(text) + "'");
  }
  if (v < lo || v > hi) {
    throw std::invalid_argument("must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                std::string(text));
  }
  return v;
}

double to_positive(std::string_view text) {
  const double v = to_number(text);
  if (v <= 0) throw std::invalid_argument("must be positive, got " + std::string(text));
  return v;
}

}  // namespace

Duration parse_duration(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    double ns;
  };
  static constexpr Unit kUnits[] = {{"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}};
  double scale = 1e9;
  std::string_view number = text;
  for (const auto& unit : kUnits) {
    if (text.ends_with(unit.suffix)) {
      number = text.substr(0, text.size() - unit.suffix.size());
      scale = unit.ns;
      break;  // kUnits lists "ms" before "s": the first match is the right one
    }
  }
  const double v = to_number(number);
  if (v < 0) throw std::invalid_argument("a duration cannot be negative: '" + std::string(text) + "'");
  return Duration(static_cast<std::int64_t>(std::llround(v * scale)));
}

std::string default_calibration_file() {
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache && *cache) {
    return std::string(cache) + "/nudge-bench/calibration.json";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::string(home) + "/.cache/nudge-bench/calibration.json";
  }
  return "nudge-bench-calibration.json";
}

namespace {

constexpr const char* kDescription = R"(nudge-bench: a WebSocket load generator for Nudge and Socket.IO chat servers

  nudge-bench [options]                      run a load test and print its table
  nudge-bench --calibrate [options]          measure this load generator's own ceiling against an
                                             in-process discard server, and remember it
  nudge-bench --discard-server PORT          serve a trivial, perfect chat (both protocols) on PORT)";

constexpr const char* kFooter =
    "exit status: 0 the run took place (judge its JSON), 1 error, 2 bad command line, 3 no connection opened";

/// An option that takes a value: its group in --help, the name of its value,
/// what it is (default in parentheses), and how its text goes into Options.
struct ValueOption {
  const char* group;
  const char* name;
  const char* value;
  const char* help;
  std::function<void(Options&, std::string_view)> set;
};

/// A flag: what it does to Options.
struct FlagOption {
  const char* group;
  const char* name;
  const char* help;
  std::function<void(Options&)> set;
};

const std::vector<ValueOption>& value_options() {
  static const std::vector<ValueOption> options = {
      {"target", "--url", "URL",
       "ws://HOST:PORT/PATH (repeatable: connections go round-robin over them).\n"
       "Default ws://127.0.0.1:8080/ws (nudge), ws://127.0.0.1:8000/socket.io/ (socketio)",
       [](Options& o, std::string_view v) { o.urls.emplace_back(v); }},
      {"target", "--protocol", "P", "nudge | socketio (nudge)",
       [](Options& o, std::string_view v) {
         if (v == "nudge") {
           o.protocol = Protocol::nudge;
         } else if (v == "socketio") {
           o.protocol = Protocol::socket_io;
         } else {
           throw std::invalid_argument("must be nudge or socketio, got '" + std::string(v) + "'");
         }
       }},
      {"load", "--connections", "N", "WebSocket connections (100)",
       [](Options& o, std::string_view v) { o.connections = to_integer<std::uint32_t>(v, 1, 10'000'000); }},
      {"load", "--rooms", "R", "rooms; connection i is in room i mod R (1)",
       [](Options& o, std::string_view v) { o.rooms = to_integer<std::uint32_t>(v, 1, 10'000'000); }},
      {"load", "--senders", "S", "connections that send (the first S) (1)",
       [](Options& o, std::string_view v) { o.senders = to_integer<std::uint32_t>(v, 0, 10'000'000); }},
      {"load", "--rate", "X", "messages/s offered, all senders together, evenly spaced (100)",
       [](Options& o, std::string_view v) { o.rate = to_positive(v); }},
      {"load", "--payload", "BYTES", "message text size, header included (64)",
       [](Options& o, std::string_view v) { o.payload_bytes = to_integer<std::size_t>(v, 0, 16 << 20); }},
      {"load", "--duration", "T", "measured window (10s)",
       [](Options& o, std::string_view v) { o.duration = parse_duration(v); }},
      {"load", "--warmup", "T", "sending before the window, not measured (2s)",
       [](Options& o, std::string_view v) { o.warmup = parse_duration(v); }},
      {"load", "--drain", "T", "longest wait for late deliveries after the window (5s)",
       [](Options& o, std::string_view v) { o.drain = parse_duration(v); }},
      {"load", "--threads", "N", "event loops (one thread each) (1)",
       [](Options& o, std::string_view v) { o.threads = to_integer<std::uint32_t>(v, 1, 256); }},
      {"connections", "--connect-rate", "X", "connection attempts per second (2000)",
       [](Options& o, std::string_view v) { o.connect_rate = to_positive(v); }},
      {"connections", "--connect-timeout", "T", "per connection, TCP + WebSocket handshake (10s)",
       [](Options& o, std::string_view v) { o.connect_timeout = parse_duration(v); }},
      {"connections", "--source-addresses", "N",
       "bind to 127.0.0.1..127.0.0.N round-robin (past ~28k connections per target) (1)",
       [](Options& o, std::string_view v) { o.source_addresses = to_integer<std::uint32_t>(v, 1, 254); }},
      {"connections", "--max-queue", "N", "frames queued on one connection before a send is skipped (10000)",
       [](Options& o, std::string_view v) { o.max_queue = to_integer<std::size_t>(v, 1, 100'000'000); }},
      {"connections", "--room-prefix", "P", "room names are P0, P1, ... (bench-)",
       [](Options& o, std::string_view v) { o.room_prefix = std::string(v); }},
      {"output", "--json", "FILE", "write the result as JSON",
       [](Options& o, std::string_view v) { o.json_file = std::string(v); }},
      {"output", "--label", "TEXT", "recorded in the JSON",
       [](Options& o, std::string_view v) { o.label = std::string(v); }},
      {"output", "--watch-pid", "PID", "report this process's CPU time and RSS over the window (repeatable)",
       [](Options& o, std::string_view v) { o.watch_pids.push_back(to_integer<int>(v, 1, 1 << 30)); }},
      {"output", "--ceiling", "X", "this generator's ceiling in deliveries/s (default: from the calibration file)",
       [](Options& o, std::string_view v) { o.ceiling = to_positive(v); }},
      {"output", "--calibration-file", "F",
       "where --calibrate writes and runs read the ceiling\n(default $XDG_CACHE_HOME/nudge-bench/calibration.json)",
       [](Options& o, std::string_view v) { o.calibration_file = std::string(v); }},
      {"calibration", "--calibrate-p99", "T", "the p99 the generator must hold at its ceiling (10ms)",
       [](Options& o, std::string_view v) { o.calibrate_p99 = parse_duration(v); }},
      {"calibration", "--discard-server", "PORT", "serve a trivial, perfect chat (both protocols) on PORT",
       [](Options& o, std::string_view v) {
         o.mode = Options::Mode::discard_server;
         o.discard_port = to_integer<std::uint16_t>(v, 0, 65535);
       }},
      {"calibration", "--listen", "ADDRESS", "--discard-server: address to bind (127.0.0.1)",
       [](Options& o, std::string_view v) { o.discard_address = std::string(v); }},
  };
  return options;
}

const std::vector<FlagOption>& flag_options() {
  static const std::vector<FlagOption> flags = {
      {"calibration", "--calibrate", "measure this load generator's own ceiling, and remember it",
       [](Options& o) { o.mode = Options::Mode::calibrate; }},
      {"connections", "--no-hello", "nudge: do not send hello", [](Options& o) { o.hello = false; }},
      {"connections", "--socketio-ack",
       "socketio: ask for an ack callback on every emit (Nudge's Socket.IO mode answers it)",
       [](Options& o) { o.socketio_ack = true; }},
      {"connections", "--no-socketio-join", "socketio: do not emit join (the original server ignores it anyway)",
       [](Options& o) { o.socketio_join = false; }},
      {"help", "-h,--help", "this text", [](Options& o) { o.mode = Options::Mode::help; }},
      {"help", "--version", "the version", [](Options& o) { o.mode = Options::Mode::version; }},
  };
  return flags;
}

/// The grammar: every option collects its texts in `texts` (by name), every
/// flag counts in `counts`; parse_options converts them afterwards, so one
/// run reports every bad value at once. --help is generated from it.
std::unique_ptr<CLI::App> make_app(std::map<std::string, std::vector<std::string>>& texts,
                                   std::map<std::string, bool>& counts) {
  auto app = std::make_unique<CLI::App>(kDescription, "nudge-bench");
  app->set_help_flag();  // --help is a mode (Options::Mode::help), like --version
  app->footer(kFooter);
  app->allow_extras();  // unknown options are reported with the rest
  for (const auto& v : value_options())
    app->add_option(v.name, texts[v.name], v.help)->option_text(v.value)->allow_extra_args(false)->group(v.group);
  for (const auto& f : flag_options()) app->add_flag(f.name, counts[f.name], f.help)->group(f.group);
  return app;
}

}  // namespace

std::string usage() {
  std::map<std::string, std::vector<std::string>> texts;
  std::map<std::string, bool> counts;
  return make_app(texts, counts)->help();
}

Options parse_options(int argc, const char* const* argv) {
  Options o;
  std::vector<std::string> errors;
  std::map<std::string, std::vector<std::string>> texts;
  std::map<std::string, bool> counts;
  auto app = make_app(texts, counts);
  // CLI11 takes the arguments last first. An option without its value stops
  // CLI11's parse: it is reported, dropped, and the rest parsed again.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (;;) {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
      app->parse(reversed);
      break;
    } catch (const CLI::ArgumentMismatch& e) {
      // "--threads: 1 required TEXT missing"
      const std::string what = e.what();
      const std::string flag = what.substr(0, what.find(':'));
      const auto at = std::find(args.rbegin(), args.rend(), flag);
      if (at == args.rend()) throw std::invalid_argument(what);
      errors.push_back(flag + ": needs a value");
      args.erase(std::next(at).base());
    } catch (const CLI::ParseError& e) {
      // "--no-hello=1": a flag given a value.
      throw std::invalid_argument(e.what());
    }
  }
  for (const auto& extra : app->remaining()) errors.push_back("unknown option '" + extra + "' (see --help)");
  for (const auto& v : value_options()) {
    const auto& given = texts[v.name];
    if (given.empty()) continue;
    o.given.emplace(v.name);
    for (const auto& text : given) {
      try {
        v.set(o, text);
      } catch (const std::invalid_argument& e) {
        errors.push_back(std::string(v.name) + ": " + e.what());
      }
    }
  }
  // After the values, so --help and --version win over --discard-server.
  for (const auto& f : flag_options()) {
    if (!counts[f.name]) continue;
    const std::string_view name = f.name;
    o.given.emplace(name.substr(name.rfind(',') + 1));  // "-h,--help" → "--help"
    f.set(o);
  }

  if (o.senders > o.connections) {
    errors.push_back("--senders: " + std::to_string(o.senders) + " is more than --connections " +
                     std::to_string(o.connections));
  }
  if (o.rooms > o.connections) {
    errors.push_back("--rooms: " + std::to_string(o.rooms) + " is more than --connections " +
                     std::to_string(o.connections) + " (a room would be empty)");
  }
  if (o.duration.count() == 0) errors.push_back("--duration: must be positive");
  if (o.calibration_file.empty()) o.calibration_file = default_calibration_file();
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors) all += e + "\n";
    all.pop_back();
    throw std::invalid_argument(all);
  }
  return o;
}

}  // namespace nudge::bench
