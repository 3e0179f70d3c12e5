// nudge-bench: a WebSocket load generator for Nudge (and for Socket.IO
// servers, to compare), its calibration, and a discard server. See usage().
#include <fstream>
#include <iostream>
#include <stdexcept>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "calibrate.hpp"
#include "discard_server.hpp"
#include "load_run.hpp"
#include "options.hpp"
#include "report.hpp"

namespace {

namespace bench = nudge::bench;
namespace asio = boost::asio;

int serve_discard(const bench::Options& o) {
  bench::raise_file_limit();
  asio::io_context ioc(1);
  bench::DiscardServer server(ioc, {asio::ip::make_address(o.discard_address), o.discard_port});
  server.start();
  std::cout << "discard server: ws://" << o.discard_address << ":" << server.port()
            << "/ws (nudge) and /socket.io/ (socketio); Ctrl-C stops it" << std::endl;
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    server.stop();
    ioc.stop();
  });
  ioc.run();
  const auto c = server.counters();
  std::cout << "discard server: served " << c.connections << " connections, " << c.frames_in << " frames in, "
            << c.frames_out << " frames out, dropped " << c.slow_clients_dropped << " slow clients" << std::endl;
  return 0;
}

int run(bench::Options o) {
  if (o.ceiling <= 0) o.ceiling = bench::read_ceiling(o.calibration_file, o.protocol, o.threads).value_or(0);
  bench::RunResult r = bench::run_load(o);
  bench::print_table(std::cout, r);
  if (o.json_file) {
    std::ofstream out(*o.json_file);
    out << bench::to_json(r);
    if (!out) throw std::runtime_error("cannot write '" + *o.json_file + "'");
  }
  return r.connections_open > 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Options o;
  try {
    o = bench::parse_options(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::cerr << "nudge-bench: " << e.what() << "\n";
    return 2;
  }
  try {
    switch (o.mode) {
      case bench::Options::Mode::help:
        std::cout << bench::usage();
        return 0;
      case bench::Options::Mode::version:
        std::cout << "nudge-bench " << bench::kVersion << "\n";
        return 0;
      case bench::Options::Mode::discard_server:
        return serve_discard(o);
      case bench::Options::Mode::calibrate:
        return bench::calibrate(o, std::cout) > 0 ? 0 : 1;
      case bench::Options::Mode::run:
        return run(o);
    }
  } catch (const std::exception& e) {
    std::cerr << "nudge-bench: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
