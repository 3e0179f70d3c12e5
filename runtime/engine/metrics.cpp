#include "engine/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace nudge::runtime {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  if (bounds_.size() > kMaxBuckets) throw std::logic_error("a histogram takes at most 24 bucket bounds");
  if (!std::is_sorted(bounds_.begin(), bounds_.end())) throw std::logic_error("histogram bucket bounds must increase");
}

void Histogram::observe(double value) noexcept {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[static_cast<std::size_t>(at)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> batch_size_buckets() { return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}; }

namespace {

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

/// A metric name made of [a-zA-Z0-9_:] (`nudge-transform-rate-limit` → `..._rate_limit`).
std::string sanitize_name(std::string name) {
  for (char& c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) c = '_';
  return name;
}

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

MetricLabels concat(const MetricLabels& a, const MetricLabels& b) {
  MetricLabels out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

std::string render_labels(const MetricLabels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += sanitize_name(labels[i].first) + "=\"" + escape_label_value(labels[i].second) + "\"";
  }
  return out + "}";
}

void MetricsRegistry::set_common_labels(MetricLabels labels) {
  std::lock_guard lock(mutex_);
  common_labels_ = std::move(labels);
}

MetricsRegistry::Series& MetricsRegistry::series(const std::string& name, Type type, std::string_view help,
                                                 const MetricLabels& labels) {
  auto [at, fresh] = families_.try_emplace(sanitize_name(name));
  auto& family = at->second;
  if (fresh) family.type = type;
  if (family.type != type) throw std::logic_error("metric '" + name + "' registered as two types");
  if (family.help.empty() && !help.empty()) family.help = std::string(help);
  auto [it, inserted] = family.series.try_emplace(render_labels(labels));
  if (inserted) it->second.labels = labels;
  return it->second;
}

Counter& MetricsRegistry::counter(const std::string& name, std::string_view help, const MetricLabels& labels) {
  std::lock_guard lock(mutex_);
  auto& s = series(name, Type::counter, help, labels);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& MetricsRegistry::gauge(const std::string& name, std::string_view help, const MetricLabels& labels) {
  std::lock_guard lock(mutex_);
  auto& s = series(name, Type::gauge, help, labels);
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

Histogram& MetricsRegistry::histogram(const std::string& name, std::string_view help, std::vector<double> bounds,
                                      const MetricLabels& labels) {
  std::lock_guard lock(mutex_);
  auto& s = series(name, Type::histogram, help, labels);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *s.histogram;
}

std::string MetricsRegistry::prometheus() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(families_.size() * 256);
  for (const auto& [name, family] : families_) {
    const bool counter = family.type == Type::counter;
    const std::string exposed = counter && !name.ends_with("_total") ? name + "_total" : name;
    out += "# HELP " + exposed + " " + escape_help(family.help.empty() ? name : family.help) + "\n";
    out += "# TYPE " + exposed + " " +
           (counter                      ? "counter"
            : family.type == Type::gauge ? "gauge"
                                         : "histogram") +
           "\n";
    for (const auto& [rendered, s] : family.series) {
      const auto labels = concat(common_labels_, s.labels);
      if (s.counter) {
        out += exposed + render_labels(labels) + " " + std::to_string(s.counter->value()) + "\n";
      } else if (s.gauge) {
        out += exposed + render_labels(labels) + " " + std::to_string(s.gauge->value()) + "\n";
      } else if (s.histogram) {
        const auto& h = *s.histogram;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
          cumulative += h.bucket(i);
          const std::string le = i < h.bounds().size() ? format_number(h.bounds()[i]) : "+Inf";
          out +=
              name + "_bucket" + render_labels(concat(labels, {{"le", le}})) + " " + std::to_string(cumulative) + "\n";
        }
        out += name + "_sum" + render_labels(labels) + " " + format_number(h.sum()) + "\n";
        out += name + "_count" + render_labels(labels) + " " + std::to_string(h.count()) + "\n";
      }
    }
  }
  return out;
}

std::map<std::string, std::int64_t> MetricsRegistry::snapshot() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::int64_t> out;
  for (const auto& [name, family] : families_)
    for (const auto& [rendered, s] : family.series) {
      if (s.counter) out[name + rendered] = static_cast<std::int64_t>(s.counter->value());
      else if (s.gauge) out[name + rendered] = s.gauge->value();
      else if (s.histogram) out[name + "_count" + rendered] = static_cast<std::int64_t>(s.histogram->count());
    }
  return out;
}

StageMetrics::StageMetrics(MetricsRegistry& registry, std::string key_path)
    : registry_(registry), key_path_(std::move(key_path)) {
  std::string prefix = "nudge_" + key_path_;
  std::replace(prefix.begin(), prefix.end(), '.', '_');
  std::replace(prefix.begin(), prefix.end(), '-', '_');
  prefix_ = prefix + "_";
}

MetricLabels StageMetrics::with_stage(const MetricLabels& labels) const {
  MetricLabels out{{"stage", key_path_}};
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

Counter& StageMetrics::counter(std::string_view name, std::string_view help, const MetricLabels& labels) {
  return registry_.counter(prefix_ + std::string(name), help, with_stage(labels));
}

Gauge& StageMetrics::gauge(std::string_view name, std::string_view help, const MetricLabels& labels) {
  return registry_.gauge(prefix_ + std::string(name), help, with_stage(labels));
}

}  // namespace nudge::runtime

namespace nudge::runtime {

namespace {
MetricLabels stage_labels(const std::string& key_path) {
  const auto dot = key_path.find('.');
  return {{"stage", key_path},
          {"kind", key_path.substr(0, dot)},
          {"plugin", dot == std::string::npos ? key_path : key_path.substr(dot + 1)}};
}
}  // namespace

StageStats::StageStats(MetricsRegistry& registry, const std::string& key_path)
    : in(registry.counter("nudge_stage_messages_in", "Messages the stage received", stage_labels(key_path))),
      out(registry.counter("nudge_stage_messages_out", "Messages the stage passed on (delivered, written, forwarded)",
                           stage_labels(key_path))),
      errors(registry.counter("nudge_stage_errors", "Messages or batches the stage failed", stage_labels(key_path))),
      retries(registry.counter("nudge_stage_retries", "Retried batch writes", stage_labels(key_path))),
      dropped(registry.counter("nudge_stage_dropped", "Messages a transform dropped", stage_labels(key_path))),
      queue_depth(
          registry.gauge("nudge_stage_queue_depth", "Messages waiting in or for the stage", stage_labels(key_path))),
      ready(registry.gauge("nudge_stage_ready", "1 when the stage is ready (see /readyz), else 0",
                           stage_labels(key_path))),
      batch_messages(key_path.starts_with("sink.") || key_path.starts_with("log.")
                         ? &registry.histogram("nudge_stage_batch_messages", "Messages per batch written or consumed",
                                               batch_size_buckets(), stage_labels(key_path))
                         : nullptr) {}

}  // namespace nudge::runtime
