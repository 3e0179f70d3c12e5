#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/admin_client.hpp"
#include "cli/top/prometheus_text.hpp"

namespace nudge::runtime {

/// `nudge top [ADMIN_URL] [--interval MS] [--once]`: a live terminal view of a
/// running instance, read from its admin endpoint's /metrics every `interval`
/// (`url` empty: http://127.0.0.1:9100). `once`: one frame, with rates, and exit.
int run_top(const std::string& url, std::chrono::milliseconds interval, bool once);

/// The parts of `nudge top`, apart so they can be tested without a terminal.
namespace top {

/// One fetch of /metrics.
struct Snapshot {
  std::vector<PromSample> samples;
  std::chrono::steady_clock::time_point taken{};  // for rates
  double wall_seconds = 0;                        // Unix time of the fetch, for the uptime
};

struct StageRow {
  std::string stage;  // `sink.sqlite`
  std::string kind;   // `sink`
  double in_total = 0;
  double out_total = 0;
  double queue = 0;
  /// Per second over the last interval; empty on the first frame.
  std::optional<double> in_rate, out_rate, error_rate, retry_rate;
};

/// p50 and p99 of a latency histogram over the last interval, in seconds;
/// empty when nothing was observed in it.
struct Quantiles {
  std::optional<double> p50, p99;
};

/// What one frame shows.
struct View {
  std::string pipeline, instance;
  std::optional<double> uptime_seconds;
  bool readiness_known = false;
  std::vector<std::string> not_ready;  // stages whose nudge_stage_ready is 0
  std::vector<StageRow> stages;        // source, transforms, fanout, log, sink
  std::optional<double> connections, rooms, consumer_lag;
  std::vector<std::pair<std::string, double>> partition_lags;  // ("p0", 12), by partition number
  Quantiles ingest_to_ack, ingest_to_persisted;
  bool has_rates = false;
};

/// The view of `now`; rates and latencies come from the difference to
/// `previous` (nullptr, or another instance's snapshot: no rates).
View build_view(const Snapshot& now, const Snapshot* previous);

/// The rate of a counter that went from `before` to `after` in `seconds`; a
/// counter that went down was reset (the process restarted): it counts from 0.
std::optional<double> counter_rate(double before, double after, double seconds);

/// The q-quantile (0..1) of a distribution given as cumulative buckets
/// (upper bound `le`, count at or below it; +Inf included), estimated the way
/// Prometheus' histogram_quantile() does: linearly within the bucket holding
/// the rank. Empty when the count is 0. A rank in the +Inf bucket gives the
/// highest finite bound.
std::optional<double> histogram_quantile(double q, std::vector<std::pair<double, double>> buckets);

/// 0, 0.5, 12, 999, 12.3k, 4.56M, 7.1G: short, for a table cell.
std::string human_number(double value);
/// 850us, 3.2ms, 120ms, 1.5s.
std::string human_seconds(double seconds);
/// 42s, 5m07s, 3h12m, 2d04h.
std::string human_duration(double seconds);

struct FrameInfo {
  std::string url;  // the admin endpoint, as shown
  std::chrono::milliseconds interval{1000};
  std::string error;         // the last fetch's failure, or empty
  std::size_t width = 120;   // terminal columns; long lines are cut
  bool interactive = false;  // on a terminal: say which keys quit
};

/// One frame of text, lines ending in '\n' (no terminal control sequences).
/// `view` may be null when nothing was fetched yet.
std::string render(const View* view, const FrameInfo& info);

/// "cannot reach http://...: connection refused — retrying"
std::string unreachable_line(std::string_view url, std::string_view error);

/// GETs /metrics within `timeout`; the body of a 200 answer, or an error in
/// words ("connection refused", "timed out after 2 s", "HTTP 404 Not Found").
struct FetchResult {
  std::string body;
  std::string error;
};
FetchResult fetch(const AdminUrl& url, std::chrono::milliseconds timeout, const std::function<bool()>& cancelled = {});

}  // namespace top

}  // namespace nudge::runtime
