#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "dead_letter.hpp"
#include "kafka_client.hpp"
#include "nudge/sdk/blocking_worker.hpp"
#include "nudge/sdk/log.hpp"
#include "queue_watcher.hpp"
#include "replay_plan.hpp"

namespace nudge::plugins::kafka {

/// The consuming side of the log: a group member that reads the topic,
/// decodes records into messages and hands them to the LogConsumer in
/// batches, one at a time, storing a batch's offsets only once the
/// LogConsumer confirmed it (auto commit then sends stored offsets to Kafka).
///
/// Two librdkafka queues are served, each woken through a pipe: the group
/// queue (rebalances, commits, errors, log lines), always drained, and the
/// records queue, to which every assigned partition is forwarded and from
/// which records are taken only while few wait here (two batches' worth).
/// What is not taken stays in librdkafka, whose prefetch limits then stop
/// fetching: backpressure without pausing partitions, while the group queue
/// keeps the member alive.
///
/// A record that cannot be decoded is never committed past unnoticed. With
/// on_undecodable = "dead-letter" it travels with its batch and is produced
/// to the dead-letter topic while the sink writes the rest; the batch's
/// offsets are stored only once both are confirmed, and a failed
/// dead-letter produce is retried with backoff, the batch (and everything
/// behind it) held meanwhile. With "stop" its partition is paused right
/// before it: what came before is written and committed, nothing at or past
/// it, and the consumer reports itself not ready.
class Consumer final : public KafkaClient {
 public:
  Consumer(const KafkaConfig& config, Context& context, BlockingWorker& worker, LogConsumer& sink,
           std::size_t max_batch_messages);
  /// Destroys the handle without the group goodbye if stop() did not finish.
  ~Consumer() override;

  /// Creates the handle; consuming starts with subscribe().
  Status start();
  /// Joins the group on the topic (once the topic exists, or once creating it failed).
  void subscribe();
  /// Instead of subscribe(): reads `range` of every partition (nudge
  /// replay), assigned by hand in the group this consumer was made with.
  /// Each partition's start and end are found on the worker; nothing at or
  /// past its end is handed over, and replay_progress() says when all are done.
  void replay(LogReplay range);
  /// Where a replay is; nullopt when this consumer does not replay.
  std::optional<ReplayProgress> replay_progress() const;
  /// Waits for the batch in flight (it is committed only if confirmed),
  /// leaves the group (stored offsets are committed), destroys the handle on
  /// the worker and calls `done`.
  void stop(std::function<void()> done);

  /// Records taken from librdkafka and not yet handed over (tests).
  std::size_t buffered() const noexcept { return buffer_.size(); }
  /// The backlog summed over owned partitions, as last measured (every
  /// tick, 200 ms, and on each assignment); nullopt before the first measure and
  /// while no owned partition can be measured. A partition is counted from
  /// the offset of the last batch the sink confirmed, else from where its
  /// consumption started (the group's committed offset, read from Kafka
  /// after the assignment); until that is known it is left out, never
  /// counted from 0.
  std::optional<std::int64_t> lag() const noexcept { return lag_; }
  /// Owned partitions left out of lag() at its last measure: where their
  /// consumption starts, or their watermarks, are not known yet (tests).
  std::size_t unmeasured_partitions() const noexcept { return unmeasured_; }
  /// The most records taken from librdkafka ahead of the sink.
  std::size_t buffer_limit() const noexcept { return 2 * max_batch_; }
  /// The most records one batch may hold, from the next batch on (a reload).
  void set_max_batch(std::size_t max) noexcept { max_batch_ = std::max<std::size_t>(1, max); }
  std::size_t max_batch() const noexcept { return max_batch_; }
  /// Why the consumer holds back what it owns: a partition stopped at an
  /// undecodable record, or dead-letter produces failing; nullopt otherwise.
  /// What readiness() reports.
  std::optional<std::string> held_reason() const;

 private:
  /// An undecodable record on its way to the dead-letter topic; shared by
  /// its entry and the produce in flight, which may outlive the batch.
  struct DeadLetter {
    enum class State {
      waiting,    ///< not produced yet, or its produce failed: produced (again) with its batch
      producing,  ///< a produce is in flight
      produced,   ///< the dead-letter topic has it (acks=all): it may be committed past
    };
    UndecodableRecord record;
    State state = State::waiting;
  };
  enum class Kind {
    message,      ///< decoded: handed to the sink
    dead_letter,  ///< undecodable: to the dead-letter topic, committed past once it is there
    stop,         ///< undecodable, on_undecodable = "stop": its offset is committed, nothing past it
  };
  /// One record read from the log.
  struct Entry {
    Kind kind = Kind::message;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::uint64_t epoch = 0;
    MessagePtr message;                       ///< Kind::message only
    std::shared_ptr<DeadLetter> dead_letter;  ///< Kind::dead_letter only
    std::chrono::steady_clock::time_point arrived{};
    std::size_t bytes = 0;
  };
  /// A partition this member owns. `epoch` changes on every assignment, so
  /// work from an earlier ownership never stores offsets for a later one.
  struct Assigned {
    std::uint64_t epoch = 0;
    std::int64_t stored = -1;      ///< next offset stored for commit; -1 none yet
    bool received = false;         ///< a record of it arrived since it was assigned
    std::int64_t stopped_at = -1;  ///< the undecodable record it stopped at (on_undecodable = "stop"); -1 none
    std::string stop_error;        ///< why that record cannot be decoded
    /// Where consumption of this assignment starts: what its lag counts
    /// from until a batch of it is stored. librdkafka reports no position
    /// before the first record, so it is read from Kafka (look_up_starts).
    enum class Start {
      unknown,    ///< not read yet, or the read failed: the partition is left out of the lag
      committed,  ///< the group's committed offset, `committed`
      earliest,   ///< nothing committed: consumption starts at the log start (auto.offset.reset)
    };
    Start start = Start::unknown;
    std::int64_t committed = -1;
  };
  /// What a read of committed offsets answered, for the assignments it was asked about.
  struct StartLookup {
    struct Partition {
      std::int32_t partition = -1;
      std::uint64_t epoch = 0;
      rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
      std::int64_t offset = -1;  ///< RD_KAFKA_OFFSET_INVALID: the group committed nothing there
    };
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    std::vector<Partition> partitions;
  };
  struct InFlight {
    std::uint64_t id = 0;
    std::vector<Entry> entries;
    bool sink_confirmed = false;  ///< the sink confirmed the messages (or the batch had none)
  };

  /// Drains the group queue.
  void serve_events();
  /// Takes records while there is room for them.
  void pull_records();
  void on_record(const rd_kafka_message_t* record);
  void on_consume_error(const rd_kafka_message_t* record);
  void maybe_deliver();
  void schedule_deliver();
  void on_batch_done(std::uint64_t id, Status status);
  /// Stores the in-flight batch's offsets and moves on once the sink and the
  /// dead-letter topic both have their part; at shutdown, gives up on dead
  /// letters waiting for a retry (they stay uncommitted).
  void finish_in_flight();
  /// Produces the in-flight batch's dead letters not yet produced nor in flight.
  void produce_dead_letters();
  void on_dead_letter_report(DeadLetter& letter, Status status);
  void schedule_dead_letter_retry();
  /// Stops `partition` at the undecodable record at `offset` (on_undecodable = "stop").
  void stop_partition(std::int32_t partition, Assigned& owned, std::int64_t offset, const std::string& error);
  /// True while this member owns the entry's partition in the entry's epoch.
  bool owns(const Entry& entry) const;
  /// One past each partition's last record of `entries`, but never past an
  /// undecodable record that is not in the dead-letter topic, nor past a stop.
  void store_offsets(const std::vector<Entry>& entries);
  rd_kafka_topic_partition_list_t* assignment_list() const;
  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions);
  void on_commit(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets);
  /// Makes `partition` (-1: every partition) a candidate for restart_idle_partitions(), soon.
  void schedule_restart(std::int32_t partition);
  /// Assigns again the candidate partitions from which no record came yet.
  void restart_idle_partitions();
  /// Sends `partition`'s records to records_ (before it starts fetching).
  void forward_to_records(std::int32_t partition);
  void tick();
  void update_lag();
  /// Reads, on the worker (rd_kafka_committed blocks), the group's committed
  /// offsets of the owned partitions whose start is unknown; one read at a time.
  void look_up_starts();
  void on_starts(StartLookup answer);
  /// Where `owned`'s backlog begins, from what is known of it; nullopt when nothing is.
  static std::optional<std::int64_t> next_to_confirm(const Assigned& owned, std::int64_t low, std::int64_t position);
  /// The partition_lag gauge of `partition`, made on first use.
  Gauge& partition_lag(std::int32_t partition);
  /// A replay's plan is known (or could not be made): assign its partitions.
  void on_replay_facts(std::vector<PartitionFacts> facts, std::string error);
  /// A partition that passed its end with nothing of it left to write is done.
  void finish_replayed_partitions();
  void begin_close();
  void finish_close();
  /// Stops the dead-letter producer if there is one, then calls on_stopped_.
  void finish_stop();

  /// Destroys `rk` with `flags` (blocks: on the worker, or in the
  /// destructor), unless librdkafka 2.0.2 would abort doing so (see the .cpp).
  static void destroy_handle(rd_kafka_t* rk, int flags, bool may_lack_assignor_state, Logger& logger);

  static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                           void* opaque);
  static void commit_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
                        void* opaque);

  BlockingWorker& worker_;
  boost::asio::any_io_executor executor_;
  LogConsumer& sink_;
  std::size_t max_batch_;
  static constexpr std::size_t kMaxBufferedBytes = 32 * 1024 * 1024;
  const std::chrono::milliseconds batch_wait_;

  rd_kafka_t* rk_ = nullptr;
  rd_kafka_queue_t* queue_ = nullptr;  // the group queue
  std::unique_ptr<QueueWatcher> watcher_;
  rd_kafka_queue_t* records_ = nullptr;  // every assigned partition forwards here
  std::unique_ptr<QueueWatcher> records_watcher_;
  bool subscribed_ = false;
  bool ever_assigned_ = false;  ///< the group has handed this member an assignment

  std::map<std::int32_t, Assigned> assigned_;
  std::uint64_t next_epoch_ = 0;
  std::deque<Entry> buffer_;
  std::size_t buffered_bytes_ = 0;
  std::optional<InFlight> in_flight_;
  std::uint64_t next_batch_id_ = 0;
  bool deliver_posted_ = false;
  std::chrono::milliseconds retry_backoff_{0};
  std::chrono::steady_clock::time_point retry_at_{};

  std::unique_ptr<DeadLetterProducer> dead_letters_;  // made for the first dead letter
  boost::asio::steady_timer dead_letter_timer_;
  bool dead_letter_retry_armed_ = false;
  std::chrono::milliseconds dead_letter_backoff_{0};
  /// Since when dead-letter produces fail (none confirmed since); what they failed with.
  std::optional<std::chrono::steady_clock::time_point> dead_letter_failing_since_;
  std::string dead_letter_error_;
  std::set<std::int32_t> paused_;  // stopped at an undecodable record; resumed when assigned again

  boost::asio::steady_timer batch_timer_;
  bool batch_timer_armed_ = false;
  boost::asio::steady_timer tick_timer_;
  // Partitions librdkafka may have left unstarted (see restart_idle_partitions).
  boost::asio::steady_timer restart_timer_;
  bool restart_armed_ = false;
  bool restart_all_ = false;
  std::set<std::int32_t> restart_candidates_;
  std::set<std::int32_t> detached_;  // unassigned by restart_idle_partitions, to be assigned again
  bool start_lookup_in_flight_ = false;
  boost::asio::steady_timer start_lookup_timer_;  // a failed read of committed offsets is retried
  bool start_lookup_retry_armed_ = false;

  std::optional<LogReplay> replay_;  // set by replay()
  ReplayProgress::State replay_state_ = ReplayProgress::State::planning;
  std::string replay_error_;
  std::vector<std::string> replay_notes_;
  /// Each partition's range, and how far the sink confirmed it (`reached`).
  std::map<std::int32_t, ReplayPartition> replay_plan_;
  bool replay_committed_ = false;  // the final commit before leaving ran

  bool stopping_ = false;
  bool closing_ = false;
  std::chrono::steady_clock::time_point stop_deadline_{};
  std::function<void()> on_stopped_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  Counter& consumed_;
  Counter& batches_;
  Counter& batch_failures_;
  Counter& commits_;
  Counter& commit_errors_;
  Counter& decode_errors_;
  Counter& dead_lettered_;
  Counter& dead_letter_errors_;
  Counter& partition_stops_;
  Counter& rebalances_;
  Counter& partition_restarts_;
  Counter& start_lookup_errors_;
  Gauge& assigned_partitions_;
  Gauge& consumer_lag_;
  /// One per partition ever owned; revoked ones read 0.
  std::map<std::int32_t, Gauge*> partition_lag_;
  std::optional<std::int64_t> lag_;
  std::size_t unmeasured_ = 0;
};

}  // namespace nudge::plugins::kafka
