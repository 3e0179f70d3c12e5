#include "kafka_log.hpp"

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
  for (const KafkaClient* client : {static_cast<const KafkaClient*>(producer_.get()),
                                    static_cast<const KafkaClient*>(consumer_.get())}) {
    if (client && client->brokers_down())
      return Readiness::no("all Kafka brokers are down (" + config_.brokers + "): " + client->brokers_down_reason());
  }
  if (consumer_)
    if (auto why = consumer_->held_reason()) return Readiness::no(std::move(*why));
  return Readiness::yes();
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
    consumer_ = std::make_unique<Consumer>(config_, context_, *worker_, *options.consumer,
                                           options.max_batch_messages);
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
