#include "engine/logging.hpp"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace nudge::runtime {

std::optional<LogLevel> parse_log_level(std::string_view text) {
  if (text == "trace") return LogLevel::trace;
  if (text == "debug") return LogLevel::debug;
  if (text == "info") return LogLevel::info;
  if (text == "warn") return LogLevel::warn;
  if (text == "error") return LogLevel::error;
  return std::nullopt;
}

std::optional<LogFormat> parse_log_format(std::string_view text) {
  if (text == "text") return LogFormat::text;
  if (text == "logfmt") return LogFormat::logfmt;
  if (text == "json") return LogFormat::json;
  return std::nullopt;
}

LogOutput& LogOutput::instance() {
  static LogOutput output;
  return output;
}

void LogOutput::set_format(LogFormat format) {
  std::lock_guard lock(mutex_);
  format_ = format;
}

void LogOutput::set_identity(std::string pipeline, std::string instance) {
  std::lock_guard lock(mutex_);
  pipeline_ = std::move(pipeline);
  instance_ = std::move(instance);
}

void LogOutput::set_repeat_window(std::chrono::milliseconds window) {
  std::lock_guard lock(mutex_);
  repeat_window_ = window;
}

void LogOutput::set_sink(std::FILE* file) {
  std::lock_guard lock(mutex_);
  sink_ = file;
}

namespace {

const char* level_label(LogLevel level) {
  switch (level) {
    case LogLevel::trace:
      return "TRACE";
    case LogLevel::debug:
      return "DEBUG";
    case LogLevel::info:
      return "INFO ";
    case LogLevel::warn:
      return "WARN ";
    case LogLevel::error:
      return "ERROR";
  }
  return "?";
}

std::string timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t secs = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[40];
  const auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(ms));
  return stamp;
}

/// A logfmt value: bare when it needs no quoting, else quoted with \" \\ \n escaped.
std::string logfmt_value(std::string_view v) {
  const bool bare = !v.empty() && v.find_first_of(" =\"\\\n\t") == std::string_view::npos;
  if (bare) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') (out += '\\') += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out + "\"";
}

/// The text with runs of digits folded, so "retry 3 in 400 ms" and "retry 4
/// in 800 ms" count as the same repeated line.
std::string repeat_key(std::string_view logger, std::string_view text) {
  std::string key(logger);
  key += '\0';
  bool in_digits = false;
  for (char c : text) {
    const bool digit = std::isdigit(static_cast<unsigned char>(c)) != 0;
    if (!digit) key += c;
    else if (!in_digits) key += '#';
    in_digits = digit;
  }
  return key;
}

}  // namespace

std::string LogOutput::format_line(LogLevel level, std::string_view logger, std::string_view text,
                                   std::uint64_t repeated) const {
  // `sink.postgres` → stage sink.postgres, plugin postgres; `runtime`, `admin` → no plugin.
  const auto dot = logger.find('.');
  const std::string_view plugin = dot == std::string_view::npos ? std::string_view() : logger.substr(dot + 1);
  const std::string repeat_note =
      repeated ? " (" + std::to_string(repeated) + " more like this held back since the last one)" : "";
  switch (format_) {
    case LogFormat::text: {
      std::string line = timestamp() + " " + level_label(level) + " ";
      line.append(logger);
      line += ": ";
      line.append(text);
      return line + repeat_note;
    }
    case LogFormat::logfmt: {
      std::string line = "ts=" + timestamp() + " level=" + to_string(level);
      if (!pipeline_.empty()) line += " pipeline=" + logfmt_value(pipeline_);
      if (!instance_.empty()) line += " instance=" + logfmt_value(instance_);
      line += " stage=" + logfmt_value(logger);
      if (!plugin.empty()) line += " plugin=" + logfmt_value(plugin);
      line += " msg=" + logfmt_value(text);
      if (repeated) line += " repeated=" + std::to_string(repeated);
      return line;
    }
    case LogFormat::json: {
      rapidjson::StringBuffer buffer;
      rapidjson::Writer<rapidjson::StringBuffer> json(buffer);
      const auto member = [&json](const char* key, std::string_view value) {
        json.Key(key);
        json.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
      };
      json.StartObject();
      member("ts", timestamp());
      member("level", to_string(level));
      if (!pipeline_.empty()) member("pipeline", pipeline_);
      if (!instance_.empty()) member("instance", instance_);
      member("stage", logger);
      if (!plugin.empty()) member("plugin", plugin);
      member("msg", text);
      if (repeated) {
        json.Key("repeated");
        json.Uint64(repeated);
      }
      json.EndObject();
      return std::string(buffer.GetString(), buffer.GetSize());
    }
  }
  return {};
}

void LogOutput::write(LogLevel level, std::string_view logger, std::string_view text) {
  std::lock_guard lock(mutex_);
  std::uint64_t repeated = 0;
  if (level >= LogLevel::warn) {
    const auto now = std::chrono::steady_clock::now();
    auto key = repeat_key(logger, text);
    auto it = repeats_.find(key);
    if (it != repeats_.end() && now - it->second.last < repeat_window_) {
      ++it->second.held;
      return;
    }
    if (it == repeats_.end()) {
      // Bounded: a flood of distinct lines must not grow this without limit.
      if (repeats_.size() > 4096) repeats_.clear();
      it = repeats_.emplace(std::move(key), Repeat{}).first;
    }
    repeated = std::exchange(it->second.held, 0);
    it->second.last = now;
  }
  const std::string line = format_line(level, logger, text, repeated);
  std::FILE* out = sink_ ? sink_ : stderr;
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

}  // namespace nudge::runtime
