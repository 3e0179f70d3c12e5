#include "report.hpp"

#include <cstdio>

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

namespace nudge::bench {
namespace {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string pad_left(const std::string& s, std::size_t width) {
  // Counts UTF-8 code points, so "µs" lines up.
  std::size_t shown = 0;
  for (unsigned char c : s) shown += (c & 0xC0) != 0x80;
  return shown >= width ? s : std::string(width - shown, ' ') + s;
}

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void key(Writer& w, const char* k) { w.Key(k); }

void histogram_json(Writer& w, const LatencyHistogram& h) {
  w.StartObject();
  key(w, "count");
  w.Uint64(h.count());
  key(w, "min");
  w.Int64(h.min());
  key(w, "mean");
  w.Double(h.mean());
  const std::pair<const char*, double> percentiles[] = {
      {"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"p99.99", 99.99}};
  for (const auto& [name, p] : percentiles) {
    key(w, name);
    w.Int64(h.value_at_percentile(p));
  }
  key(w, "max");
  w.Int64(h.max());
  key(w, "buckets");  // [highest value of the bucket (ns), count], non-empty buckets only
  w.SetFormatOptions(rapidjson::kFormatSingleLineArray);
  w.StartArray();
  h.for_each_bucket([&w](std::int64_t v, std::uint64_t c) {
    w.StartArray();
    w.Int64(v);
    w.Uint64(c);
    w.EndArray();
  });
  w.EndArray();
  w.SetFormatOptions(rapidjson::kFormatDefault);
  w.EndObject();
}

void counts_json(Writer& w, const std::map<std::string, std::uint64_t>& m) {
  w.StartObject();
  for (const auto& [k, v] : m) {
    w.Key(k.c_str());
    w.Uint64(v);
  }
  w.EndObject();
}

void latency_row(std::ostream& out, const char* name, const LatencyHistogram& h, double seconds) {
  out << pad_left(name, 10) << pad_left(std::to_string(h.count()), 11)
      << pad_left(fixed(seconds > 0 ? h.count() / seconds : 0, 1), 12);
  for (double p : {50.0, 90.0, 99.0, 99.9}) out << pad_left(format_ns(h.value_at_percentile(p)), 11);
  out << pad_left(format_ns(h.max()), 11) << "\n";
}

std::string reasons(const std::map<std::string, std::uint64_t>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : "; ") + std::to_string(v) + "× " + k;
  return s;
}

}  // namespace

std::string format_ns(std::int64_t ns) {
  if (ns < 1'000) return std::to_string(ns) + " ns";
  if (ns < 1'000'000) return fixed(ns / 1e3, ns < 10'000 ? 2 : ns < 100'000 ? 1 : 0) + " µs";
  if (ns < 1'000'000'000) return fixed(ns / 1e6, ns < 10'000'000 ? 2 : ns < 100'000'000 ? 1 : 0) + " ms";
  return fixed(ns / 1e9, 2) + " s";
}

std::vector<std::string> flags(const RunResult& r) {
  std::vector<std::string> f;
  if (r.near_ceiling) {
    f.push_back("near_ceiling: " + fixed(r.frames_per_second(), 0) + " frames read/s is over " +
                fixed(100 * kCeilingShare, 0) + "% of this generator's calibrated ceiling (" + fixed(r.ceiling, 0) +
                "/s): the generator may be what was measured");
  }
  if (!r.senders_kept_up()) {
    f.push_back("senders_behind: the senders wrote " + std::to_string(r.sent_window) +
                " messages of those offered in the window (under 99%): the server pushed back or the generator "
                "was short of CPU");
  }
  if (r.skipped_window > 0) {
    f.push_back("skipped: " + std::to_string(r.skipped_window) + " sends skipped for a full queue (--max-queue)");
  }
  if (r.connect_failures > 0) f.push_back("connect_failures: " + reasons(r.connect_failure_reasons));
  if (r.disconnects > 0) f.push_back("disconnects: " + reasons(r.disconnect_reasons));
  if (r.lost > 0) f.push_back("loss: " + std::to_string(r.lost) + " deliveries never arrived");
  if (r.duplicates > 0) f.push_back("duplicates: " + std::to_string(r.duplicates));
  if (r.misrouted > 0) f.push_back("misrouted: " + std::to_string(r.misrouted) + " deliveries from another room");
  if (r.too_late > 0) {
    f.push_back("too_late: " + std::to_string(r.too_late) +
                " arrivals more than 256 behind their sender's newest (duplicates cannot be told apart)");
  }
  return f;
}

void print_table(std::ostream& out, const RunResult& r) {
  const auto& o = r.options;
  out << "nudge-bench " << kVersion << ": " << to_string(o.protocol) << " protocol, " << r.connections_open << "/"
      << o.connections << " connections open over " << o.urls.size() << (o.urls.size() == 1 ? " target" : " targets")
      << ", " << o.rooms << (o.rooms == 1 ? " room" : " rooms") << ", " << o.senders
      << (o.senders == 1 ? " sender" : " senders") << "\n";
  out << "offered " << fixed(o.rate, o.rate < 10 ? 2 : 0) << " msg/s";
  if (o.senders > 0) out << " (" << fixed(o.rate / o.senders, 2) << "/s per sender)";
  out << ", payload " << o.payload_bytes << " B, window " << fixed(r.window_seconds, 1) << " s after "
      << fixed(o.warmup.count() / 1e9, 1) << " s warmup, " << o.threads << (o.threads == 1 ? " thread" : " threads")
      << "; connected in " << fixed(r.connect_seconds, 2) << " s\n\n";
  out << pad_left("", 10) << pad_left("count", 11) << pad_left("per s", 12) << pad_left("p50", 11)
      << pad_left("p90", 11) << pad_left("p99", 11) << pad_left("p99.9", 11) << pad_left("max", 11) << "\n";
  latency_row(out, "delivery", r.delivery, r.window_seconds);
  if (r.acks_expected) latency_row(out, "ack", r.ack, r.window_seconds);
  latency_row(out, "send lag", r.send_lag, r.window_seconds);
  out << "\n";
  out << "sent " << r.sent_window << " (" << fixed(r.sends_per_second(), 1) << "/s)   expected deliveries "
      << r.expected_window << "   across instances " << fixed(100 * r.cross_instance_share(), 1) << "%"
      << "   lost " << r.lost << "   duplicates " << r.duplicates << "   reordered " << r.reordered << "\n";
  if (r.acks_expected) {
    out << "acks " << r.acks_window << "   errors " << r.errors_window << "   unanswered " << r.unanswered;
  } else {
    out << "errors " << r.errors_window;
  }
  out << "   skipped (queue full) " << r.skipped_window << "\n";
  out << "connect failures " << r.connect_failures << "   disconnects " << r.disconnects << "   foreign " << r.foreign
      << "   misrouted " << r.misrouted << "   malformed " << r.malformed << "\n";
  if (!r.error_codes.empty()) out << "error codes: " << reasons(r.error_codes) << "\n";
  out << "frames read " << r.frames_window << " (" << fixed(r.frames_per_second(), 1) << "/s)\n";
  out << "load generator CPU " << fixed(r.loadgen_cpu_seconds, 2) << " s in the window ("
      << fixed(r.window_seconds > 0 ? 100 * r.loadgen_cpu_seconds / r.window_seconds : 0, 0) << "% of a core), RSS "
      << fixed(r.loadgen_rss_bytes / 1048576.0, 1) << " MiB";
  if (r.ceiling > 0) {
    out << "; ceiling " << fixed(r.ceiling, 0) << " frames read/s, this run at " << fixed(100 * r.ceiling_share(), 1)
        << "%";
  } else {
    out << "; ceiling unknown (run nudge-bench --calibrate)";
  }
  out << "\n";
  for (const auto& p : r.watched) {
    out << "process " << p.pid << " (" << p.name << ", " << p.processes_at_end
        << (p.processes_at_end == 1 ? " process" : " processes") << "): CPU " << fixed(p.cpu_seconds, 2)
        << " s in the window";
    if (r.sent_window > 0) {
      out << ", " << fixed(p.cpu_seconds * 1e6 / static_cast<double>(r.sent_window), 1) << " ms per 1000 messages";
    }
    if (r.deliveries_window > 0) {
      out << ", " << fixed(p.cpu_seconds * 1e6 / static_cast<double>(r.deliveries_window), 1)
          << " ms per 1000 deliveries";
    }
    out << "; RSS " << fixed(p.rss_bytes / 1048576.0, 1) << " MiB";
    if (!p.note.empty()) out << " (" << p.note << ")";
    out << "\n";
  }
  for (const auto& f : flags(r)) out << "WARNING " << f << "\n";
}

std::string to_json(const RunResult& r) {
  const auto& o = r.options;
  rapidjson::StringBuffer b;
  Writer w(b);
  w.SetIndent(' ', 2);
  w.StartObject();
  key(w, "tool");
  w.String("nudge-bench");
  key(w, "version");
  w.String(kVersion.data(), static_cast<rapidjson::SizeType>(kVersion.size()));
  key(w, "label");
  w.String(o.label.c_str());
  key(w, "run_id");
  w.Uint(r.run_id);

  key(w, "config");
  w.StartObject();
  key(w, "protocol");
  const auto protocol = to_string(o.protocol);
  w.String(protocol.data(), static_cast<rapidjson::SizeType>(protocol.size()));
  key(w, "urls");
  w.StartArray();
  for (const auto& u : o.urls) w.String(u.c_str());
  w.EndArray();
  key(w, "connections");
  w.Uint(o.connections);
  key(w, "rooms");
  w.Uint(o.rooms);
  key(w, "senders");
  w.Uint(o.senders);
  key(w, "rate");
  w.Double(o.rate);
  key(w, "payload_bytes");
  w.Uint64(o.payload_bytes);
  key(w, "duration_s");
  w.Double(o.duration.count() / 1e9);
  key(w, "warmup_s");
  w.Double(o.warmup.count() / 1e9);
  key(w, "threads");
  w.Uint(o.threads);
  key(w, "connect_rate");
  w.Double(o.connect_rate);
  key(w, "source_addresses");
  w.Uint(o.source_addresses);
  w.EndObject();

  key(w, "connections");
  w.StartObject();
  key(w, "open");
  w.Uint(r.connections_open);
  key(w, "failed");
  w.Uint64(r.connect_failures);
  key(w, "failure_reasons");
  counts_json(w, r.connect_failure_reasons);
  key(w, "disconnects");
  w.Uint64(r.disconnects);
  key(w, "disconnect_reasons");
  counts_json(w, r.disconnect_reasons);
  key(w, "connect_seconds");
  w.Double(r.connect_seconds);
  w.EndObject();

  key(w, "window_seconds");
  w.Double(r.window_seconds);
  const std::pair<const char*, std::uint64_t> counts[] = {{"sent", r.sent_window},
                                                          {"skipped", r.skipped_window},
                                                          {"expected", r.expected_window},
                                                          {"deliveries", r.deliveries_window},
                                                          {"lost", r.lost},
                                                          {"duplicates", r.duplicates},
                                                          {"cross_instance", r.cross_instance_window},
                                                          {"frames_read", r.frames_window},
                                                          {"reordered", r.reordered},
                                                          {"too_late", r.too_late},
                                                          {"acks", r.acks_window},
                                                          {"errors", r.errors_window},
                                                          {"errors_total", r.errors_total},
                                                          {"unanswered", r.unanswered},
                                                          {"foreign", r.foreign},
                                                          {"misrouted", r.misrouted},
                                                          {"malformed", r.malformed}};
  for (const auto& [k, v] : counts) {
    key(w, k);
    w.Uint64(v);
  }
  key(w, "error_codes");
  counts_json(w, r.error_codes);
  key(w, "sent_per_second");
  w.Double(r.sends_per_second());
  key(w, "deliveries_per_second");
  w.Double(r.deliveries_per_second());
  key(w, "acks_per_second");
  w.Double(r.acks_per_second());
  key(w, "frames_read_per_second");
  w.Double(r.frames_per_second());
  key(w, "cross_instance_share");
  w.Double(r.cross_instance_share());
  key(w, "acks_expected");
  w.Bool(r.acks_expected);

  key(w, "latency_ns");
  w.StartObject();
  key(w, "delivery");
  histogram_json(w, r.delivery);
  key(w, "ack");
  histogram_json(w, r.ack);
  key(w, "send_lag");
  histogram_json(w, r.send_lag);
  w.EndObject();

  key(w, "loadgen");
  w.StartObject();
  key(w, "cpu_seconds");
  w.Double(r.loadgen_cpu_seconds);
  key(w, "rss_bytes");
  w.Int64(r.loadgen_rss_bytes);
  key(w, "cpu_share");  // of one core, over the window
  w.Double(r.window_seconds > 0 ? r.loadgen_cpu_seconds / r.window_seconds : 0);
  key(w, "threads");
  w.Uint(o.threads);
  key(w, "frames_read_per_second");
  w.Double(r.frames_per_second());
  key(w, "ceiling_frames_per_second");
  w.Double(r.ceiling);
  key(w, "ceiling_share");
  w.Double(r.ceiling_share());
  key(w, "ceiling_limit_share");
  w.Double(kCeilingShare);
  key(w, "near_ceiling");
  w.Bool(r.near_ceiling);
  w.EndObject();

  key(w, "watched");
  w.StartArray();
  for (const auto& p : r.watched) {
    w.StartObject();
    key(w, "pid");
    w.Int(p.pid);
    key(w, "name");
    w.String(p.name.c_str());
    key(w, "cpu_seconds");
    w.Double(p.cpu_seconds);
    key(w, "system_cpu_seconds");
    w.Double(p.system_cpu_seconds);
    key(w, "cpu_ms_per_1000_messages");
    w.Double(r.sent_window > 0 ? p.cpu_seconds * 1e6 / static_cast<double>(r.sent_window) : 0);
    key(w, "cpu_ms_per_1000_deliveries");
    w.Double(r.deliveries_window > 0 ? p.cpu_seconds * 1e6 / static_cast<double>(r.deliveries_window) : 0);
    key(w, "rss_bytes");
    w.Int64(p.rss_bytes);
    key(w, "processes_at_start");
    w.Uint(p.processes_at_start);
    key(w, "processes_at_end");
    w.Uint(p.processes_at_end);
    key(w, "note");
    w.String(p.note.c_str());
    w.EndObject();
  }
  w.EndArray();

  key(w, "flags");
  w.StartArray();
  for (const auto& f : flags(r)) w.String(f.c_str());
  w.EndArray();
  w.EndObject();
  return std::string(b.GetString(), b.GetSize()) + "\n";
}

}  // namespace nudge::bench
