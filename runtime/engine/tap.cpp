#include "engine/tap.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace nudge::runtime {

TapStage stage_of(TapPoint point) noexcept {
  switch (point) {
    case TapPoint::source_accepted:
    case TapPoint::source_delivered:
      return TapStage::source;
    case TapPoint::transform_passed:
    case TapPoint::transform_dropped:
    case TapPoint::transform_rejected:
      return TapStage::transform;
    case TapPoint::log_appended:
    case TapPoint::log_append_failed:
    case TapPoint::log_consumed:
      return TapStage::log;
    case TapPoint::fanout_published:
    case TapPoint::fanout_received:
      return TapStage::fanout;
    case TapPoint::sink_written:
      return TapStage::sink;
  }
  return TapStage::source;
}

const char* to_string(TapStage stage) noexcept {
  switch (stage) {
    case TapStage::source:
      return "source";
    case TapStage::transform:
      return "transform";
    case TapStage::log:
      return "log";
    case TapStage::fanout:
      return "fanout";
    case TapStage::sink:
      return "sink";
  }
  return "unknown";
}

const char* to_string(TapPoint point) noexcept {
  switch (point) {
    case TapPoint::source_accepted:
      return "accepted";
    case TapPoint::source_delivered:
      return "delivered";
    case TapPoint::transform_passed:
      return "passed";
    case TapPoint::transform_dropped:
      return "dropped";
    case TapPoint::transform_rejected:
      return "rejected";
    case TapPoint::log_appended:
      return "appended";
    case TapPoint::log_append_failed:
      return "append_failed";
    case TapPoint::log_consumed:
      return "consumed";
    case TapPoint::fanout_published:
      return "published";
    case TapPoint::fanout_received:
      return "received";
    case TapPoint::sink_written:
      return "written";
  }
  return "unknown";
}

std::optional<TapStage> parse_tap_stage(std::string_view text) noexcept {
  for (const TapStage s : {TapStage::source, TapStage::transform, TapStage::log, TapStage::fanout, TapStage::sink})
    if (text == to_string(s)) return s;
  return std::nullopt;
}

namespace {

/// splitmix64's finaliser over the id's two halves: UUIDv7 ids share their
/// time bits, so a plain slice of them would not sample evenly.
std::uint64_t id_hash(const MessageId& id) noexcept {
  std::uint64_t hi = 0, lo = 0;
  for (std::size_t i = 0; i < 8; ++i) hi = (hi << 8) | id.bytes()[i];
  for (std::size_t i = 8; i < 16; ++i) lo = (lo << 8) | id.bytes()[i];
  std::uint64_t z = hi ^ (lo + 0x9e3779b97f4a7c15ULL + (hi << 6) + (hi >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Length of the valid UTF-8 sequence at the start of `s`, or 0 when it is not one.
std::size_t utf8_sequence(std::string_view s) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = byte(0);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  return n;
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  append_json_text(out, text);
  out += '"';
}

void append_time(std::string& out, std::chrono::system_clock::time_point when) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[96];  // room for any int the compiler imagines; the real text is 24 bytes
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(ms % 1000));
  out += text;
}

}  // namespace

std::size_t append_json_text(std::string& out, std::string_view text, std::size_t limit) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t n = utf8_sequence(text.substr(i));
    const std::size_t step = n == 0 ? 1 : n;
    if (limit != std::string_view::npos && i + step > limit) break;
    if (n == 0) {
      out += "\\ufffd";
    } else if (n > 1) {
      out.append(text.data() + i, n);
    } else {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    i += step;
  }
  return i;
}

std::string tap_event_json(TapPoint point, std::string_view at, const Message& message, std::string_view reason,
                           std::size_t max_text, std::chrono::system_clock::time_point when) {
  std::string out;
  out.reserve(160 + std::min(message.payload.size(), max_text == 0 ? message.payload.size() : max_text) +
              message.room.size() + message.sender.size());
  out += "{\"time\":\"";
  append_time(out, when);
  out += "\",\"stage\":\"";
  out += to_string(stage_of(point));
  out += "\",\"point\":\"";
  out += to_string(point);
  out += "\",\"at\":";
  append_json_string(out, at);
  out += ",\"room\":";
  append_json_string(out, message.room);
  out += ",\"id\":\"";
  out += message.id.to_string();
  out += "\",\"sender\":";
  append_json_string(out, message.sender);
  out += ",\"size\":";
  out += std::to_string(message.payload.size());
  out += ",\"text\":\"";
  const std::size_t used = append_json_text(out, message.payload, max_text == 0 ? std::string_view::npos : max_text);
  out += '"';
  if (used < message.payload.size()) out += ",\"truncated\":true";
  if (!reason.empty()) {
    out += ",\"reason\":";
    append_json_string(out, reason);
  }
  out += "}\n";
  return out;
}

namespace {

/// The non-empty items of a comma list.
std::vector<std::string> comma_items(std::string_view text) {
  std::vector<std::string> items;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

template <class Number>
bool parse_number(std::string_view text, Number& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::optional<TapFilter> parse_tap_query(std::string_view target, std::string& error) {
  const auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) {
    error = "the request target is not a valid path and query";
    return std::nullopt;
  }
  TapFilter filter;
  for (const auto& param : parsed->params()) {
    const std::string& key = param.key;
    const std::string& value = param.value;
    if (key == "stage") {
      for (const auto& name : comma_items(value)) {
        const auto stage = parse_tap_stage(name);
        if (!stage) {
          error = "stage: '" + name + "' is not one of source, transform, log, fanout, sink";
          return std::nullopt;
        }
        filter.stages |= 1u << unsigned(*stage);
      }
    } else if (key == "room") {
      for (auto& room : comma_items(value)) filter.rooms.push_back(std::move(room));
    } else if (key == "sample") {
      double sample = 0;
      if (!parse_number(value, sample) || !(sample > 0 && sample <= 1)) {
        error = "sample: must be a number in (0, 1], got '" + value + "'";
        return std::nullopt;
      }
      filter.sample = sample;
    } else if (key == "limit") {
      if (!parse_number(value, filter.limit)) {
        error = "limit: must be a whole number of events (0: no limit), got '" + value + "'";
        return std::nullopt;
      }
    } else if (key == "max_text") {
      if (!parse_number(value, filter.max_text)) {
        error = "max_text: must be a whole number of bytes (0: the whole text), got '" + value + "'";
        return std::nullopt;
      }
    } else {
      error = "unknown parameter '" + key + "' (stage, room, sample, limit, max_text)";
      return std::nullopt;
    }
  }
  return filter;
}

std::string describe(const TapFilter& filter) {
  std::string text = "stages ";
  if (filter.stages == 0) {
    text += "all";
  } else {
    bool first = true;
    for (const TapStage s : {TapStage::source, TapStage::transform, TapStage::log, TapStage::fanout, TapStage::sink})
      if (filter.watches(s)) {
        text += (first ? "" : ",") + std::string(to_string(s));
        first = false;
      }
  }
  text += "; rooms ";
  if (filter.rooms.empty()) text += "all";
  for (std::size_t i = 0; i < filter.rooms.size(); ++i) text += (i ? "," : "") + filter.rooms[i];
  char sample[32];
  std::snprintf(sample, sizeof sample, "%g", filter.sample);
  text += "; sample " + std::string(sample);
  if (filter.limit) text += "; limit " + std::to_string(filter.limit);
  return text;
}

Tap::Tap(TapFilter filter, TapLimits limits, std::function<void()> wake)
    : filter_(std::move(filter)), limits_(limits), wake_(std::move(wake)) {
  if (filter_.sample < 1.0) {
    sample_all_ = false;
    // 2^64 × sample, without overflowing at the top.
    sample_below_ = static_cast<std::uint64_t>(std::ldexp(std::max(0.0, filter_.sample), 64));
  }
  tokens_ = static_cast<double>(limits_.events_per_second);
}

bool Tap::wants(TapStage stage, std::string_view room, const MessageId& id) const noexcept {
  if (!filter_.watches(stage)) return false;
  if (!filter_.rooms.empty() && std::find(filter_.rooms.begin(), filter_.rooms.end(), room) == filter_.rooms.end())
    return false;
  return sample_all_ || id_hash(id) < sample_below_;
}

Tap::Admit Tap::admit(std::chrono::steady_clock::time_point now) {
  if (filter_.limit != 0 && events_ >= filter_.limit) return Admit::ended;
  const double rate = static_cast<double>(limits_.events_per_second);
  if (refilled_ != std::chrono::steady_clock::time_point{})
    tokens_ = std::min(rate, tokens_ + rate * std::chrono::duration<double>(now - refilled_).count());
  refilled_ = now;
  if (tokens_ < 1.0) {
    ++missed_over_rate_;
    wake();
    return Admit::over_rate;
  }
  tokens_ -= 1.0;
  return Admit::yes;
}

bool Tap::push(std::shared_ptr<const std::string> line) {
  if (queued_bytes_ + line->size() > limits_.queue_bytes) {
    ++missed_queue_full_;
    wake();
    return false;
  }
  queued_bytes_ += line->size();
  queue_.push_back(std::move(line));
  ++events_;
  wake();
  return true;
}

std::string Tap::take(std::size_t max_bytes) {
  woken_ = false;
  std::string out;
  if (missed() != missed_told_) {
    missed_told_ = missed();
    out += "{\"notice\":\"missed\",\"missed\":" + std::to_string(missed()) +
           ",\"queue_full\":" + std::to_string(missed_queue_full_) +
           ",\"over_rate\":" + std::to_string(missed_over_rate_) + "}\n";
  }
  while (!queue_.empty() && (out.empty() || out.size() + queue_.front()->size() <= max_bytes)) {
    out += *queue_.front();
    queued_bytes_ -= queue_.front()->size();
    queue_.pop_front();
  }
  return out;
}

void Tap::wake() {
  if (woken_ || !wake_) return;
  woken_ = true;
  wake_();
}

TapRegistry::TapRegistry(MetricsRegistry& metrics)
    : events_(metrics.counter("nudge_admin_tap_events", "Events queued to the tappers of GET /tap (nudge tap)")),
      missed_queue_full_(metrics.counter("nudge_admin_tap_missed",
                                         "Events a tapper wanted but missed: its queue was full (a slow reader) or "
                                         "it was over admin.tap_events_per_second",
                                         {{"reason", "queue_full"}})),
      missed_over_rate_(metrics.counter("nudge_admin_tap_missed", {}, {{"reason", "over_rate"}})),
      attached_(metrics.gauge("nudge_admin_taps", "Taps attached (GET /tap, nudge tap)")) {}

void TapRegistry::record(TapPoint point, std::string_view at, const Message& message, std::string_view reason) {
  const TapStage stage = stage_of(point);
  const auto now = std::chrono::steady_clock::now();
  std::shared_ptr<const std::string> line;
  std::size_t line_max_text = 0;
  for (const auto& tap : taps_) {
    if (!tap->wants(stage, message.room, message.id)) continue;
    switch (tap->admit(now)) {
      case Tap::Admit::yes:
        break;
      case Tap::Admit::over_rate:
        missed_over_rate_.add();
        continue;
      case Tap::Admit::ended:
        continue;
    }
    if (!line || line_max_text != tap->filter().max_text) {
      line_max_text = tap->filter().max_text;
      ++serialised_;
      line = std::make_shared<const std::string>(
          tap_event_json(point, at, message, reason, line_max_text, std::chrono::system_clock::now()));
    }
    if (tap->push(line)) events_.add();
    else missed_queue_full_.add();
  }
}

std::shared_ptr<Tap> TapRegistry::attach(TapFilter filter, std::function<void()> wake, std::string& refusal) {
  if (limits_.max_taps == 0) {
    refusal = "taps are turned off (admin.max_taps = 0)";
    return nullptr;
  }
  if (taps_.size() >= limits_.max_taps) {
    refusal = std::to_string(taps_.size()) +
              " taps are attached already (admin.max_taps = " + std::to_string(limits_.max_taps) + ")";
    return nullptr;
  }
  auto tap = std::make_shared<Tap>(std::move(filter), limits_, std::move(wake));
  taps_.push_back(tap);
  attached_.set(static_cast<std::int64_t>(taps_.size()));
  active_.store(true, std::memory_order_relaxed);
  return tap;
}

void TapRegistry::detach(const std::shared_ptr<Tap>& tap) {
  std::erase(taps_, tap);
  attached_.set(static_cast<std::int64_t>(taps_.size()));
  active_.store(!taps_.empty(), std::memory_order_relaxed);
}

}  // namespace nudge::runtime
