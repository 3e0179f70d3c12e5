#include "dead_letter.hpp"

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

namespace {

const char* timestamp_type_name(rd_kafka_timestamp_type_t type) {
  switch (type) {
    case RD_KAFKA_TIMESTAMP_CREATE_TIME:
      return "create";
    case RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME:
      return "log-append";
    case RD_KAFKA_TIMESTAMP_NOT_AVAILABLE:
      return "none";
  }
  return "none";
}

}  // namespace

UndecodableRecord UndecodableRecord::from(const rd_kafka_message_t* record, const std::string& topic,
                                          std::string error) {
  UndecodableRecord r;
  r.topic = topic;
  r.partition = record->partition;
  r.offset = record->offset;
  if (record->key) r.key.emplace(static_cast<const char*>(record->key), record->key_len);
  if (record->payload) r.value.emplace(static_cast<const char*>(record->payload), record->len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(record, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      std::optional<std::string> v;
      if (value) v.emplace(static_cast<const char*>(value), size);
      r.headers.emplace_back(name, std::move(v));
    }
  }
  r.timestamp_ms = rd_kafka_message_timestamp(record, &r.timestamp_type);
  r.error = std::move(error);
  return r;
}

DeadLetterProducer::DeadLetterProducer(const KafkaConfig& config, Context& context, BlockingWorker& worker,
                                       std::string group)
    : KafkaClient(config, context, "dead-letter producer"),
      worker_(worker),
      executor_(context.executor()),
      group_(std::move(group)) {}

DeadLetterProducer::~DeadLetterProducer() {
  *alive_ = false;
  watcher_.reset();
  if (queue_) rd_kafka_queue_destroy(queue_);
  if (rk_) rd_kafka_destroy(rk_);
}

Status DeadLetterProducer::create_handle() {
  std::string error;
  rd_kafka_conf_t* conf = base_conf(error);
  if (!conf) return Status::error(StatusCode::invalid_argument, error);
  const bool ok = set(conf, "acks", "all", error) &&
                  // Order without idempotence (whose fatal errors would need
                  // a new handle): the records are few.
                  set(conf, "max.in.flight.requests.per.connection", "1", error) &&
                  set(conf, "linger.ms", std::to_string(config_.linger_ms), error) &&
                  set(conf, "compression.codec", config_.compression, error) &&
                  set(conf, "message.timeout.ms", std::to_string(config_.delivery_timeout_ms), error) &&
                  // Made by the log (create_topic) or by the operators, never
                  // by a metadata request with the broker's defaults.
                  set(conf, "allow.auto.create.topics", "false", error);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return Status::error(StatusCode::invalid_argument, error);
  }
  rd_kafka_conf_set_dr_msg_cb(conf, &DeadLetterProducer::dr_msg_cb);
  rk_ = make_handle(RD_KAFKA_PRODUCER, conf, error);
  if (!rk_) return Status::error(StatusCode::invalid_argument, error);
  queue_ = rd_kafka_queue_get_main(rk_);
  watcher_ = std::make_unique<QueueWatcher>(executor_, queue_, [this] { serve(); });
  return watcher_->start();
}

void DeadLetterProducer::produce(const UndecodableRecord& record, Completion done) {
  auto fail = [this, &done](std::string why) {
    boost::asio::post(executor_, [done = std::move(done), why = std::move(why)] {
      done(Status::error(StatusCode::unavailable, why));
    });
  };
  if (stopped_) return fail("the dead-letter producer is stopped");
  if (!rk_) {
    if (auto s = create_handle(); !s.ok()) {
      watcher_.reset();
      if (queue_) rd_kafka_queue_destroy(std::exchange(queue_, nullptr));
      if (rk_) rd_kafka_destroy(std::exchange(rk_, nullptr));
      return fail(s.message());
    }
    logger_.info("writing undecodable records to the dead-letter topic '", config_.dead_letter_topic, "'");
  }
  rd_kafka_headers_t* headers = rd_kafka_headers_new(record.headers.size() + 7);
  for (const auto& [name, value] : record.headers)
    rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value ? value->data() : nullptr,
                        value ? static_cast<ssize_t>(value->size()) : 0);
  auto add = [headers](const char* name, const std::string& value) {
    rd_kafka_header_add(headers, name, -1, value.data(), static_cast<ssize_t>(value.size()));
  };
  add(dead_letter_header::kTopic, record.topic);
  add(dead_letter_header::kPartition, std::to_string(record.partition));
  add(dead_letter_header::kOffset, std::to_string(record.offset));
  add(dead_letter_header::kTimestamp, std::to_string(record.timestamp_ms));
  add(dead_letter_header::kTimestampType, timestamp_type_name(record.timestamp_type));
  add(dead_letter_header::kGroup, group_);
  add(dead_letter_header::kError, record.error);
  const std::uint64_t id = ++next_id_;
  // Null stays null: a null key or value is not an empty one.
  const void* key = record.key ? record.key->data() : nullptr;
  const std::size_t key_size = record.key ? record.key->size() : 0;
  void* value = record.value ? const_cast<char*>(record.value->data()) : nullptr;
  const std::size_t value_size = record.value ? record.value->size() : 0;
  const rd_kafka_resp_err_t err = rd_kafka_producev(
      rk_, RD_KAFKA_V_TOPIC(config_.dead_letter_topic.c_str()), RD_KAFKA_V_KEY(key, key_size),
      RD_KAFKA_V_VALUE(value, value_size), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(id))), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_headers_destroy(headers);  // librdkafka owns them only once it took the record
    return fail(std::string("the dead-letter producer refused the record: ") + rd_kafka_err2str(err));
  }
  pending_.emplace(id, std::move(done));
}

void DeadLetterProducer::dr_msg_cb(rd_kafka_t*, const rd_kafka_message_t* report, void* opaque) {
  static_cast<DeadLetterProducer*>(opaque)->on_delivery(report);
}

void DeadLetterProducer::on_delivery(const rd_kafka_message_t* report) {
  const auto found = pending_.find(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(report->_private)));
  if (found == pending_.end()) return;
  Completion done = std::move(found->second);
  pending_.erase(found);
  if (report->err == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_message_status(report) == RD_KAFKA_MSG_STATUS_PERSISTED)
    return done(Status::success());
  const rd_kafka_resp_err_t err = report->err != RD_KAFKA_RESP_ERR_NO_ERROR ? report->err : RD_KAFKA_RESP_ERR__FAIL;
  done(Status::error(delivery_status_code(err), std::string("Kafka did not store the record in '") +
                                                    config_.dead_letter_topic + "': " + rd_kafka_err2str(err)));
}

void DeadLetterProducer::serve() {
  // A completion may produce again (fine) but rd_kafka_poll must never run inside itself.
  if (serving_ || !rk_) return;
  serving_ = true;
  bool more = true;
  for (int i = 0; i < 64 && more && rk_; ++i) more = rd_kafka_poll(rk_, 0) > 0;
  serving_ = false;
  if (more && watcher_) watcher_->poke();
}

void DeadLetterProducer::fail_pending(const std::string& why) {
  auto pending = std::exchange(pending_, {});
  for (auto& [id, done] : pending) done(Status::error(StatusCode::unavailable, why));
}

void DeadLetterProducer::stop(std::function<void()> done) {
  stopped_ = true;
  if (!rk_) {
    boost::asio::post(executor_, [this, alive = alive_, done = std::move(done)] {
      if (!*alive) return;
      fail_pending("the dead-letter producer stopped");
      done();
    });
    return;
  }
  // The consumer waits for its records before it stops; what is left here
  // was given up on (it stays uncommitted).
  rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
  watcher_.reset();
  rd_kafka_queue_destroy(std::exchange(queue_, nullptr));
  rd_kafka_t* rk = std::exchange(rk_, nullptr);
  // rd_kafka_destroy joins librdkafka's threads: not on the event loop.
  worker_.run(
      [rk] {
        rd_kafka_destroy(rk);
        return true;
      },
      [this, alive = alive_, done = std::move(done)](bool) {
        if (!*alive) return;
        fail_pending("the dead-letter producer stopped before Kafka confirmed the record");
        done();
      });
}

}  // namespace nudge::plugins::kafka
