#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kafka_client.hpp"
#include "nudge/sdk/blocking_worker.hpp"
#include "queue_watcher.hpp"

namespace nudge::plugins::kafka {

/// Headers a dead-lettered record carries besides its own, saying where it
/// came from and why it is there (values are text: decimal numbers, names).
namespace dead_letter_header {
inline constexpr const char* kTopic = "nudge.dead-letter.topic";
inline constexpr const char* kPartition = "nudge.dead-letter.partition";
inline constexpr const char* kOffset = "nudge.dead-letter.offset";
/// The record's timestamp, milliseconds since the epoch.
inline constexpr const char* kTimestamp = "nudge.dead-letter.timestamp";
/// "create", "log-append" or "none": what the timestamp is.
inline constexpr const char* kTimestampType = "nudge.dead-letter.timestamp-type";
inline constexpr const char* kGroup = "nudge.dead-letter.group";
/// Why it could not be decoded, in the decoder's words.
inline constexpr const char* kError = "nudge.dead-letter.error";
}  // namespace dead_letter_header

/// A record the consumer could not decode, kept byte for byte: its key,
/// value and headers (null ones stay null), and where it was read.
struct UndecodableRecord {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  std::int64_t timestamp_ms = -1;
  rd_kafka_timestamp_type_t timestamp_type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  std::string error;

  /// Copies what `record` (a consumed message of `topic`) holds.
  static UndecodableRecord from(const rd_kafka_message_t* record, const std::string& topic, std::string error);
};

/// Writes undecodable records to the dead-letter topic: a producer of its
/// own (acks=all), made on the first record, so that a consumer that never
/// meets one never connects for it, and a pipeline without a producer side
/// still has one. Not idempotent: a retried record may land there twice
/// (as it may after a crash before the commit); the provenance headers tell
/// the copies apart from different records. One request in flight at a time
/// keeps the records in the order they were met.
///
/// Threading: everything on the executor; completions run from the
/// handle's queue, served there.
class DeadLetterProducer final : public KafkaClient {
 public:
  DeadLetterProducer(const KafkaConfig& config, Context& context, BlockingWorker& worker, std::string group);
  /// Destroys the handle if stop() did not; pending completions are dropped.
  ~DeadLetterProducer() override;

  /// Produces `record` to the dead-letter topic, its key, value and headers
  /// as they are, with the provenance headers added. `done` runs once: ok
  /// only when the brokers stored it (acks=all), else an error (the caller
  /// retries).
  void produce(const UndecodableRecord& record, Completion done);
  /// Gives up on what is not confirmed yet (those complete with an error),
  /// destroys the handle on the worker, then calls `done`.
  void stop(std::function<void()> done);

 private:
  Status create_handle();
  void serve();
  void on_delivery(const rd_kafka_message_t* report);
  void fail_pending(const std::string& why);

  static void dr_msg_cb(rd_kafka_t* rk, const rd_kafka_message_t* report, void* opaque);

  BlockingWorker& worker_;
  boost::asio::any_io_executor executor_;
  const std::string group_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_queue_t* queue_ = nullptr;
  std::unique_ptr<QueueWatcher> watcher_;
  std::map<std::uint64_t, Completion> pending_;  ///< by the id passed as the record's opaque
  std::uint64_t next_id_ = 0;
  bool serving_ = false;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace nudge::plugins::kafka
