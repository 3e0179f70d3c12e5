#include "topic_admin.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

namespace {

constexpr auto kRetryDelay = std::chrono::seconds(3);
constexpr int kRequestTimeoutMs = 5000;
constexpr auto kDescribeRetryFor = std::chrono::seconds(5);

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
      retry_timer_(context.executor()),
      replication_factor_(context.metrics().gauge(
          "topic_replication_factor", "Replicas of the topic's partitions (the fewest), as checked at start")),
      min_insync_replicas_(context.metrics().gauge("topic_min_insync_replicas",
                                                   "The topic's min.insync.replicas, as checked at start")) {}

TopicAdmin::~TopicAdmin() {
  *alive_ = false;
  watcher_.reset();
  *cancel_check_ = true;
  check_worker_.reset();  // joined before the handle its job uses goes
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
  // Nothing to make (create_topic = false): only the check.
  if (pending_.empty()) {
    check_pending_ = false;
    check_durability();
  } else {
    request();
  }
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
    if (config_.min_insync_replicas > 0) {
      const std::string isr = std::to_string(config_.min_insync_replicas);
      if (rd_kafka_NewTopic_set_config(topic, "min.insync.replicas", isr.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        logger_.error("cannot set min.insync.replicas of topic '", spec.name, "' for creation");
        rd_kafka_NewTopic_destroy(topic);
        return true;
      }
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
    const auto [err, why] =
        found != answers.end() ? found->second : std::pair{RD_KAFKA_RESP_ERR__FAIL, std::string("no answer")};
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
      if (spec.name == config_.topic) refused_main_ = true;
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
    // Made or found: what it keeps of each message is checked once, then the handle goes.
    if (std::exchange(check_pending_, false) && !refused_main_) return check_durability();
    done_ = true;
    return;
  }
  retry_timer_.expires_after(kRetryDelay);
  retry_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (*alive && !ec && rk_ && !releasing_) request();
  });
}

namespace {

/// The fewest replicas of any of the topic's partitions (metadata), or why not.
std::variant<std::int64_t, std::string> describe_replicas(rd_kafka_t* rk, const std::string& name) {
  // Short: a stop() waits for it.
  constexpr int kMetadataTimeoutMs = 2000;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, name.c_str(), nullptr);
  if (!rkt) return std::string("cannot make a topic handle");
  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, kMetadataTimeoutMs);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return std::string("metadata: ") + rd_kafka_err2str(err);
  std::variant<std::int64_t, std::string> result = std::string("metadata: the topic is not described");
  if (md->topic_cnt == 1 && md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    result = std::string("metadata: ") + rd_kafka_err2str(md->topics[0].err);
  } else if (md->topic_cnt == 1 && md->topics[0].partition_cnt > 0) {
    std::int64_t fewest = md->topics[0].partitions[0].replica_cnt;
    for (int p = 1; p < md->topics[0].partition_cnt; ++p)
      fewest = std::min<std::int64_t>(fewest, md->topics[0].partitions[p].replica_cnt);
    result = fewest;
  }
  rd_kafka_metadata_destroy(md);
  return result;
}

/// The topic's effective min.insync.replicas (DescribeConfigs), or why not.
std::variant<std::int64_t, std::string> describe_min_insync(rd_kafka_t* rk, const std::string& name,
                                                            const std::atomic<bool>& cancel) {
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name.c_str());
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
  char errstr[256];
  rd_kafka_AdminOptions_set_request_timeout(options, kRequestTimeoutMs, errstr, sizeof errstr);
  rd_kafka_DescribeConfigs(rk, &resource, 1, options, queue);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_ConfigResource_destroy(resource);
  std::variant<std::int64_t, std::string> result = std::string("DescribeConfigs: no min.insync.replicas");
  // In slices, so that a stop() need not wait for the answer.
  rd_kafka_event_t* event = nullptr;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs + 1000);
  while (!event && !cancel && std::chrono::steady_clock::now() < deadline) event = rd_kafka_queue_poll(queue, 100);
  if (!event) {
    result = std::string(cancel ? "stopped" : "DescribeConfigs: no answer");
  } else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    result = std::string("DescribeConfigs: ") + rd_kafka_event_error_string(event);
  } else {
    std::size_t count = 0;
    const rd_kafka_ConfigResource_t** resources =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event), &count);
    if (count != 1) {
      result = std::string("DescribeConfigs: the topic is not described");
    } else if (const rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(resources[0]);
               err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* why = rd_kafka_ConfigResource_error_string(resources[0]);
      result = std::string("DescribeConfigs: ") + (why && *why ? why : rd_kafka_err2str(err));
    } else {
      std::size_t entries = 0;
      const rd_kafka_ConfigEntry_t** config = rd_kafka_ConfigResource_configs(resources[0], &entries);
      for (std::size_t i = 0; i < entries; ++i) {
        const char* value = rd_kafka_ConfigEntry_value(config[i]);
        if (std::string_view(rd_kafka_ConfigEntry_name(config[i])) == "min.insync.replicas" && value)
          if (const std::int64_t n = std::strtoll(value, nullptr, 10); n > 0) result = n;
      }
    }
  }
  if (event) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  return result;
}

/// What the brokers say the topic keeps, from the worker thread (blocking
/// calls on the admin handle). A topic just made reaches the other brokers'
/// metadata a moment later, so a failed look is repeated for up to 5 s.
std::variant<TopicDurability, std::string> describe_durability(rd_kafka_t* rk, const std::string& name,
                                                               const std::atomic<bool>& cancel) {
  std::string problem;
  // Bounded: the worker is shared with the producer and consumer.
  const auto deadline = std::chrono::steady_clock::now() + kDescribeRetryFor;
  for (int attempt = 0; attempt == 0 || std::chrono::steady_clock::now() < deadline; ++attempt) {
    for (int slice = 0; attempt > 0 && slice < 5 && !cancel; ++slice)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (cancel) return std::string("stopped");
    auto replicas = describe_replicas(rk, name);
    if (auto* why = std::get_if<std::string>(&replicas)) {
      problem = std::move(*why);
      continue;
    }
    auto min_insync = describe_min_insync(rk, name, cancel);
    if (auto* why = std::get_if<std::string>(&min_insync)) {
      problem = std::move(*why);
      continue;
    }
    return TopicDurability{std::get<std::int64_t>(replicas), std::get<std::int64_t>(min_insync)};
  }
  return problem;
}

}  // namespace

void TopicAdmin::check_durability() {
  // A thread of its own: the look may take seconds (a topic not there yet),
  // and the shared worker serves the producer's and consumer's calls.
  checking_ = true;
  check_worker_ = std::make_unique<BlockingWorker>(executor_);
  check_worker_->run(
      [rk = rk_, name = config_.topic, cancel = cancel_check_] { return describe_durability(rk, name, *cancel); },
      [this, alive = alive_](std::variant<TopicDurability, std::string> result) {
        if (!*alive) return;
        checking_ = false;
        check_worker_.reset();  // idle: its job has returned
        if (*cancel_check_) {
          // Stopped before it could tell: nothing to say.
        } else if (const auto* problem = std::get_if<std::string>(&result)) {
          logger_.warn("cannot check what topic '", config_.topic, "' keeps of each message (", *problem,
                       "); acks=all holds only as far as its replication factor and ", "min.insync.replicas");
        } else {
          const auto& found = std::get<TopicDurability>(result);
          replication_factor_.set(found.replication_factor);
          min_insync_replicas_.set(found.min_insync_replicas);
          const DurabilityAssessment a = assess_durability(config_, config_.topic, found);
          switch (a.verdict) {
            case DurabilityVerdict::holds:
              logger_.info("topic '", config_.topic, "': replication factor ", found.replication_factor,
                           ", min.insync.replicas ", found.min_insync_replicas);
              break;
            case DurabilityVerdict::single_copy:
              logger_.info(a.text);
              break;
            case DurabilityVerdict::broken:
              logger_.warn(a.text);
              break;
          }
        }
        // A stop() meanwhile left the handle for this moment.
        done_ = true;
        finished();
      });
}

void TopicAdmin::finished() {
  // A check in flight uses the handle; it calls this again when it returns.
  if (!rk_ || releasing_ || checking_) return;
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
  *cancel_check_ = true;
  settled_ = nullptr;
  if (rk_) return finished();
  if (!releasing_)
    boost::asio::post(executor_, [this, alive = alive_] {
      if (!*alive) return;
      if (auto done = std::exchange(on_stopped_, nullptr)) done();
    });
}

}  // namespace nudge::plugins::kafka
