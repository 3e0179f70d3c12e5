#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace nudge::bench {

using Duration = std::chrono::nanoseconds;

/// Everything nudge-bench is told on its command line (see usage()).
struct Options {
  enum class Mode { run, calibrate, discard_server, help, version };
  Mode mode = Mode::run;

  Protocol protocol = Protocol::nudge;
  std::vector<std::string> urls;  ///< empty: the protocol's default
  std::uint32_t connections = 100;
  std::uint32_t rooms = 1;
  std::uint32_t senders = 1;
  double rate = 100;  ///< messages per second, all senders together
  std::size_t payload_bytes = 64;
  Duration duration = std::chrono::seconds(10);
  Duration warmup = std::chrono::seconds(2);
  Duration drain = std::chrono::seconds(5);  ///< longest wait for the last deliveries after the window
  double connect_rate = 2000;                ///< connection attempts per second
  Duration connect_timeout = std::chrono::seconds(10);
  std::uint32_t source_addresses = 1;  ///< bind to 127.0.0.1 .. 127.0.0.N round-robin
  std::uint32_t threads = 1;
  std::size_t max_queue = 10000;  ///< frames waiting on one connection before sends are skipped
  std::string room_prefix = "bench-";
  bool hello = true;          ///< Nudge: send `hello` with a per-connection name
  bool socketio_ack = false;  ///< Socket.IO: ask for an ack callback on each emit
  bool socketio_join = true;  ///< Socket.IO: emit `join` with the room (Nudge's Socket.IO mode)
  std::optional<std::string> json_file;
  std::string label;
  std::vector<int> watch_pids;  ///< processes whose CPU time and RSS are reported

  /// Deliveries per second the load generator can take (from --ceiling or
  /// the calibration file); 0 when unknown.
  double ceiling = 0;
  std::string calibration_file;  ///< empty: the default path

  // --calibrate
  Duration calibrate_p99 = std::chrono::milliseconds(10);
  // --discard-server PORT
  std::uint16_t discard_port = 0;
  std::string discard_address = "127.0.0.1";

  /// The options given on the command line (e.g. "--rooms"), so that a mode
  /// can pick its own defaults for the others.
  std::set<std::string, std::less<>> given;
  bool was_given(std::string_view option) const { return given.contains(option); }
};

/// Parses argv; throws std::invalid_argument with every problem found, one per line.
Options parse_options(int argc, const char* const* argv);
std::string usage();
/// "10s", "250ms", "2m", "1.5" (seconds), "500us".
Duration parse_duration(std::string_view text);
std::string default_calibration_file();

}  // namespace nudge::bench
