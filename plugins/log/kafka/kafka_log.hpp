#pragma once

#include <functional>
#include <memory>

#include "config.hpp"
#include "consumer.hpp"
#include "nudge/sdk.hpp"
#include "producer.hpp"
#include "topic_admin.hpp"

namespace nudge::plugins::kafka {

/// The durable log on Kafka. Appends go to an idempotent producer (acks=all)
/// and are acknowledged from delivery reports; the consumer side reads the
/// topic in a consumer group and hands batches to the sink, storing offsets
/// only for confirmed batches. Everything runs on the event loop: librdkafka's
/// queues wake it through pipes; only handle destruction runs on a worker.
class KafkaLog final : public Log {
 public:
  KafkaLog(const Config& config, Context& context);
  ~KafkaLog() override;
  static ConfigSchema schema() { return KafkaConfig::schema(); }

  // Log
  Status start(const LogStartOptions& options) override;
  void append(const MessagePtr& message, Completion done) override;
  /// The consumer's backlog summed over its partitions (the consumer_lag gauge).
  std::optional<std::int64_t> consumer_lag() const override;
  /// The consumer's batches hold at most `max` records from the next one on.
  void set_max_batch_messages(std::size_t max) override;
  /// A consumer in a group of its own, reading `range` (see Consumer::replay).
  Status start_replay(const LogStartOptions& options, const LogReplay& range) override;
  std::optional<ReplayProgress> replay_progress() const override;
  // Plugin
  void stop(std::function<void()> done) override;
  /// Not ready while librdkafka finds all brokers down, until one is up again.
  Readiness readiness() const override;

  /// Tests only.
  Producer* producer() noexcept { return producer_.get(); }
  Consumer* consumer() noexcept { return consumer_.get(); }

 private:
  const KafkaConfig config_;
  /// A replay's config: config_ with the replay's group.
  std::optional<KafkaConfig> replay_config_;
  Context& context_;
  std::unique_ptr<TopicAdmin> admin_;
  std::unique_ptr<Producer> producer_;
  std::unique_ptr<Consumer> consumer_;
  bool started_ = false;
  bool stopping_ = false;
  // Declared last so it is destroyed first: a handle being destroyed on it
  // finishes while the clients above still exist.
  std::unique_ptr<BlockingWorker> worker_;
};

}  // namespace nudge::plugins::kafka
