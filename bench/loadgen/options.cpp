#include "options.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <stdexcept>

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

std::string usage() {
  return R"(nudge-bench: a WebSocket load generator for Nudge and Socket.IO chat servers

usage:
  nudge-bench [options]                      run a load test and print its table
  nudge-bench --calibrate [options]          measure this load generator's own ceiling against an
                                             in-process discard server, and remember it
  nudge-bench --discard-server PORT          serve a trivial, perfect chat (both protocols) on PORT

target
  --url URL               ws://HOST:PORT/PATH (repeatable: connections go round-robin over them).
                          Default ws://127.0.0.1:8080/ws (nudge), ws://127.0.0.1:8000/socket.io/ (socketio)
  --protocol P            nudge | socketio                                  (nudge)
load
  --connections N         WebSocket connections                             (100)
  --rooms R               rooms; connection i is in room i mod R            (1)
  --senders S             connections that send (the first S)               (1)
  --rate X                messages/s offered, all senders together, evenly spaced (100)
  --payload BYTES         message text size, header included                (64)
  --duration T            measured window                                   (10s)
  --warmup T              sending before the window, not measured           (2s)
  --drain T               longest wait for late deliveries after the window (5s)
  --threads N             event loops (one thread each)                     (1)
connections
  --connect-rate X        connection attempts per second                   (2000)
  --connect-timeout T     per connection, TCP + WebSocket handshake         (10s)
  --source-addresses N    bind to 127.0.0.1..127.0.0.N round-robin (past ~28k connections per target) (1)
  --max-queue N           frames queued on one connection before a send is skipped (10000)
  --room-prefix P         room names are P0, P1, ...                        (bench-)
  --no-hello              nudge: do not send hello
  --socketio-ack          socketio: ask for an ack callback on every emit (Nudge's Socket.IO mode answers it)
  --no-socketio-join      socketio: do not emit join (the original server ignores it anyway)
output
  --json FILE             write the result as JSON
  --label TEXT            recorded in the JSON
  --watch-pid PID         report this process's CPU time and RSS over the window (repeatable)
  --ceiling X             this generator's ceiling in deliveries/s (default: from the calibration file)
  --calibration-file F    where --calibrate writes and runs read the ceiling
                          (default $XDG_CACHE_HOME/nudge-bench/calibration.json)
calibration
  --calibrate-p99 T       the p99 the generator must hold at its ceiling    (10ms)
  --listen ADDRESS        --discard-server: address to bind                 (127.0.0.1)
  --help, --version

exit status: 0 the run took place (judge its JSON), 1 error, 2 bad command line, 3 no connection opened
)";
}

Options parse_options(int argc, const char* const* argv) {
  Options o;
  std::vector<std::string> errors;
  using Setter = std::function<void(std::string_view)>;
  // Options that take a value.
  const std::map<std::string, Setter, std::less<>> with_value = {
      {"--url", [&](std::string_view v) { o.urls.emplace_back(v); }},
      {"--protocol",
       [&](std::string_view v) {
         if (v == "nudge") {
           o.protocol = Protocol::kNudge;
         } else if (v == "socketio") {
           o.protocol = Protocol::kSocketIo;
         } else {
           throw std::invalid_argument("must be nudge or socketio, got '" + std::string(v) + "'");
         }
       }},
      {"--connections", [&](std::string_view v) { o.connections = to_integer<std::uint32_t>(v, 1, 10'000'000); }},
      {"--rooms", [&](std::string_view v) { o.rooms = to_integer<std::uint32_t>(v, 1, 10'000'000); }},
      {"--senders", [&](std::string_view v) { o.senders = to_integer<std::uint32_t>(v, 0, 10'000'000); }},
      {"--rate", [&](std::string_view v) { o.rate = to_positive(v); }},
      {"--payload", [&](std::string_view v) { o.payload_bytes = to_integer<std::size_t>(v, 0, 16 << 20); }},
      {"--duration", [&](std::string_view v) { o.duration = parse_duration(v); }},
      {"--warmup", [&](std::string_view v) { o.warmup = parse_duration(v); }},
      {"--drain", [&](std::string_view v) { o.drain = parse_duration(v); }},
      {"--threads", [&](std::string_view v) { o.threads = to_integer<std::uint32_t>(v, 1, 256); }},
      {"--connect-rate", [&](std::string_view v) { o.connect_rate = to_positive(v); }},
      {"--connect-timeout", [&](std::string_view v) { o.connect_timeout = parse_duration(v); }},
      {"--source-addresses", [&](std::string_view v) { o.source_addresses = to_integer<std::uint32_t>(v, 1, 254); }},
      {"--max-queue", [&](std::string_view v) { o.max_queue = to_integer<std::size_t>(v, 1, 100'000'000); }},
      {"--room-prefix", [&](std::string_view v) { o.room_prefix = std::string(v); }},
      {"--json", [&](std::string_view v) { o.json_file = std::string(v); }},
      {"--label", [&](std::string_view v) { o.label = std::string(v); }},
      {"--watch-pid", [&](std::string_view v) { o.watch_pids.push_back(to_integer<int>(v, 1, 1 << 30)); }},
      {"--ceiling", [&](std::string_view v) { o.ceiling = to_positive(v); }},
      {"--calibration-file", [&](std::string_view v) { o.calibration_file = std::string(v); }},
      {"--calibrate-p99", [&](std::string_view v) { o.calibrate_p99 = parse_duration(v); }},
      {"--discard-server",
       [&](std::string_view v) {
         o.mode = Options::Mode::kDiscardServer;
         o.discard_port = to_integer<std::uint16_t>(v, 0, 65535);
       }},
      {"--listen", [&](std::string_view v) { o.discard_address = std::string(v); }},
  };
  const std::map<std::string, std::function<void()>, std::less<>> flags = {
      {"--calibrate", [&] { o.mode = Options::Mode::kCalibrate; }},
      {"--no-hello", [&] { o.hello = false; }},
      {"--socketio-ack", [&] { o.socketio_ack = true; }},
      {"--no-socketio-join", [&] { o.socketio_join = false; }},
      {"--help", [&] { o.mode = Options::Mode::kHelp; }},
      {"-h", [&] { o.mode = Options::Mode::kHelp; }},
      {"--version", [&] { o.mode = Options::Mode::kVersion; }},
  };

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    if (auto f = flags.find(arg); f != flags.end()) {
      if (has_value) {
        errors.push_back(std::string(arg) + ": takes no value");
      } else {
        o.given.emplace(arg);
        f->second();
      }
      continue;
    }
    auto s = with_value.find(arg);
    if (s == with_value.end()) {
      errors.push_back("unknown option '" + std::string(arg) + "' (see --help)");
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        errors.push_back(std::string(arg) + ": needs a value");
        continue;
      }
      value = argv[++i];
    }
    o.given.emplace(arg);
    try {
      s->second(value);
    } catch (const std::invalid_argument& e) {
      errors.push_back(std::string(arg) + ": " + e.what());
    }
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
