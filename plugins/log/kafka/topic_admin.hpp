#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "kafka_client.hpp"
#include "nudge/sdk/blocking_worker.hpp"
#include "queue_watcher.hpp"

namespace nudge::plugins::kafka {

/// A topic the log needs, made with `partitions` and the configured replication factor.
struct TopicSpec {
  std::string name;
  std::int64_t partitions = 1;
};

/// Makes sure the topics exist, through the Admin API on a short-lived
/// handle of its own: CreateTopics with the result on the handle's queue,
/// served on the event loop. An existing topic is left as it is. While the
/// brokers cannot be reached it tries again every few seconds; a refusal that
/// cannot change (replication factor larger than the cluster, no permission)
/// is logged once and ends it for that topic. Once the topic exists, its
/// replication factor and min.insync.replicas are compared, once, with the
/// config and the acks=all promise (assess_durability), and a topic that
/// cannot hold it is named in a warning.
class TopicAdmin final : public KafkaClient {
 public:
  TopicAdmin(const KafkaConfig& config, Context& context, BlockingWorker& worker, std::vector<TopicSpec> topics);
  ~TopicAdmin() override;

  /// Sends the first request. `settled(exist)` runs once, on the first
  /// answer: true when every topic now exists (made or found), false when
  /// that attempt failed for one (later retries may still make it). With no
  /// topics to make it only checks the topic's replication, and never calls
  /// `settled`.
  Status start(std::function<void(bool exist)> settled);
  /// Abandons any request in flight, destroys the handle on the worker, then `done`.
  void stop(std::function<void()> done);

 private:
  void request();
  void serve();
  void on_result(rd_kafka_event_t* event);
  void finished();
  /// Once the topic exists: describes its replication on the worker and
  /// logs what it cannot promise (assess_durability), then finished().
  void check_durability();

  BlockingWorker& worker_;
  std::vector<TopicSpec> pending_;  ///< not made or found yet, nor refused for good
  boost::asio::any_io_executor executor_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_queue_t* queue_ = nullptr;
  std::unique_ptr<QueueWatcher> watcher_;
  boost::asio::steady_timer retry_timer_;
  std::function<void(bool)> settled_;
  int attempts_ = 0;
  bool done_ = false;
  Gauge& replication_factor_;                     ///< as the brokers describe the topic; 0 until checked
  Gauge& min_insync_replicas_;                    ///< the topic's effective min.insync.replicas; 0 until checked
  std::unique_ptr<BlockingWorker> check_worker_;  ///< only while the check runs
  bool checking_ = false;
  /// Set by stop(): the check gives up at its next slice (100 ms) so the stop need not wait.
  std::shared_ptr<std::atomic<bool>> cancel_check_ = std::make_shared<std::atomic<bool>>(false);
  bool check_pending_ = true;  ///< the topic's replication not looked at yet
  bool refused_main_ = false;  ///< the topic cannot be made: nothing to check
  std::function<void()> on_stopped_;
  bool releasing_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace nudge::plugins::kafka
