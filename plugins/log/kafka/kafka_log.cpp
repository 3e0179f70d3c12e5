#include "kafka_log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

KafkaLog::KafkaLog(const Config& config, Context& context) : config_(KafkaConfig::from(config)), context_(context) {}

KafkaLog::~KafkaLog() {
  // The worker first (it finishes any handle it is destroying), then the
  // clients, which destroy what they still hold.
  worker_.reset();
  consumer_.reset();
  producer_.reset();
  admin_.reset();
}

void KafkaLog::set_max_batch_messages(std::size_t max) {
  if (consumer_) consumer_->set_max_batch(max);
}

std::optional<std::int64_t> KafkaLog::consumer_lag() const {
  if (!consumer_) return std::nullopt;
  return consumer_->lag();
}

Readiness KafkaLog::readiness() const {
  if (!started_) return Readiness::no("not started");
  for (const KafkaClient* client :
       {static_cast<const KafkaClient*>(producer_.get()), static_cast<const KafkaClient*>(consumer_.get())}) {
    if (client && client->brokers_down())
      return Readiness::no("all Kafka brokers are down (" + config_.brokers + "): " + client->brokers_down_reason());
  }
  if (consumer_)
    if (auto why = consumer_->held_reason()) return Readiness::no(std::move(*why));
  return Readiness::yes();
}

std::optional<ReplayProgress> KafkaLog::replay_progress() const {
  if (!consumer_) return std::nullopt;
  return consumer_->replay_progress();
}

Status KafkaLog::start_replay(const LogStartOptions& options, const LogReplay& range) {
  if (started_) return Status::error(StatusCode::internal, "the Kafka log was started twice");
  if (!options.consumer || options.produce)
    return Status::error(StatusCode::invalid_argument, "a replay reads the log into a sink and produces nothing");
  started_ = true;
  worker_ = std::make_unique<BlockingWorker>(context_.executor());
  KafkaConfig replay = config_;
  replay.group_id = range.group;
  if (replay.group_id.empty()) {
    // A new group each time (to the millisecond: two replays started in one
    // second must not share one): it has committed nothing, so it reads the whole range.
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    char millis[8];
    std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(ms));
    replay.group_id = config_.group_id + "-replay-" + stamp + millis;
  }
  if (replay.group_id == config_.group_id)
    return Status::error(StatusCode::invalid_argument,
                         "a replay must not read in the pipeline's own consumer group '" + config_.group_id +
                             "': its live workers would lose their place; name another with --group");
  replay_config_ = std::move(replay);
  consumer_ =
      std::make_unique<Consumer>(*replay_config_, context_, *worker_, *options.consumer, options.max_batch_messages);
  if (auto s = consumer_->start(); !s.ok()) return s;
  // The topic is read as it is: a replay creates nothing.
  consumer_->replay(range);
  return Status::success();
}

Status KafkaLog::start(const LogStartOptions& options) {
  if (started_) return Status::error(StatusCode::internal, "the Kafka log was started twice");
  started_ = true;
  worker_ = std::make_unique<BlockingWorker>(context_.executor());
  if (options.produce) {
    producer_ = std::make_unique<Producer>(config_, context_, *worker_);
    if (auto s = producer_->start(); !s.ok()) return s;
  }
  if (options.consumer) {
    consumer_ = std::make_unique<Consumer>(config_, context_, *worker_, *options.consumer, options.max_batch_messages);
    if (auto s = consumer_->start(); !s.ok()) return s;
  }
  if (config_.create_topic) {
    // The topic is made (if missing) in the background; the consumer joins
    // its group once that settled, so it never subscribes to a topic that is
    // about to appear. Produced messages wait in librdkafka meanwhile.
    std::vector<TopicSpec> topics{{config_.topic, config_.partitions}};
    // Few records ever land there; one partition keeps them in the order
    // they were met, for whoever reads them back.
    if (consumer_ && config_.on_undecodable == OnUndecodable::dead_letter)
      topics.push_back({config_.dead_letter_topic, 1});
    admin_ = std::make_unique<TopicAdmin>(config_, context_, *worker_, std::move(topics));
    auto s = admin_->start([this](bool) {
      if (consumer_) consumer_->subscribe();
    });
    if (!s.ok()) return s;
  } else {
    // The topic is managed elsewhere; what it keeps of each message is still looked at once.
    admin_ = std::make_unique<TopicAdmin>(config_, context_, *worker_, std::vector<TopicSpec>{});
    if (auto s = admin_->start(nullptr); !s.ok()) return s;
    if (consumer_) consumer_->subscribe();
  }
  context_.logger().info("Kafka log on '", config_.brokers, "', topic '", config_.topic, "'",
                         options.produce ? ", producing" : "",
                         options.consumer ? ", consuming in group '" + config_.group_id + "'" : "");
  return Status::success();
}

void KafkaLog::append(const MessagePtr& message, Completion done) {
  if (!producer_) {
    boost::asio::post(context_.executor(), [done = std::move(done)] {
      done(Status::error(StatusCode::internal, "the Kafka log was not started for producing"));
    });
    return;
  }
  producer_->append(message, std::move(done));
}

void KafkaLog::stop(std::function<void()> done) {
  if (stopping_) {
    boost::asio::post(context_.executor(), std::move(done));
    return;
  }
  stopping_ = true;
  // The producer drains and the consumer finishes its batch side by side;
  // `done` runs when the three are down.
  auto remaining = std::make_shared<int>(1 + (admin_ ? 1 : 0) + (producer_ ? 1 : 0) + (consumer_ ? 1 : 0));
  auto one_done = [remaining, done = std::move(done)] {
    if (--*remaining == 0) done();
  };
  if (admin_) admin_->stop(one_done);
  if (producer_) producer_->stop(one_done);
  if (consumer_) consumer_->stop(one_done);
  one_done();
}

}  // namespace nudge::plugins::kafka
