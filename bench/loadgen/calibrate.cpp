#include "calibrate.hpp"

#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <boost/asio/executor_work_guard.hpp>

#include "discard_server.hpp"
#include "load_run.hpp"
#include "report.hpp"

namespace nudge::bench {
namespace {

std::string key_for(Protocol protocol, std::uint32_t threads) {
  return std::string(to_string(protocol)) + "/threads=" + std::to_string(threads);
}

rapidjson::Document load(const std::string& file) {
  rapidjson::Document doc;
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  doc.Parse(text.str().c_str());
  if (doc.HasParseError() || !doc.IsObject()) doc.SetObject();
  return doc;
}

void save(const std::string& file, const std::string& key, double ceiling, const Options& o) {
  rapidjson::Document doc = load(file);
  auto& a = doc.GetAllocator();
  rapidjson::Value entry(rapidjson::kObjectType);
  entry.AddMember("frames_per_second", ceiling, a);
  entry.AddMember("p99_limit_ms", o.calibrate_p99.count() / 1e6, a);
  entry.AddMember("connections", o.connections, a);
  entry.AddMember("rooms", o.rooms, a);
  entry.AddMember("senders", o.senders, a);
  entry.AddMember("payload_bytes", static_cast<std::uint64_t>(o.payload_bytes), a);
  entry.AddMember("measured_at", static_cast<std::int64_t>(std::time(nullptr)), a);
  entry.AddMember("cores", std::thread::hardware_concurrency(), a);
  if (doc.HasMember(key.c_str())) doc.RemoveMember(key.c_str());
  doc.AddMember(rapidjson::Value(key.c_str(), a), entry, a);
  rapidjson::StringBuffer b;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(b);
  doc.Accept(w);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  std::ofstream(file) << b.GetString() << "\n";
}

struct Step {
  double rate = 0;
  RunResult result;
  bool held = false;
  std::string why;
};

}  // namespace

std::optional<double> read_ceiling(const std::string& file, Protocol protocol, std::uint32_t threads) {
  const rapidjson::Document doc = load(file);
  auto value_of = [](const rapidjson::Value& entry) -> std::optional<double> {
    if (!entry.IsObject()) return std::nullopt;
    // Older files hold deliveries/s, fewer than the frames read: a lower, safe ceiling.
    for (const char* name : {"frames_per_second", "deliveries_per_second"}) {
      auto it = entry.FindMember(name);
      if (it != entry.MemberEnd() && it->value.IsNumber()) return it->value.GetDouble();
    }
    return std::nullopt;
  };
  if (auto it = doc.FindMember(key_for(protocol, threads).c_str()); it != doc.MemberEnd()) return value_of(it->value);
  const std::string prefix = std::string(to_string(protocol)) + "/";
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    if (std::string_view(it->name.GetString()).starts_with(prefix)) return value_of(it->value);
  }
  return std::nullopt;
}

std::optional<double> search_ceiling(double start_rate, const std::function<StepVerdict(double rate)>& measure) {
  auto holds = [&](double rate) {
    const StepVerdict v = measure(rate);
    return v.held || (v.latency_only && measure(rate).held);
  };
  std::optional<double> best, failed;
  double rate = start_rate;
  for (int i = 0; i < 30 && !failed; ++i) {
    if (holds(rate)) {
      best = rate;
      rate *= 1.5;
    } else {
      failed = rate;
    }
  }
  for (int i = 0; i < 3 && best && failed; ++i) {
    const double middle = (*best + *failed) / 2;
    (holds(middle) ? best : failed) = middle;
  }
  return best;
}

double calibrate(const Options& options, std::ostream& out) {
  namespace asio = boost::asio;
  Options o = options;
  o.mode = Options::Mode::run;
  if (!o.was_given("--connections")) o.connections = 1000;
  if (!o.was_given("--rooms")) o.rooms = std::min<std::uint32_t>(10, o.connections);
  if (!o.was_given("--senders")) o.senders = std::min<std::uint32_t>(100, o.connections);
  if (!o.was_given("--duration")) o.duration = std::chrono::seconds(3);
  if (!o.was_given("--warmup")) o.warmup = std::chrono::seconds(1);
  if (!o.was_given("--drain")) o.drain = std::chrono::seconds(2);
  o.json_file.reset();
  o.watch_pids.clear();
  o.ceiling = 0;  // the steps measure the ceiling; none of them is judged against one

  asio::io_context ioc(1);
  DiscardServer server(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  server.start();
  auto guard = asio::make_work_guard(ioc);
  std::thread server_thread([&ioc] { ioc.run(); });
  const std::string path = o.protocol == Protocol::nudge ? "/ws" : "/socket.io/";
  o.urls = {"ws://127.0.0.1:" + std::to_string(server.port()) + path};

  const double members = static_cast<double>(o.connections) / o.rooms;
  out << "calibrating against the in-process discard server at " << o.urls[0] << ": " << o.connections
      << " connections, " << o.rooms << " rooms, " << o.senders << " senders, " << o.threads
      << (o.threads == 1 ? " thread" : " threads") << ", p99 limit " << format_ns(o.calibrate_p99.count()) << "\n";
  out << "  offered msg/s  frames read/s        p99   send lag p99   cpu   held\n";

  auto run_step = [&](double rate) {
    Step s;
    s.rate = rate;
    o.rate = rate;
    s.result = run_load(o);
    const RunResult& r = s.result;
    const std::int64_t p99 = r.delivery.value_at_percentile(99);
    if (r.connections_open < o.connections) {
      s.why = "connections failed";
    } else if (r.lost > 0 || r.skipped_window > 0) {
      s.why = "lost or skipped";
    } else if (!r.senders_kept_up()) {
      s.why = "senders behind";
    } else if (p99 > o.calibrate_p99.count()) {
      s.why = "p99 over the limit";
    } else {
      s.held = true;
    }
    char line[200];
    std::snprintf(line, sizeof line, "  %13.0f  %13.0f  %9s  %13s  %3.0f%%   %s\n", rate, r.frames_per_second(),
                  format_ns(p99).c_str(), format_ns(r.send_lag.value_at_percentile(99)).c_str(),
                  100 * r.loadgen_cpu_seconds / std::max(r.window_seconds, 1e-9),
                  s.held ? "yes" : ("no: " + s.why).c_str());
    out << line << std::flush;
    return s;
  };

  std::optional<Step> best;
  std::string first_failure;
  const double start = o.was_given("--rate") ? o.rate : std::max(1.0, 10'000 / members);
  const auto ceiling_rate = search_ceiling(start, [&](double rate) {
    Step s = run_step(rate);
    StepVerdict v{s.held, s.why, s.why == "p99 over the limit"};
    if (s.held && (!best || s.rate > best->rate)) best = std::move(s);
    if (!v.held && first_failure.empty()) first_failure = v.why;
    return v;
  });
  if (!ceiling_rate) best.reset();
  server.stop();
  guard.reset();
  ioc.stop();
  server_thread.join();

  // Every frame read counts: the ceiling is what the generator can read, whatever the frames hold.
  const double ceiling = best ? best->result.frames_per_second() : 0;
  if (best) {
    const auto key = key_for(o.protocol, o.threads);
    save(o.calibration_file, key, ceiling, o);
    out << "ceiling: " << std::llround(ceiling) << " frames read/s (" << std::llround(best->rate)
        << " msg/s into rooms of " << members << ") with p99 "
        << format_ns(best->result.delivery.value_at_percentile(99)) << "; runs above "
        << std::llround(100 * kCeilingShare) << "% of it (" << std::llround(kCeilingShare * ceiling)
        << " frames read/s) are flagged\n"
        << "recorded as \"" << key << "\" in " << o.calibration_file << "\n";
  } else {
    out << "ceiling: none — even the first step failed (" << first_failure << ")\n";
  }
  return ceiling;
}

}  // namespace nudge::bench
