#include "cli/replay/replay_args.hpp"

#include <charconv>
#include <ctime>
#include <map>

namespace nudge::runtime {

namespace {

/// Reads exactly `digits` digits at `at` into `out`; advances `at`.
bool digits(std::string_view text, std::size_t& at, std::size_t count, int& out) {
  if (at + count > text.size()) return false;
  const auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + count, out);
  if (ec != std::errc() || end != text.data() + at + count) return false;
  at += count;
  return true;
}

bool expect(std::string_view text, std::size_t& at, char c) {
  if (at >= text.size() || text[at] != c) return false;
  ++at;
  return true;
}

std::optional<std::int64_t> parse_iso(std::string_view text) {
  std::size_t at = 0;
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, ms = 0;
  if (!digits(text, at, 4, year) || !expect(text, at, '-') || !digits(text, at, 2, month) || !expect(text, at, '-') ||
      !digits(text, at, 2, day))
    return std::nullopt;
  if (at < text.size()) {
    if (text[at] != 'T' && text[at] != 't' && text[at] != ' ') return std::nullopt;
    ++at;
    if (!digits(text, at, 2, hour) || !expect(text, at, ':') || !digits(text, at, 2, minute)) return std::nullopt;
    if (at < text.size() && text[at] == ':') {
      ++at;
      if (!digits(text, at, 2, second)) return std::nullopt;
      if (at < text.size() && (text[at] == '.' || text[at] == ',')) {
        ++at;
        // Milliseconds from up to 9 fraction digits.
        int scale = 100;
        std::size_t n = 0;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9' && n < 9) {
          ms += (text[at] - '0') * scale;
          scale /= 10;
          ++at;
          ++n;
        }
        if (n == 0) return std::nullopt;
      }
    }
  }
  std::int64_t offset_minutes = 0;
  if (at < text.size()) {
    if (text[at] == 'Z' || text[at] == 'z') {
      ++at;
    } else if (text[at] == '+' || text[at] == '-') {
      const int sign = text[at] == '-' ? -1 : 1;
      ++at;
      int oh = 0, om = 0;
      if (!digits(text, at, 2, oh)) return std::nullopt;
      if (at < text.size() && text[at] == ':') ++at;
      if (at < text.size() && !digits(text, at, 2, om)) return std::nullopt;
      if (oh > 23 || om > 59) return std::nullopt;
      offset_minutes = sign * (oh * 60 + om);
    }
  }
  if (at != text.size()) return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t seconds = timegm(&tm);
  // timegm normalises 2026-02-31 into March: such a date is a typo, not a time.
  if (tm.tm_mday != day || tm.tm_mon != month - 1) return std::nullopt;
  return (static_cast<std::int64_t>(seconds) - offset_minutes * 60) * 1000 + ms;
}

std::optional<std::int64_t> parse_ago(std::string_view text, std::chrono::system_clock::time_point now) {
  if (text.size() < 2) return std::nullopt;
  std::int64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, count);
  if (ec != std::errc() || end != text.data() + text.size() - 1 || count < 0) return std::nullopt;
  std::int64_t unit_ms = 0;
  switch (text.back()) {
    case 's':
      unit_ms = 1000;
      break;
    case 'm':
      unit_ms = 60'000;
      break;
    case 'h':
      unit_ms = 3'600'000;
      break;
    case 'd':
      unit_ms = 86'400'000;
      break;
    case 'w':
      unit_ms = 7 * 86'400'000LL;
      break;
    default:
      return std::nullopt;
  }
  if (count > (std::int64_t{1} << 40) / unit_ms) return std::nullopt;
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  return now_ms - count * unit_ms;
}

/// `0:1200,3:5000`: a start offset per partition.
std::optional<std::map<std::int32_t, std::int64_t>> parse_offsets(std::string_view text, std::string& error) {
  std::map<std::int32_t, std::int64_t> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    const auto colon = item.find(':');
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    if (colon == std::string_view::npos) return std::nullopt;
    const auto [pe, pec] = std::from_chars(item.data(), item.data() + colon, partition);
    const auto [oe, oec] = std::from_chars(item.data() + colon + 1, item.data() + item.size(), offset);
    if (pec != std::errc() || pe != item.data() + colon || oec != std::errc() || oe != item.data() + item.size() ||
        partition < 0 || offset < 0)
      return std::nullopt;
    if (!out.emplace(partition, offset).second) {
      error = "partition " + std::to_string(partition) + " is named twice";
      return std::nullopt;
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) return std::nullopt;
  }
  return out;
}

}  // namespace

std::optional<std::int64_t> parse_replay_time(std::string_view text, std::chrono::system_clock::time_point now,
                                              std::string& error) {
  if (auto ms = parse_iso(text)) return ms;
  if (auto ms = parse_ago(text, now)) return ms;
  error =
      "'" + std::string(text) +
      "' is not a time: use ISO 8601 (2026-12-06T14:05:00Z; no zone means UTC) or a duration ago (90s, 15m, 2h, 7d)";
  return std::nullopt;
}

std::optional<LogReplay> parse_replay_range(std::string_view from, std::string_view to, std::string group,
                                            std::chrono::system_clock::time_point now, std::string& error) {
  LogReplay range;
  range.group = std::move(group);
  if (from.empty() || from == "earliest") {
    // The default: everything the log still holds.
  } else if (from.find(':') != std::string_view::npos && from.find('-') == std::string_view::npos) {
    std::string why;
    auto offsets = parse_offsets(from, why);
    if (!offsets) {
      error = "--from: '" + std::string(from) + "' is not a list of PARTITION:OFFSET" + (why.empty() ? "" : ": " + why);
      return std::nullopt;
    }
    range.from_offsets = std::move(*offsets);
  } else {
    std::string why;
    range.from_ms = parse_replay_time(from, now, why);
    if (!range.from_ms) {
      error = "--from: " + why + ", 'earliest', or PARTITION:OFFSET[,...]";
      return std::nullopt;
    }
  }
  if (!to.empty() && to != "now") {
    std::string why;
    range.to_ms = parse_replay_time(to, now, why);
    if (!range.to_ms) {
      error = "--to: " + why + ", or 'now'";
      return std::nullopt;
    }
    if (range.from_ms && *range.to_ms <= *range.from_ms) {
      error = "--to must be later than --from";
      return std::nullopt;
    }
  }
  return range;
}

}  // namespace nudge::runtime
