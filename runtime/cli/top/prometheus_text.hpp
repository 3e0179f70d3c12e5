#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nudge::runtime {

/// One sample line of the Prometheus text exposition format (version 0.0.4):
/// `name{label="value",...} value [timestamp]`. A histogram is read as its
/// separate `_bucket{le=...}`, `_sum` and `_count` samples.
struct PromSample {
  std::string name;
  /// In the order written, values unescaped.
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;

  /// The value of label `key`, or nullptr when the sample has none.
  const std::string* label(std::string_view key) const;
};

struct PromText {
  std::vector<PromSample> samples;
  /// One entry per line that could not be read ("line 12: ..."); such lines
  /// are skipped, the rest is still read.
  std::vector<std::string> errors;
};

/// Reads an exposition: `# HELP`/`# TYPE` and other comments and blank lines
/// are skipped; timestamps are ignored. Never throws.
PromText parse_prometheus_text(std::string_view text);

/// A sample value: a decimal or exponent number, `+Inf`, `-Inf` or `NaN`.
std::optional<double> parse_prometheus_value(std::string_view text);

}  // namespace nudge::runtime
