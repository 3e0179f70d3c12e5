#include "cli/top/top.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <set>

namespace nudge::runtime {

namespace top {

namespace {

constexpr const char* kDefaultUrl = "http://127.0.0.1:9100";

double sum_of(const Snapshot& s, std::string_view name, const std::string* stage = nullptr) {
  double total = 0;
  for (const auto& sample : s.samples) {
    if (sample.name != name) continue;
    if (stage) {
      const auto* label = sample.label("stage");
      if (!label || *label != *stage) continue;
    }
    total += sample.value;
  }
  return total;
}

bool has(const Snapshot& s, std::string_view name) {
  return std::any_of(s.samples.begin(), s.samples.end(), [&](const PromSample& x) { return x.name == name; });
}

std::optional<double> sum_matching(const Snapshot& s, std::string_view prefix, std::string_view suffix) {
  std::optional<double> total;
  for (const auto& sample : s.samples)
    if (sample.name.size() > prefix.size() + suffix.size() && sample.name.starts_with(prefix) &&
        sample.name.ends_with(suffix))
      total = total.value_or(0) + sample.value;
  return total;
}

int kind_order(std::string_view kind) {
  if (kind == "source") return 0;
  if (kind == "transform") return 1;
  if (kind == "fanout") return 2;
  if (kind == "log") return 3;
  if (kind == "sink") return 4;
  return 5;
}

/// Cumulative bucket counts by `le`, summed over every series of `name`.
std::map<double, double> buckets_of(const Snapshot& s, const std::string& name) {
  std::map<double, double> out;
  const std::string bucket = name + "_bucket";
  for (const auto& sample : s.samples) {
    if (sample.name != bucket) continue;
    const auto* le = sample.label("le");
    if (!le) continue;
    const auto bound = parse_prometheus_value(*le);
    if (!bound || std::isnan(*bound)) continue;
    out[*bound] += sample.value;
  }
  return out;
}

Quantiles interval_quantiles(const Snapshot& now, const Snapshot* previous, const std::string& name) {
  if (!previous) return {};
  const auto after = buckets_of(now, name);
  const auto before = buckets_of(*previous, name);
  if (after.empty()) return {};
  // A bucket that went down means the process restarted: count from zero.
  bool reset = false;
  for (const auto& [le, count] : after)
    if (auto it = before.find(le); it != before.end() && count < it->second) reset = true;
  std::vector<std::pair<double, double>> delta;
  for (const auto& [le, count] : after) {
    const auto it = before.find(le);
    delta.emplace_back(le, reset || it == before.end() ? count : count - it->second);
  }
  return {histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)};
}

std::string cut(std::string line, std::size_t width) {
  // Counted in code points so a '→' or '—' is one column.
  std::size_t columns = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;
    if (columns++ == width) {
      line.resize(i);
      break;
    }
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

std::string pad_left(const std::string& text, std::size_t width) {
  return text.size() >= width ? text : std::string(width - text.size(), ' ') + text;
}

std::string pad_right(const std::string& text, std::size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}

std::string rate_cell(const std::optional<double>& rate) { return rate ? human_number(*rate) : "-"; }

std::string quantiles_text(const Quantiles& q) {
  if (!q.p50 && !q.p99) return "-";
  return "p50 " + (q.p50 ? human_seconds(*q.p50) : "-") + "  p99 " + (q.p99 ? human_seconds(*q.p99) : "-");
}

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

}  // namespace

std::optional<double> counter_rate(double before, double after, double seconds) {
  if (!(seconds > 0)) return std::nullopt;
  const double delta = after >= before ? after - before : after;
  return delta / seconds;
}

std::optional<double> histogram_quantile(double q, std::vector<std::pair<double, double>> buckets) {
  if (buckets.empty()) return std::nullopt;
  std::sort(buckets.begin(), buckets.end());
  if (!std::isinf(buckets.back().first)) return std::nullopt;  // +Inf holds the count
  // Counts read while observations land need not be monotonic; make them so.
  for (std::size_t i = 1; i < buckets.size(); ++i)
    buckets[i].second = std::max(buckets[i].second, buckets[i - 1].second);
  const double total = buckets.back().second;
  if (!(total > 0)) return std::nullopt;
  const double rank = std::clamp(q, 0.0, 1.0) * total;
  std::size_t i = 0;
  while (i + 1 < buckets.size() && buckets[i].second < rank) ++i;
  if (i + 1 == buckets.size()) {  // in the +Inf bucket: the highest finite bound
    if (i == 0) return std::nullopt;
    return buckets[i - 1].first;
  }
  const double upper = buckets[i].first;
  const double lower = i == 0 ? std::min(0.0, upper) : buckets[i - 1].first;
  const double below = i == 0 ? 0 : buckets[i - 1].second;
  const double inside = buckets[i].second - below;
  if (!(inside > 0)) return upper;
  return lower + (upper - lower) * (rank - below) / inside;
}

View build_view(const Snapshot& now, const Snapshot* previous) {
  View view;
  for (const auto& sample : now.samples) {
    if (const auto* p = sample.label("pipeline"); p && view.pipeline.empty()) view.pipeline = *p;
    if (const auto* i = sample.label("instance"); i && view.instance.empty()) view.instance = *i;
    if (!view.pipeline.empty() && !view.instance.empty()) break;
  }
  // Another instance answers at this address (a restart with a new id): its
  // counters have nothing to do with the last ones.
  if (previous) {
    View before;
    for (const auto& sample : previous->samples)
      if (const auto* i = sample.label("instance")) {
        before.instance = *i;
        break;
      }
    if (before.instance != view.instance) previous = nullptr;
  }
  const double seconds = previous ? std::chrono::duration<double>(now.taken - previous->taken).count() : 0.0;
  if (previous && !(seconds > 0)) previous = nullptr;
  view.has_rates = previous != nullptr;

  if (has(now, "nudge_process_start_time_seconds")) {
    double start = 0;
    for (const auto& sample : now.samples)
      if (sample.name == "nudge_process_start_time_seconds") start = std::max(start, sample.value);
    view.uptime_seconds = std::max(0.0, now.wall_seconds - start);
  }

  // Stages, in the order their series appear, then by kind.
  std::vector<std::pair<std::string, std::string>> stages;  // (stage, kind)
  std::set<std::string> seen;
  for (const auto& sample : now.samples) {
    if (!sample.name.starts_with("nudge_stage_")) continue;
    const auto* stage = sample.label("stage");
    if (!stage || !seen.insert(*stage).second) continue;
    const auto* kind = sample.label("kind");
    stages.emplace_back(*stage, kind ? *kind : stage->substr(0, stage->find('.')));
  }
  std::stable_sort(stages.begin(), stages.end(),
                   [](const auto& a, const auto& b) { return kind_order(a.second) < kind_order(b.second); });

  auto rate = [&](std::string_view name, const std::string& stage) -> std::optional<double> {
    if (!previous) return std::nullopt;
    return counter_rate(sum_of(*previous, name, &stage), sum_of(now, name, &stage), seconds);
  };
  for (const auto& [stage, kind] : stages) {
    StageRow row;
    row.stage = stage;
    row.kind = kind;
    row.in_total = sum_of(now, "nudge_stage_messages_in_total", &stage);
    row.out_total = sum_of(now, "nudge_stage_messages_out_total", &stage);
    row.queue = sum_of(now, "nudge_stage_queue_depth", &stage);
    row.in_rate = rate("nudge_stage_messages_in_total", stage);
    row.out_rate = rate("nudge_stage_messages_out_total", stage);
    row.error_rate = rate("nudge_stage_errors_total", stage);
    row.retry_rate = rate("nudge_stage_retries_total", stage);
    view.stages.push_back(std::move(row));
  }

  for (const auto& sample : now.samples) {
    if (sample.name != "nudge_stage_ready") continue;
    view.readiness_known = true;
    if (sample.value == 0) {
      const auto* stage = sample.label("stage");
      view.not_ready.push_back(stage ? *stage : "?");
    }
  }

  view.connections = sum_matching(now, "nudge_source_", "_connections_open");
  view.rooms = sum_matching(now, "nudge_source_", "_rooms");
  if (has(now, "nudge_log_consumer_lag")) view.consumer_lag = sum_of(now, "nudge_log_consumer_lag");

  // Partition lags: `p3`, or `topic/p3` when there is more than one topic.
  std::set<std::string> topics;
  std::vector<std::tuple<std::string, long long, double>> partitions;  // (topic, partition, lag)
  for (const auto& sample : now.samples) {
    if (!sample.name.starts_with("nudge_log_") || !sample.name.ends_with("_partition_lag")) continue;
    const auto* partition = sample.label("partition");
    if (!partition) continue;
    long long number = -1;
    std::from_chars(partition->data(), partition->data() + partition->size(), number);
    const auto* topic = sample.label("topic");
    topics.insert(topic ? *topic : "");
    partitions.emplace_back(topic ? *topic : "", number, sample.value);
  }
  std::sort(partitions.begin(), partitions.end());
  for (const auto& [topic, number, lag] : partitions)
    view.partition_lags.emplace_back((topics.size() > 1 ? topic + "/" : "") + "p" + std::to_string(number), lag);

  view.ingest_to_ack = interval_quantiles(now, previous, "nudge_ingest_to_ack_seconds");
  view.ingest_to_persisted = interval_quantiles(now, previous, "nudge_ingest_to_persisted_seconds");
  return view;
}

std::string human_number(double value) {
  if (std::isnan(value)) return "-";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  const double magnitude = std::fabs(value);
  if (magnitude == std::floor(magnitude) && magnitude < 1000) return format("%.0f", value);
  if (magnitude < 9.95) return format("%.1f", value);
  if (magnitude < 999.5) return format("%.0f", value);
  static constexpr std::pair<double, const char*> kUnits[] = {{1e3, "k"}, {1e6, "M"}, {1e9, "G"}, {1e12, "T"}};
  for (std::size_t i = 0; i < std::size(kUnits); ++i) {
    const auto [unit, suffix] = kUnits[i];
    const double scaled = value / unit;
    const double m = std::fabs(scaled);
    if (i + 1 < std::size(kUnits) && m >= 999.5) continue;
    const char* pattern = m < 9.995 ? "%.2f" : m < 99.95 ? "%.1f" : "%.0f";
    return format(pattern, scaled) + suffix;
  }
  return format("%.3g", value);
}

std::string human_seconds(double seconds) {
  if (std::isnan(seconds)) return "-";
  if (seconds < 0.001) return format("%.0fus", seconds * 1e6);
  if (seconds < 1) return format(seconds < 0.01 ? "%.1fms" : "%.0fms", seconds * 1e3);
  return format(seconds < 10 ? "%.2fs" : "%.1fs", seconds);
}

std::string human_duration(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds));
  char text[32];
  if (s < 60) std::snprintf(text, sizeof text, "%llds", s);
  else if (s < 3600) std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
  else if (s < 86400) std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  else std::snprintf(text, sizeof text, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
  return text;
}

std::string unreachable_line(std::string_view url, std::string_view error) {
  return "cannot reach " + std::string(url) + ": " + std::string(error) + " — retrying";
}

std::string render(const View* view, const FrameInfo& info) {
  std::vector<std::string> lines;
  const double every = static_cast<double>(info.interval.count()) / 1000.0;
  lines.push_back("nudge top — " + info.url + " — every " + format("%gs", every) +
                  (info.interactive ? " — q or Ctrl-C quits" : ""));
  if (!info.error.empty()) lines.push_back(unreachable_line(info.url, info.error));
  if (view) {
    std::string readiness = "-";
    if (view->readiness_known) {
      readiness = "ready";
      if (!view->not_ready.empty()) {
        readiness = "NOT READY:";
        for (const auto& stage : view->not_ready) readiness += " " + stage;
      }
    }
    lines.push_back("pipeline " + (view->pipeline.empty() ? "-" : view->pipeline) + "   instance " +
                    (view->instance.empty() ? "-" : view->instance) + "   uptime " +
                    (view->uptime_seconds ? human_duration(*view->uptime_seconds) : "-") + "   " + readiness);
    lines.emplace_back();

    std::size_t stage_width = 5;
    for (const auto& row : view->stages) stage_width = std::max(stage_width, row.stage.size());
    stage_width += 2;
    auto table_row = [&](const std::string& stage, const std::vector<std::string>& cells) {
      std::string line = pad_right(stage, stage_width);
      static constexpr std::size_t kWidths[] = {8, 8, 8, 9, 8, 9, 9};
      for (std::size_t i = 0; i < cells.size(); ++i) line += pad_left(cells[i], kWidths[i]);
      return line;
    };
    lines.push_back(table_row("STAGE", {"IN/s", "OUT/s", "ERR/s", "RETRY/s", "QUEUE", "IN", "OUT"}));
    for (const auto& row : view->stages)
      lines.push_back(table_row(row.stage, {rate_cell(row.in_rate), rate_cell(row.out_rate), rate_cell(row.error_rate),
                                            rate_cell(row.retry_rate), human_number(row.queue),
                                            human_number(row.in_total), human_number(row.out_total)}));
    if (view->stages.empty()) lines.push_back("(no stage metrics yet)");
    if (!view->has_rates) lines.push_back("(rates from the next frame on)");
    lines.emplace_back();

    std::string counts = "connections " + (view->connections ? human_number(*view->connections) : "-") + "   rooms " +
                         (view->rooms ? human_number(*view->rooms) : "-") + "   consumer lag " +
                         (view->consumer_lag ? human_number(*view->consumer_lag) : "-");
    if (!view->partition_lags.empty()) {
      // As many partitions as fit the line, then how many more there are.
      std::string parts;
      for (std::size_t i = 0; i < view->partition_lags.size(); ++i) {
        const auto& [name, lag] = view->partition_lags[i];
        std::string item = (parts.empty() ? "" : " ") + name + "=" + human_number(lag);
        const std::string more = " +" + std::to_string(view->partition_lags.size() - i) + " more";
        if (counts.size() + 3 + parts.size() + item.size() + more.size() + 1 > info.width &&
            i + 1 < view->partition_lags.size()) {
          parts += more;
          break;
        }
        parts += item;
      }
      counts += " (" + parts + ")";
    }
    lines.push_back(counts);
    lines.push_back("ingest→ack " + quantiles_text(view->ingest_to_ack) + "   ingest→persisted " +
                    quantiles_text(view->ingest_to_persisted));
  }
  std::string out;
  for (auto& line : lines) out += cut(std::move(line), info.width) + "\n";
  return out;
}

FetchResult fetch(const AdminUrl& url, std::chrono::milliseconds timeout, const std::function<bool()>& cancelled) {
  const auto answer = admin_request("GET", url, "/metrics", timeout, cancelled);
  if (!answer.answered()) return {{}, answer.error};
  if (answer.status != 200) return {{}, "HTTP " + std::to_string(answer.status) + " " + answer.reason};
  return {answer.body, {}};
}

namespace {

// ---------------------------------------------------------------- terminal

volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_stop_signal(int) { g_stop = 1; }

/// While alive: SIGINT/SIGTERM end the loop instead of the process, and on a
/// terminal the cursor is hidden and keys are read one by one without echo
/// (for 'q'). The destructor puts everything back, however the loop ended.
class Terminal {
 public:
  explicit Terminal(bool interactive) {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
    if (!interactive) return;
    std::cout << "\x1b[?25l" << std::flush;
    cursor_hidden_ = true;
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      keys_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
  }
  ~Terminal() {
    if (keys_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    if (cursor_hidden_) std::cout << "\x1b[?25h" << std::flush;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  /// Waits until `until`; false when the user asked to quit.
  bool wait(std::chrono::steady_clock::time_point until) {
    for (;;) {
      if (g_stop) return false;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return true;
      pollfd fd{STDIN_FILENO, POLLIN, 0};
      const int timeout = static_cast<int>(std::min<long long>(left.count(), 200));
      const int ready = poll(keys_ ? &fd : nullptr, keys_ ? 1 : 0, timeout);
      if (ready > 0 && (fd.revents & POLLIN)) {
        char key[16];
        const auto n = read(STDIN_FILENO, key, sizeof key);
        for (ssize_t i = 0; i < n; ++i)
          if (key[i] == 'q' || key[i] == 'Q') return false;
      }
    }
  }

  static std::size_t width() {
    winsize size{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
    return 120;
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  termios saved_{};
  bool keys_ = false;
  bool cursor_hidden_ = false;
};

std::optional<Snapshot> snapshot_of(const FetchResult& fetched, std::string& error) {
  if (!fetched.error.empty()) {
    error = fetched.error;
    return std::nullopt;
  }
  Snapshot snapshot;
  snapshot.taken = std::chrono::steady_clock::now();
  snapshot.wall_seconds = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto text = parse_prometheus_text(fetched.body);
  if (text.samples.empty() && !text.errors.empty()) {
    error = "the answer is not Prometheus text (" + text.errors.front() + ")";
    return std::nullopt;
  }
  snapshot.samples = std::move(text.samples);
  return snapshot;
}

}  // namespace

}  // namespace top

int run_top(const std::string& url_text, std::chrono::milliseconds interval, bool once) {
  using namespace top;
  std::string error;
  const auto url = parse_admin_url(url_text.empty() ? kDefaultUrl : url_text, error);
  if (!url) {
    std::cerr << "nudge top: " << error << "\n";
    return 2;
  }

  constexpr std::chrono::milliseconds kTimeout{2000};
  const bool tty = !once && isatty(STDOUT_FILENO);
  g_stop = 0;
  Terminal terminal(tty);
  const auto cancelled = [] { return g_stop != 0; };

  FrameInfo info;
  info.url = url->base;
  info.interval = interval;
  info.width = tty ? Terminal::width() : std::numeric_limits<std::size_t>::max();
  info.interactive = tty;

  if (once) {
    // Two fetches one interval apart, so the frame has rates.
    const auto first = snapshot_of(fetch(*url, kTimeout, cancelled), error);
    if (first && terminal.wait(first->taken + interval)) {
      if (const auto second = snapshot_of(fetch(*url, kTimeout, cancelled), error)) {
        const auto view = build_view(*second, &*first);
        std::cout << render(&view, info) << std::flush;
        return 0;
      }
    }
    if (g_stop) return 130;
    std::cerr << "nudge top: cannot reach " << url->base << ": " << error << "\n";
    return 1;
  }

  std::optional<Snapshot> previous;
  bool first_frame = true;
  for (;;) {
    const auto started = std::chrono::steady_clock::now();
    auto snapshot = snapshot_of(fetch(*url, kTimeout, cancelled), error);
    if (g_stop) break;
    std::optional<View> view;
    if (snapshot) {
      view = build_view(*snapshot, previous ? &*previous : nullptr);
      previous = std::move(snapshot);
      info.error.clear();
    } else {
      info.error = error;
    }
    if (tty) info.width = Terminal::width();
    const auto frame = render(view ? &*view : nullptr, info);
    if (tty) std::cout << "\x1b[H\x1b[2J" << frame;
    else std::cout << (first_frame ? "" : "\n") << frame;
    std::cout << std::flush;
    first_frame = false;
    if (!terminal.wait(started + interval)) break;
  }
  return 0;
}

}  // namespace nudge::runtime
