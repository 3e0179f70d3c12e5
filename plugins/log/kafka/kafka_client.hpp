#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <librdkafka/rdkafka.h>

#include "config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge::plugins::kafka {

/// Lets one line about a recurring problem through per interval and counts
/// the others, so a broker that stays down logs a few lines a minute, not
/// one per reconnect. Event loop only.
class RateLimiter {
 public:
  explicit RateLimiter(std::chrono::milliseconds interval) : interval_(interval) {}
  /// True when a line about `key` may be written now; `suppressed` is then
  /// how many lines about it were held back since the last one.
  bool allow(const std::string& key, std::uint64_t& suppressed);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t suppressed = 0;
  };
  std::chrono::milliseconds interval_;
  std::map<std::string, Entry, std::less<>> entries_;
};

/// What the producer, the consumer and the topic admin share: the common
/// librdkafka settings, and librdkafka's log lines and error events turned
/// into rate-limited log lines and counters.
///
/// Every handle is made with `log.queue` so librdkafka's log lines arrive
/// through the handle's queue and are written on the event loop like every
/// other callback; nothing here runs on a librdkafka thread.
class KafkaClient {
 public:
  KafkaClient(const KafkaConfig& config, Context& context, std::string role);
  virtual ~KafkaClient() = default;
  KafkaClient(const KafkaClient&) = delete;
  KafkaClient& operator=(const KafkaClient&) = delete;

  /// librdkafka reported all brokers down, and no broker has been seen up
  /// since (its statistics, every second). Event loop only.
  bool brokers_down() const noexcept { return brokers_down_now_; }
  /// librdkafka's words for the last all-brokers-down event.
  const std::string& brokers_down_reason() const noexcept { return brokers_down_reason_; }
  /// True when librdkafka statistics JSON shows a configured or learned
  /// broker in state UP (public for tests).
  static bool any_broker_up(std::string_view stats_json);

 protected:
  /// A new conf with the brokers, the client id and the log/error callbacks
  /// (their opaque is this object). Null with `error` set on failure.
  rd_kafka_conf_t* base_conf(std::string& error);
  /// Sets one property; false with `error` naming it on failure.
  static bool set(rd_kafka_conf_t* conf, const char* key, const std::string& value, std::string& error);
  /// Makes the handle from `conf` (which it takes) and routes its log lines to its main queue.
  rd_kafka_t* make_handle(rd_kafka_type_t type, rd_kafka_conf_t* conf, std::string& error);

  /// A fatal error (idempotent producer): the handle is unusable from now on.
  virtual void on_fatal(rd_kafka_t*) {}
  /// Writes one librdkafka log line (syslog `level`), rate-limited from warn up.
  void on_log(int level, const char* facility, const char* text);
  /// Logs (rate-limited) and counts an error event.
  void on_error(rd_kafka_t* rk, rd_kafka_resp_err_t err, const char* reason);

  const KafkaConfig& config_;
  Context& context_;
  Logger& logger_;
  const std::string role_;
  RateLimiter limiter_{std::chrono::seconds(30)};
  Counter& brokers_down_;
  Counter& fatal_errors_;
  bool brokers_down_now_ = false;
  std::string brokers_down_reason_;

 private:
  static void log_cb(const rd_kafka_t* rk, int level, const char* facility, const char* text);
  static void error_cb(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  static int stats_cb(rd_kafka_t* rk, char* json, size_t json_len, void* opaque);
};

/// The StatusCode a failed delivery maps to: timeout when the message timed
/// out, invalid_argument when it can never be stored (too large), else unavailable.
StatusCode delivery_status_code(rd_kafka_resp_err_t err) noexcept;

}  // namespace nudge::plugins::kafka
