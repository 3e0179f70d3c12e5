#include "cli/top/prometheus_text.hpp"

#include <charconv>
#include <limits>

namespace nudge::runtime {

const std::string* PromSample::label(std::string_view key) const {
  for (const auto& [name, value] : labels)
    if (name == key) return &value;
  return nullptr;
}

std::optional<double> parse_prometheus_value(std::string_view text) {
  if (text == "+Inf" || text == "Inf" || text == "+inf" || text == "inf")
    return std::numeric_limits<double>::infinity();
  if (text == "-Inf" || text == "-inf") return -std::numeric_limits<double>::infinity();
  if (text == "NaN" || text == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (text.starts_with('+')) text.remove_prefix(1);
  if (text.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

namespace {

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }
bool blank(char c) { return c == ' ' || c == '\t'; }

/// A cursor over one line; each read_* returns false with `error` set.
class LineReader {
 public:
  explicit LineReader(std::string_view line) : line_(line) {}

  void skip_blanks() {
    while (at_ < line_.size() && blank(line_[at_])) ++at_;
  }
  bool done() const { return at_ >= line_.size(); }
  char peek() const { return done() ? '\0' : line_[at_]; }
  void advance() { ++at_; }

  bool read_name(std::string& out, bool allow_colon) {
    const auto start = at_;
    if (done() || !name_start(line_[at_]) || (!allow_colon && line_[at_] == ':')) {
      error = "expected a name at column " + std::to_string(at_ + 1);
      return false;
    }
    while (at_ < line_.size() && name_char(line_[at_]) && (allow_colon || line_[at_] != ':')) ++at_;
    out.assign(line_.substr(start, at_ - start));
    return true;
  }

  bool read_quoted(std::string& out) {
    if (peek() != '"') {
      error = "expected '\"' at column " + std::to_string(at_ + 1);
      return false;
    }
    ++at_;
    out.clear();
    while (at_ < line_.size()) {
      const char c = line_[at_++];
      if (c == '"') return true;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= line_.size()) break;
      const char e = line_[at_++];
      if (e == 'n') out += '\n';
      else if (e == '\\' || e == '"') out += e;
      else {  // not a defined escape: kept as written
        out += '\\';
        out += e;
      }
    }
    error = "unterminated label value";
    return false;
  }

  std::string_view read_token() {
    const auto start = at_;
    while (at_ < line_.size() && !blank(line_[at_])) ++at_;
    return line_.substr(start, at_ - start);
  }

  std::string error;

 private:
  std::string_view line_;
  std::size_t at_ = 0;
};

bool parse_sample(std::string_view line, PromSample& sample, std::string& error) {
  LineReader r(line);
  r.skip_blanks();
  if (!r.read_name(sample.name, true)) {
    error = r.error;
    return false;
  }
  r.skip_blanks();
  if (r.peek() == '{') {
    r.advance();
    for (;;) {
      r.skip_blanks();
      if (r.peek() == '}') {
        r.advance();
        break;
      }
      std::string key, value;
      if (!r.read_name(key, false)) {
        error = r.error;
        return false;
      }
      r.skip_blanks();
      if (r.peek() != '=') {
        error = "expected '=' after label '" + key + "'";
        return false;
      }
      r.advance();
      r.skip_blanks();
      if (!r.read_quoted(value)) {
        error = r.error;
        return false;
      }
      sample.labels.emplace_back(std::move(key), std::move(value));
      r.skip_blanks();
      if (r.peek() == ',') {
        r.advance();
      } else if (r.peek() != '}') {
        error = "expected ',' or '}' after a label value";
        return false;
      }
    }
  }
  r.skip_blanks();
  const auto token = r.read_token();
  const auto value = parse_prometheus_value(token);
  if (!value) {
    error = token.empty() ? "no value" : "bad value '" + std::string(token) + "'";
    return false;
  }
  sample.value = *value;
  return true;  // a timestamp may follow; it is not used
}

}  // namespace

PromText parse_prometheus_text(std::string_view text) {
  PromText out;
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const auto eol = text.find('\n');
    auto line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    std::size_t first = 0;
    while (first < line.size() && blank(line[first])) ++first;
    if (first == line.size() || line[first] == '#') continue;
    PromSample sample;
    std::string error;
    if (parse_sample(line, sample, error)) out.samples.push_back(std::move(sample));
    else out.errors.push_back("line " + std::to_string(line_number) + ": " + error);
  }
  return out;
}

}  // namespace nudge::runtime
