#include "kafka_client.hpp"

#include <string_view>

namespace nudge::plugins::kafka {

bool RateLimiter::allow(const std::string& key, std::uint64_t& suppressed) {
  const auto now = std::chrono::steady_clock::now();
  auto& entry = entries_[key];
  if (entry.last != std::chrono::steady_clock::time_point{} && now - entry.last < interval_) {
    ++entry.suppressed;
    return false;
  }
  suppressed = entry.suppressed;
  entry.suppressed = 0;
  entry.last = now;
  return true;
}

KafkaClient::KafkaClient(const KafkaConfig& config, Context& context, std::string role)
    : config_(config),
      context_(context),
      logger_(context.logger()),
      role_(std::move(role)),
      brokers_down_(context.metrics().counter("brokers_down", "Times librdkafka found all brokers down")),
      fatal_errors_(context.metrics().counter("fatal_errors", "Fatal (idempotent producer) errors")) {}

bool KafkaClient::set(rd_kafka_conf_t* conf, const char* key, const std::string& value, std::string& error) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key, value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    error = std::string("cannot set librdkafka's '") + key + "' to '" + value + "': " + errstr;
    return false;
  }
  return true;
}

rd_kafka_conf_t* KafkaClient::base_conf(std::string& error) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const bool ok = set(conf, "bootstrap.servers", config_.brokers, error) &&
                  set(conf, "client.id", config_.client_id, error) &&
                  // Log lines come through the handle's queue, served on the event loop.
                  set(conf, "log.queue", "true", error) &&
                  // Idle connections closed by the broker are routine, not news.
                  set(conf, "log.connection.close", "false", error) &&
                  // As the Java client. librdkafka's default (10 s) leaves a
                  // broker that is back unused for up to 10 s, and the handle
                  // checks a down broker's messages for delivery_timeout_ms
                  // only when it tries to reconnect: appends timed out up to
                  // 8 s late (measured with a 1 s delivery timeout).
                  set(conf, "reconnect.backoff.max.ms", "1000", error) &&
                  // Brokers' states every second: how readiness learns that
                  // a broker is up again after all were down.
                  set(conf, "statistics.interval.ms", "1000", error);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_log_cb(conf, &KafkaClient::log_cb);
  rd_kafka_conf_set_error_cb(conf, &KafkaClient::error_cb);
  rd_kafka_conf_set_stats_cb(conf, &KafkaClient::stats_cb);
  return conf;
}

rd_kafka_t* KafkaClient::make_handle(rd_kafka_type_t type, rd_kafka_conf_t* conf, std::string& error) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    error = std::string("cannot create the Kafka ") + role_ + ": " + errstr;
    return nullptr;
  }
  rd_kafka_set_log_queue(rk, nullptr);  // the main queue
  return rk;
}

void KafkaClient::log_cb(const rd_kafka_t* rk, int level, const char* facility, const char* text) {
  if (auto* self = static_cast<KafkaClient*>(rd_kafka_opaque(rk))) self->on_log(level, facility, text);
}

void KafkaClient::error_cb(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  if (auto* self = static_cast<KafkaClient*>(opaque)) self->on_error(rk, static_cast<rd_kafka_resp_err_t>(err), reason);
}

int KafkaClient::stats_cb(rd_kafka_t*, char* json, size_t json_len, void* opaque) {
  auto* self = static_cast<KafkaClient*>(opaque);
  if (self && self->brokers_down_now_ && any_broker_up(std::string_view(json, json_len))) {
    self->brokers_down_now_ = false;
    self->logger_.info("a Kafka broker is up again for the ", self->role_);
  }
  return 0;  // librdkafka frees the JSON
}

bool KafkaClient::any_broker_up(std::string_view stats) {
  // Each broker object holds "source":"configured|learned|logical|internal"
  // then "state":"INIT|DOWN|CONNECT|...|UP". The internal and logical
  // brokers are no server.
  const auto brokers = stats.find("\"brokers\":{");
  if (brokers == std::string_view::npos) return false;
  constexpr std::string_view kSource = "\"source\":\"";
  constexpr std::string_view kState = "\"state\":\"";
  for (auto at = stats.find(kSource, brokers); at != std::string_view::npos; at = stats.find(kSource, at + 1)) {
    const auto source_end = stats.find('"', at + kSource.size());
    if (source_end == std::string_view::npos) return false;
    const auto source = stats.substr(at + kSource.size(), source_end - at - kSource.size());
    const auto state_at = stats.find(kState, source_end);
    if (state_at == std::string_view::npos) return false;
    const auto state = stats.substr(state_at + kState.size(), 3);
    if ((source == "configured" || source == "learned") && state == "UP\"") return true;
  }
  return false;
}

void KafkaClient::on_log(int level, const char* facility, const char* text) {
  // syslog levels. Connection failures ("FAIL", "ERROR") also arrive as error
  // events, which are logged (rate-limited) there; here they are debug lines.
  const std::string_view fac(facility ? facility : "");
  LogLevel mapped = LogLevel::debug;
  if (level <= 4 && fac != "FAIL" && fac != "ERROR") mapped = level <= 3 ? LogLevel::error : LogLevel::warn;
  else if (level >= 7) mapped = LogLevel::trace;
  if (!logger_.enabled(mapped)) return;
  if (mapped >= LogLevel::warn) {
    std::uint64_t suppressed = 0;
    if (!limiter_.allow(std::string("log:") + std::string(fac), suppressed)) return;
    if (suppressed)
      return logger_.write(mapped, "librdkafka " + role_ + " [" + std::string(fac) + "]: " + text + " (" +
                                       std::to_string(suppressed) + " similar lines suppressed)");
  }
  logger_.write(mapped, "librdkafka " + role_ + " [" + std::string(fac) + "]: " + text);
}

void KafkaClient::on_error(rd_kafka_t* rk, rd_kafka_resp_err_t err, const char* reason) {
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char detail[512] = "";
    const auto cause = rd_kafka_fatal_error(rk, detail, sizeof detail);
    fatal_errors_.add();
    logger_.error("the Kafka ", role_, " hit a fatal error (", rd_kafka_err2name(cause), "): ", detail);
    on_fatal(rk);
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    brokers_down_.add();
    brokers_down_now_ = true;
    brokers_down_reason_ = reason ? reason : "all brokers are down";
  }
  std::uint64_t suppressed = 0;
  if (!limiter_.allow(std::string("error:") + rd_kafka_err2name(err), suppressed)) return;
  if (suppressed)
    logger_.warn("Kafka ", role_, ": ", reason, " (", rd_kafka_err2name(err), "; ", suppressed,
                 " more since the last such line)");
  else logger_.warn("Kafka ", role_, ": ", reason, " (", rd_kafka_err2name(err), ")");
}

StatusCode delivery_status_code(rd_kafka_resp_err_t err) noexcept {
  switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return StatusCode::timeout;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
      return StatusCode::invalid_argument;
    default:
      return StatusCode::unavailable;
  }
}

}  // namespace nudge::plugins::kafka
