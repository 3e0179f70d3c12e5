#include "topic_admin.hpp"

#include <algorithm>
#include <map>
#include <utility>

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

namespace {

constexpr auto kRetryDelay = std::chrono::seconds(3);
constexpr int kRequestTimeoutMs = 5000;

/// Failures that will not go away by asking again.
bool is_permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
      return true;
    default:
      return false;
  }
}

}  // namespace

TopicAdmin::TopicAdmin(const KafkaConfig& config, Context& context, BlockingWorker& worker,
                       std::vector<TopicSpec> topics)
    : KafkaClient(config, context, "admin client"),
      worker_(worker),
      pending_(std::move(topics)),
      executor_(context.executor()),
      retry_timer_(context.executor()) {}

TopicAdmin::~TopicAdmin() {
  *alive_ = false;
  watcher_.reset();
  if (queue_) rd_kafka_queue_destroy(queue_);
  if (rk_) rd_kafka_destroy(rk_);
}

Status TopicAdmin::start(std::function<void(bool)> settled) {
  settled_ = std::move(settled);
  std::string error;
  rd_kafka_conf_t* conf = base_conf(error);
  if (!conf) return Status::error(StatusCode::invalid_argument, error);
  rk_ = make_handle(RD_KAFKA_PRODUCER, conf, error);
  if (!rk_) return Status::error(StatusCode::invalid_argument, error);
  queue_ = rd_kafka_queue_get_main(rk_);
  watcher_ = std::make_unique<QueueWatcher>(executor_, queue_, [this] { serve(); });
  if (auto s = watcher_->start(); !s.ok()) return s;
  request();
  return Status::success();
}

void TopicAdmin::request() {
  ++attempts_;
  char errstr[512];
  std::vector<rd_kafka_NewTopic_t*> topics;
  // A topic that cannot even be described (never, with validated settings) is not asked for again.
  std::erase_if(pending_, [&](const TopicSpec& spec) {
    rd_kafka_NewTopic_t* topic =
        rd_kafka_NewTopic_new(spec.name.c_str(), static_cast<int>(spec.partitions),
                              static_cast<int>(config_.replication_factor), errstr, sizeof errstr);
    if (!topic) {
      logger_.error("cannot describe topic '", spec.name, "' for creation: ", errstr);
      return true;
    }
    topics.push_back(topic);
    return false;
  });
  if (topics.empty()) {
    if (auto settled = std::exchange(settled_, nullptr)) settled(false);
    return;
  }
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk_, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(options, kRequestTimeoutMs, errstr, sizeof errstr);
  rd_kafka_AdminOptions_set_operation_timeout(options, kRequestTimeoutMs, errstr, sizeof errstr);
  rd_kafka_CreateTopics(rk_, topics.data(), topics.size(), options, queue_);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_NewTopic_destroy_array(topics.data(), topics.size());
}

void TopicAdmin::serve() {
  if (!queue_) return;
  for (int i = 0; i < 64; ++i) {
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue_, 0);
    if (!event) return;
    switch (rd_kafka_event_type(event)) {
      case RD_KAFKA_EVENT_CREATETOPICS_RESULT:
        on_result(event);
        break;
      case RD_KAFKA_EVENT_LOG: {
        const char* facility = nullptr;
        const char* text = nullptr;
        int level = 0;
        if (rd_kafka_event_log(event, &facility, &text, &level) == 0) on_log(level, facility, text);
        break;
      }
      case RD_KAFKA_EVENT_ERROR:
        on_error(rk_, rd_kafka_event_error(event), rd_kafka_event_error_string(event));
        break;
      default:
        break;
    }
    rd_kafka_event_destroy(event);
    // Release only now: the event belongs to the handle.
    if (done_) return finished();
    if (!queue_) return;
  }
  if (watcher_) watcher_->poke();
}

void TopicAdmin::on_result(rd_kafka_event_t* event) {
  // Each topic's own answer; a request-level error is every pending topic's.
  std::map<std::string, std::pair<rd_kafka_resp_err_t, std::string>> answers;
  if (const rd_kafka_resp_err_t err = rd_kafka_event_error(event); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (const auto& spec : pending_) answers[spec.name] = {err, rd_kafka_event_error_string(event)};
  } else {
    std::size_t count = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
    for (std::size_t i = 0; i < count; ++i) {
      const rd_kafka_resp_err_t topic_err = rd_kafka_topic_result_error(results[i]);
      const char* text = rd_kafka_topic_result_error_string(results[i]);
      answers[rd_kafka_topic_result_name(results[i])] = {topic_err, text ? text : rd_kafka_err2str(topic_err)};
    }
  }
  bool all_exist = true;
  bool retry = false;
  std::erase_if(pending_, [&](const TopicSpec& spec) {
    const auto found = answers.find(spec.name);
    // No answer for it: asked again with the others.
    const auto [err, why] = found != answers.end() ? found->second
                                                   : std::pair{RD_KAFKA_RESP_ERR__FAIL, std::string("no answer")};
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      logger_.info("created topic '", spec.name, "' with ", spec.partitions, " partition",
                   spec.partitions == 1 ? "" : "s", " (replication factor ", config_.replication_factor, ")");
      return true;
    }
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      logger_.debug("topic '", spec.name, "' exists");
      return true;
    }
    all_exist = false;
    if (is_permanent(err)) {
      logger_.error("cannot create topic '", spec.name, "' (", rd_kafka_err2name(err), ": ", why,
                    "); if it does not exist, producing and consuming will fail until it is made");
      return true;
    }
    retry = true;
    std::uint64_t suppressed = 0;
    if (limiter_.allow("create:" + spec.name, suppressed))
      logger_.warn("cannot create topic '", spec.name, "' yet (", rd_kafka_err2name(err), ": ", why,
                   "); trying again every ", kRetryDelay.count(), " s");
    return false;
  });
  if (auto settled = std::exchange(settled_, nullptr)) settled(all_exist);
  if (!retry) {
    done_ = true;
    return;
  }
  retry_timer_.expires_after(kRetryDelay);
  retry_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (*alive && !ec && rk_ && !releasing_) request();
  });
}

void TopicAdmin::finished() {
  if (!rk_ || releasing_) return;
  releasing_ = true;
  retry_timer_.cancel();
  watcher_.reset();
  rd_kafka_queue_destroy(std::exchange(queue_, nullptr));
  rd_kafka_t* rk = std::exchange(rk_, nullptr);
  worker_.run(
      [rk] {
        rd_kafka_destroy(rk);
        return true;
      },
      [this, alive = alive_](bool) {
        if (!*alive) return;
        releasing_ = false;
        if (auto done = std::exchange(on_stopped_, nullptr)) done();
      });
}

void TopicAdmin::stop(std::function<void()> done) {
  on_stopped_ = std::move(done);
  settled_ = nullptr;
  if (rk_) return finished();
  if (!releasing_) boost::asio::post(executor_, [this, alive = alive_] {
      if (!*alive) return;
      if (auto done = std::exchange(on_stopped_, nullptr)) done();
    });
}

}  // namespace nudge::plugins::kafka
