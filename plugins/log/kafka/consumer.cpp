#include "consumer.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>

#include <boost/asio/post.hpp>

namespace nudge::plugins::kafka {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kTick = std::chrono::milliseconds(200);
// The runtime ends a batch quickly at shutdown (it cancels retries); this
// only guards against a LogConsumer that never answers.
constexpr auto kBatchStopTimeout = std::chrono::seconds(30);
constexpr auto kCloseTimeout = std::chrono::seconds(20);
constexpr auto kMaxRetryBackoff = std::chrono::milliseconds(5000);
constexpr auto kMinRetryBackoff = std::chrono::milliseconds(250);
// How soon partitions whose committed offsets could not be read are assigned
// again (errors of one moment coalesce; a coordinator that stays away is not
// asked more than twice a second).
constexpr auto kRestartDelay = std::chrono::milliseconds(500);
// A read of committed offsets blocks the worker (shared with handle
// destruction at shutdown) for at most this; a failed one is tried again
// after kStartLookupRetry.
constexpr auto kStartLookupTimeout = std::chrono::milliseconds(5000);
constexpr auto kStartLookupRetry = std::chrono::milliseconds(1000);

struct PartitionList {
  rd_kafka_topic_partition_list_t* list;
  /// Takes ownership of `owned`.
  explicit PartitionList(rd_kafka_topic_partition_list_t* owned) : list(owned) {}
  ~PartitionList() { rd_kafka_topic_partition_list_destroy(list); }
  PartitionList(const PartitionList&) = delete;
  PartitionList& operator=(const PartitionList&) = delete;
};

std::string describe(const rd_kafka_topic_partition_list_t* partitions) {
  std::ostringstream out;
  out << '[';
  for (int i = 0; i < partitions->cnt; ++i) out << (i ? ", " : "") << partitions->elems[i].partition;
  out << ']';
  return out.str();
}

}  // namespace

Consumer::Consumer(const KafkaConfig& config, Context& context, BlockingWorker& worker, LogConsumer& sink,
                   std::size_t max_batch_messages)
    : KafkaClient(config, context, "consumer"),
      worker_(worker),
      executor_(context.executor()),
      sink_(sink),
      max_batch_(std::max<std::size_t>(1, max_batch_messages)),
      batch_wait_(config.batch_wait_ms),
      dead_letter_timer_(context.executor()),
      batch_timer_(context.executor()),
      tick_timer_(context.executor()),
      restart_timer_(context.executor()),
      start_lookup_timer_(context.executor()),
      consumed_(context.metrics().counter("consumed", "Records read from the topic")),
      batches_(context.metrics().counter("batches", "Batches the sink confirmed (their offsets are then stored)")),
      batch_failures_(context.metrics().counter("batch_failures", "Batches the sink failed (not committed)")),
      commits_(context.metrics().counter("commits", "Offset commits Kafka confirmed")),
      commit_errors_(context.metrics().counter("commit_errors", "Offset commits that failed")),
      decode_errors_(context.metrics().counter(
          "decode_errors", "Undecodable records read (dead-lettered, or stopping their partition)")),
      dead_lettered_(context.metrics().counter(
          "dead_lettered", "Undecodable records the dead-letter topic confirmed (acks=all); then committed past")),
      dead_letter_errors_(context.metrics().counter(
          "dead_letter_errors", "Dead-letter produces that failed (retried; nothing past the record committed)")),
      partition_stops_(context.metrics().counter(
          "partition_stops", "Undecodable records that stopped their partition (on_undecodable = \"stop\")")),
      rebalances_(context.metrics().counter("rebalances", "Partition assignments and revocations")),
      partition_restarts_(context.metrics().counter(
          "partition_restarts", "Partitions assigned again because Kafka did not return their committed offsets")),
      start_lookup_errors_(context.metrics().counter(
          "start_lookup_errors",
          "Reads of committed offsets (where a new assignment's lag counts from) that failed; retried")),
      assigned_partitions_(context.metrics().gauge("assigned_partitions", "Partitions this member owns")),
      consumer_lag_(
          context.metrics().gauge("consumer_lag", "Records in owned partitions not yet confirmed by the sink")) {}

Consumer::~Consumer() {
  *alive_ = false;
  if (rk_) {
    watcher_.reset();
    records_watcher_.reset();
    if (queue_) rd_kafka_queue_destroy(queue_);
    if (records_) rd_kafka_queue_destroy(records_);
    // stop() did not finish: no group goodbye (it would block and serve
    // callbacks into a half-destroyed object). Uncommitted work is redelivered.
    destroy_handle(rk_, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE, subscribed_ && !ever_assigned_, logger_);
  }
}

void Consumer::destroy_handle(rd_kafka_t* rk, int flags, bool may_lack_assignor_state, Logger& logger) {
  // librdkafka 2.0.2 (Debian 12's) aborts the process in rd_kafka_destroy
  // ("rd_kafka_sticky_assignor_state_destroy: Assertion `assignor_state'
  // failed") when a cooperative-sticky member got its JoinGroup answered (so
  // its group has an assignor) but never a SyncGroup (so the assignor has no
  // state yet): librdkafka #4312, fixed in 2.3.0. An instance hits it when it
  // stops while Kafka stalls in the middle of its first join (a fault test
  // froze the broker then). The public API cannot tell that state apart, so
  // a member that subscribed and was never handed partitions keeps its
  // handle until the process exits; it has left the group already when
  // stop() finished. Reachable from here, so leak checkers stay quiet.
  if (may_lack_assignor_state) {
    static std::mutex mutex;
    static std::vector<rd_kafka_t*> kept;
    const std::lock_guard lock(mutex);
    kept.push_back(rk);
    logger.info(
        "not destroying the Kafka consumer: it never received an assignment, and this librdkafka "
        "aborts when such a handle is destroyed (librdkafka issue 4312); the process exit releases it");
    return;
  }
  rd_kafka_destroy_flags(rk, flags);
}

Status Consumer::start() {
  std::string error;
  rd_kafka_conf_t* conf = base_conf(error);
  if (!conf) return Status::error(StatusCode::invalid_argument, error);
  const bool ok =
      set(conf, "group.id", config_.group_id, error) &&
      // Offsets are stored only for confirmed batches; librdkafka
      // commits what is stored every second, on revoke and on close.
      set(conf, "enable.auto.commit", "true", error) && set(conf, "enable.auto.offset.store", "false", error) &&
      set(conf, "auto.commit.interval.ms", "1000", error) && set(conf, "auto.offset.reset", "earliest", error) &&
      set(conf, "partition.assignment.strategy", "cooperative-sticky", error) &&
      set(conf, "session.timeout.ms", std::to_string(config_.session_timeout_ms), error) &&
      set(conf, "heartbeat.interval.ms", std::to_string(std::min<std::int64_t>(3000, config_.session_timeout_ms / 3)),
          error) &&
      set(conf, "enable.partition.eof", "false", error) && set(conf, "allow.auto.create.topics", "false", error) &&
      // What librdkafka prefetches (records not taken yet) is
      // bounded by this, across partitions.
      set(conf, "queued.max.messages.kbytes", "32768", error);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return Status::error(StatusCode::invalid_argument, error);
  }
  rd_kafka_conf_set_rebalance_cb(conf, &Consumer::rebalance_cb);
  rd_kafka_conf_set_offset_commit_cb(conf, &Consumer::commit_cb);
  rk_ = make_handle(RD_KAFKA_CONSUMER, conf, error);
  if (!rk_) return Status::error(StatusCode::invalid_argument, error);
  // Everything (log lines, errors, rebalances, records) arrives on one queue.
  rd_kafka_poll_set_consumer(rk_);
  queue_ = rd_kafka_queue_get_consumer(rk_);
  watcher_ = std::make_unique<QueueWatcher>(executor_, queue_, [this] { serve_events(); });
  if (auto s = watcher_->start(); !s.ok()) return s;
  records_ = rd_kafka_queue_new(rk_);
  records_watcher_ = std::make_unique<QueueWatcher>(executor_, records_, [this] { pull_records(); });
  if (auto s = records_watcher_->start(); !s.ok()) return s;
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (*alive && !ec) tick();
  });
  return Status::success();
}

void Consumer::subscribe() {
  if (!rk_ || subscribed_ || stopping_) return;
  PartitionList topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.list, config_.topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(rk_, topics.list); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    logger_.error("cannot subscribe to topic '", config_.topic, "': ", rd_kafka_err2str(err));
    return;
  }
  subscribed_ = true;
  logger_.info("consuming topic '", config_.topic, "' in group '", config_.group_id, "'");
}

void Consumer::serve_events() {
  if (!rk_) return;
  bool more = true;
  for (int i = 0; i < 2000; ++i) {
    // Records arrive on records_; one may land here only in the moment
    // between an assignment and its forwarding, and is handled the same.
    rd_kafka_message_t* event = rd_kafka_consumer_poll(rk_, 0);
    if (!event) {
      more = false;
      break;
    }
    if (event->err) on_consume_error(event);
    else on_record(event);
    rd_kafka_message_destroy(event);
  }
  if (more && watcher_) watcher_->poke();
  if (closing_) {
    if (rd_kafka_consumer_closed(rk_)) finish_close();
    return;
  }
  maybe_deliver();
}

void Consumer::pull_records() {
  if (!rk_ || closing_) return;
  // Take only what fits; the rest waits in librdkafka (which then stops
  // fetching at its prefetch limit), and is taken after the next batch.
  std::size_t taken = 0;
  while (buffer_.size() < buffer_limit() && buffered_bytes_ < kMaxBufferedBytes) {
    rd_kafka_message_t* record = rd_kafka_consume_queue(records_, 0);
    if (!record) break;
    if (record->err) on_consume_error(record);
    else on_record(record);
    rd_kafka_message_destroy(record);
    if (++taken == 2000) {
      records_watcher_->poke();  // come back, let others run
      break;
    }
  }
  maybe_deliver();
}

void Consumer::on_record(const rd_kafka_message_t* record) {
  const auto found = assigned_.find(record->partition);
  if (found == assigned_.end() || closing_) return;  // not ours (any more): redelivered to the owner
  Assigned& owned = found->second;
  if (replay_) {
    if (auto range = replay_plan_.find(record->partition);
        range != replay_plan_.end() && record->offset >= range->second.end) {
      // Past the replay's end: not handed over, and nothing more is fetched.
      if (!std::exchange(range->second.past_end, true)) {
        PartitionList list(rd_kafka_topic_partition_list_new(1));
        rd_kafka_topic_partition_list_add(list.list, config_.topic.c_str(), record->partition);
        rd_kafka_pause_partitions(rk_, list.list);
      }
      return;
    }
  }
  // Stopped at an undecodable record: what follows it waits for a restart
  // (or the next owner), which reads it again from the committed offset.
  if (owned.stopped_at >= 0) return;
  owned.received = true;
  consumed_.add();
  Entry entry;
  entry.partition = record->partition;
  entry.offset = record->offset;
  entry.epoch = owned.epoch;
  entry.arrived = Clock::now();
  entry.bytes = record->len;
  std::shared_ptr<Message> message;
  const std::string_view bytes(static_cast<const char*>(record->payload), record->payload ? record->len : 0);
  if (auto status = decode_envelope(bytes, message); status.ok()) {
    message->log_position = LogPosition{record->partition, record->offset};
    entry.message = std::move(message);
  } else {
    // It will never decode in this build; committing past it would lose a
    // message its sender was told is stored (a newer build may have written it).
    decode_errors_.add();
    switch (config_.on_undecodable) {
      case OnUndecodable::dead_letter: {
        entry.kind = Kind::dead_letter;
        entry.dead_letter = std::make_shared<DeadLetter>();
        entry.dead_letter->record = UndecodableRecord::from(record, config_.topic, status.message());
        std::uint64_t suppressed = 0;
        if (limiter_.allow("decode", suppressed))
          logger_.warn("an undecodable record at partition ", record->partition, " offset ", record->offset,
                       " of topic '", config_.topic, "' (", status.message(), ") goes to the dead-letter topic '",
                       config_.dead_letter_topic, "'; it is committed past once Kafka has it there",
                       suppressed ? " (" + std::to_string(suppressed) + " more since the last such line)" : "");
        break;
      }
      case OnUndecodable::stop:
        entry.kind = Kind::stop;
        stop_partition(record->partition, owned, record->offset, status.message());
        break;
    }
  }
  buffered_bytes_ += entry.bytes;
  buffer_.push_back(std::move(entry));
}

void Consumer::stop_partition(std::int32_t partition, Assigned& owned, std::int64_t offset, const std::string& error) {
  owned.stopped_at = offset;
  owned.stop_error = error;
  partition_stops_.add();
  // Fetching further would only fill memory with records that must wait.
  // Records already taken stay: they come before it.
  PartitionList list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.list, config_.topic.c_str(), partition);
  if (const auto err = rd_kafka_pause_partitions(rk_, list.list); err != RD_KAFKA_RESP_ERR_NO_ERROR)
    logger_.debug("cannot pause partition ", partition, ": ", rd_kafka_err2str(err));
  paused_.insert(partition);
  std::uint64_t suppressed = 0;
  if (limiter_.allow("stop", suppressed))
    logger_.error(
        "partition ", partition, " of topic '", config_.topic, "' stopped at offset ", offset,
        ": the record there cannot be decoded (", error,
        "); on_undecodable = \"stop\" commits nothing at or past it. Run a build that reads it, or set "
        "on_undecodable = \"dead-letter\", and restart",
        suppressed ? " (" + std::to_string(suppressed) + " more partitions stopped since the last such line)" : "");
}

std::optional<std::string> Consumer::held_reason() const {
  const std::pair<const std::int32_t, Assigned>* first = nullptr;
  std::size_t stopped = 0;
  for (const auto& entry : assigned_) {
    if (entry.second.stopped_at < 0) continue;
    if (!first) first = &entry;
    ++stopped;
  }
  if (first)
    return "partition " + std::to_string(first->first) + " of topic '" + config_.topic + "' is stopped at offset " +
           std::to_string(first->second.stopped_at) + ": the record there cannot be decoded (" +
           first->second.stop_error +
           "); nothing at or past it is committed. Run a build that reads it, or set on_undecodable = "
           "\"dead-letter\", and restart" +
           (stopped > 1 ? " (" + std::to_string(stopped - 1) + " more partitions stopped)" : "");
  if (dead_letter_failing_since_) {
    std::string where;
    if (in_flight_)
      for (const auto& e : in_flight_->entries)
        if (e.kind == Kind::dead_letter && e.dead_letter->state != DeadLetter::State::produced) {
          where = " (partition " + std::to_string(e.partition) + " offset " + std::to_string(e.offset) + ")";
          break;
        }
    char failing[32];
    std::snprintf(failing, sizeof failing, "%.1f",
                  std::chrono::duration<double>(Clock::now() - *dead_letter_failing_since_).count());
    return "cannot write an undecodable record" + where + " to the dead-letter topic '" + config_.dead_letter_topic +
           "' (failing for " + failing + " s: " + dead_letter_error_ +
           "); nothing past it is committed, and no further batch is handed over";
  }
  return std::nullopt;
}

void Consumer::on_consume_error(const rd_kafka_message_t* record) {
  if (record->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
  // An error that is not about a fetch position may be a failed read of the
  // committed offsets (OffsetFetch): librdkafka then leaves those partitions
  // assigned but never starts fetching them, until they are assigned again.
  if (record->offset == RD_KAFKA_OFFSET_INVALID) schedule_restart(record->rkt ? record->partition : -1);
  std::uint64_t suppressed = 0;
  if (!limiter_.allow(std::string("consume:") + rd_kafka_err2name(record->err), suppressed)) return;
  logger_.warn("Kafka consumer: ", rd_kafka_message_errstr(record), " (", rd_kafka_err2name(record->err),
               suppressed ? "; " + std::to_string(suppressed) + " more since the last such line)" : ")");
}

void Consumer::schedule_deliver() {
  if (deliver_posted_) return;
  deliver_posted_ = true;
  boost::asio::post(executor_, [this, alive = alive_] {
    if (!*alive) return;
    deliver_posted_ = false;
    pull_records();  // then maybe_deliver()
  });
}

void Consumer::maybe_deliver() {
  if (in_flight_ || stopping_ || buffer_.empty()) return;
  const auto now = Clock::now();
  // Hand over what is there once the oldest record waited batch_wait_ms (or
  // the batch is full); after a failed batch, not before its backoff.
  auto ready_at = std::max(buffer_.front().arrived + batch_wait_, retry_at_);
  if (buffer_.size() >= max_batch_) ready_at = retry_at_;
  if (now < ready_at) {
    if (!batch_timer_armed_) {
      batch_timer_armed_ = true;
      batch_timer_.expires_at(ready_at);
      batch_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
        if (!*alive || ec) return;
        batch_timer_armed_ = false;
        maybe_deliver();
      });
    }
    return;
  }
  std::vector<Entry> entries;
  auto batch = std::make_shared<Batch>();
  while (!buffer_.empty() && batch->size() < max_batch_) {
    Entry entry = std::move(buffer_.front());
    buffer_.pop_front();
    buffered_bytes_ -= entry.bytes;
    if (entry.kind == Kind::message) batch->push_back(entry.message);
    entries.push_back(std::move(entry));
  }
  const std::uint64_t id = ++next_batch_id_;
  // Only undecodable records: nothing for the sink; the batch still waits
  // for its dead letters before its offsets are stored.
  in_flight_ = InFlight{id, std::move(entries), batch->empty()};
  schedule_deliver();  // refill the room this batch made (nothing is handed over meanwhile)
  // Side by side with the sink's write: both must be confirmed before the commit.
  produce_dead_letters();
  if (batch->empty()) return finish_in_flight();
  sink_.on_batch(std::move(batch), [this, alive = alive_, id](Status status) {
    if (!*alive) return;
    // Never re-enter the sink from inside its own call.
    boost::asio::post(executor_, [this, alive, id, status = std::move(status)]() mutable {
      if (*alive) on_batch_done(id, std::move(status));
    });
  });
}

void Consumer::on_batch_done(std::uint64_t id, Status status) {
  if (!in_flight_ || in_flight_->id != id) {
    if (id > next_batch_id_ || (in_flight_ && id > in_flight_->id))
      logger_.error("a batch was confirmed that is not in flight (a LogConsumer bug)");
    else logger_.debug("ignoring a late or repeated answer for batch ", id);
    return;
  }
  if (status.ok()) {
    batches_.add();
    retry_backoff_ = std::chrono::milliseconds(0);
    retry_at_ = {};
    in_flight_->sink_confirmed = true;
    return finish_in_flight();
  }
  InFlight finished = std::move(*in_flight_);
  in_flight_.reset();
  batch_failures_.add();
  if (stopping_) {
    logger_.info("the sink did not write the last batch (", status.message(),
                 "); it stays uncommitted and is delivered again after a restart");
  } else {
    // Deliver the same records again, first, after a backoff. Records of
    // partitions revoked meanwhile are dropped: their next owner reads them.
    // Dead letters keep their state: one already produced is not produced again.
    retry_backoff_ = std::min<std::chrono::milliseconds>(
        kMaxRetryBackoff, std::max<std::chrono::milliseconds>(kMinRetryBackoff, 2 * retry_backoff_));
    retry_at_ = Clock::now() + retry_backoff_;
    logger_.warn("the sink failed a batch of ", finished.entries.size(), " records (", status.message(),
                 "); delivering it again in ", retry_backoff_.count(), " ms");
    for (auto it = finished.entries.rbegin(); it != finished.entries.rend(); ++it) {
      if (owns(*it)) {
        buffered_bytes_ += it->bytes;
        buffer_.push_front(std::move(*it));
      }
    }
  }
  if (stopping_) return begin_close();
  // Room again: take what waits in librdkafka (no wake-up comes for records
  // that were already there), then hand over the next batch.
  schedule_deliver();
}

void Consumer::finish_in_flight() {
  if (!in_flight_ || !in_flight_->sink_confirmed) return;
  bool given_up = false;
  for (const auto& e : in_flight_->entries) {
    // A revoked partition's dead letter is its next owner's (which reads it again).
    if (e.kind != Kind::dead_letter || !owns(e)) continue;
    switch (e.dead_letter->state) {
      case DeadLetter::State::produced:
        break;
      case DeadLetter::State::producing:
        return;  // its report comes
      case DeadLetter::State::waiting:
        if (!stopping_) return;  // its retry comes
        given_up = true;
        break;
    }
  }
  InFlight finished = std::move(*in_flight_);
  in_flight_.reset();
  // Stored up to the first dead letter not in its topic, if one was given up on.
  store_offsets(finished.entries);
  if (given_up) {
    logger_.warn("stopping with undecodable records not yet in the dead-letter topic '", config_.dead_letter_topic,
                 "': they stay uncommitted and are read again after a restart");
  } else {
    dead_letter_failing_since_.reset();
    dead_letter_backoff_ = std::chrono::milliseconds(0);
  }
  if (stopping_) return begin_close();
  schedule_deliver();
}

void Consumer::produce_dead_letters() {
  if (!in_flight_ || stopping_) return;
  for (auto& e : in_flight_->entries) {
    if (e.kind != Kind::dead_letter || e.dead_letter->state != DeadLetter::State::waiting || !owns(e)) continue;
    if (!dead_letters_)
      dead_letters_ = std::make_unique<DeadLetterProducer>(config_, context_, worker_, config_.group_id);
    e.dead_letter->state = DeadLetter::State::producing;
    // The letter, not the entry: the batch may go back to the buffer (the
    // sink failed it) while the produce is in flight.
    dead_letters_->produce(e.dead_letter->record, [this, alive = alive_, letter = e.dead_letter](Status status) {
      if (*alive) on_dead_letter_report(*letter, std::move(status));
    });
  }
}

void Consumer::on_dead_letter_report(DeadLetter& letter, Status status) {
  if (status.ok()) {
    letter.state = DeadLetter::State::produced;
    dead_lettered_.add();
  } else {
    letter.state = DeadLetter::State::waiting;
    dead_letter_errors_.add();
    if (!dead_letter_failing_since_) dead_letter_failing_since_ = Clock::now();
    dead_letter_error_ = status.message();
    if (!stopping_) schedule_dead_letter_retry();
    std::uint64_t suppressed = 0;
    if (limiter_.allow("dead-letter", suppressed))
      logger_.warn("cannot write the undecodable record at partition ", letter.record.partition, " offset ",
                   letter.record.offset, " to the dead-letter topic '", config_.dead_letter_topic, "' (",
                   status.message(), "); nothing past it is committed; trying again in ", dead_letter_backoff_.count(),
                   " ms",
                   suppressed ? " (" + std::to_string(suppressed) + " more failures since the last such line)" : "");
  }
  finish_in_flight();
}

void Consumer::schedule_dead_letter_retry() {
  // One round of retries per backoff, however many records of the batch failed.
  if (dead_letter_retry_armed_) return;
  dead_letter_retry_armed_ = true;
  dead_letter_backoff_ = std::min<std::chrono::milliseconds>(
      kMaxRetryBackoff, std::max<std::chrono::milliseconds>(kMinRetryBackoff, 2 * dead_letter_backoff_));
  dead_letter_timer_.expires_after(dead_letter_backoff_);
  dead_letter_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (!*alive) return;
    dead_letter_retry_armed_ = false;
    if (!ec) produce_dead_letters();
  });
}

bool Consumer::owns(const Entry& entry) const {
  const auto owned = assigned_.find(entry.partition);
  return owned != assigned_.end() && owned->second.epoch == entry.epoch;
}

void Consumer::store_offsets(const std::vector<Entry>& entries) {
  // The next offset per partition: one past its last record of the batch,
  // or the first record it must not pass yet (a stop, a dead letter not in
  // its topic), whichever comes first.
  std::map<std::int32_t, std::int64_t> next;
  std::map<std::int32_t, std::int64_t> limit;
  for (const auto& e : entries) {
    if (!owns(e)) continue;  // revoked meanwhile
    const bool hold =
        e.kind == Kind::stop || (e.kind == Kind::dead_letter && e.dead_letter->state != DeadLetter::State::produced);
    auto& n = next[e.partition];
    n = std::max(n, hold ? e.offset : e.offset + 1);
    if (hold && !limit.contains(e.partition)) limit[e.partition] = e.offset;
  }
  for (const auto& [partition, offset] : limit) next[partition] = std::min(next[partition], offset);
  std::erase_if(next, [this](const auto& item) { return item.second <= assigned_[item.first].stored; });
  if (next.empty()) return;
  PartitionList offsets(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
  for (const auto& [partition, offset] : next)
    rd_kafka_topic_partition_list_add(offsets.list, config_.topic.c_str(), partition)->offset = offset;
  const auto err = rd_kafka_offsets_store(rk_, offsets.list);
  for (int i = 0; i < offsets.list->cnt; ++i) {
    const auto& p = offsets.list->elems[i];
    if (p.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      assigned_[p.partition].stored = p.offset;
      if (auto range = replay_plan_.find(p.partition); range != replay_plan_.end())
        range->second.reached = std::max(range->second.reached, p.offset);
    } else
      logger_.debug("cannot store offset ", p.offset, " of partition ", p.partition, ": ", rd_kafka_err2str(p.err));
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) logger_.debug("storing offsets: ", rd_kafka_err2str(err));
}

rd_kafka_topic_partition_list_t* Consumer::assignment_list() const {
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(assigned_.size()));
  for (const auto& [partition, state] : assigned_)
    rd_kafka_topic_partition_list_add(list, config_.topic.c_str(), partition);
  return list;
}

void Consumer::rebalance_cb(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                            void* opaque) {
  static_cast<Consumer*>(opaque)->on_rebalance(err, partitions);
}

void Consumer::on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
  rebalances_.add();
  const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk_), "COOPERATIVE") == 0;
  rd_kafka_error_t* error = nullptr;
  rd_kafka_resp_err_t assign_err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    ever_assigned_ = true;
    PartitionList resume(rd_kafka_topic_partition_list_new(partitions->cnt));
    for (int i = 0; i < partitions->cnt; ++i) {
      const std::int32_t partition = partitions->elems[i].partition;
      assigned_[partition] = Assigned{};
      assigned_[partition].epoch = ++next_epoch_;
      detached_.erase(partition);
      forward_to_records(partition);
      // The series exists from the assignment on; its value follows once offsets are known.
      partition_lag(partition);
      if (paused_.erase(partition)) rd_kafka_topic_partition_list_add(resume.list, config_.topic.c_str(), partition);
    }
    // A pause outlives the assignment in librdkafka: a partition stopped
    // during an earlier one starts afresh from its committed offset (and
    // stops there again if this build still cannot read the record).
    if (resume.list->cnt > 0) rd_kafka_resume_partitions(rk_, resume.list);
    if (cooperative) error = rd_kafka_incremental_assign(rk_, partitions);
    else assign_err = rd_kafka_assign(rk_, partitions);
    if (partitions->cnt > 0)
      logger_.info("assigned partitions ", describe(partitions), " of topic '", config_.topic, "'");
    look_up_starts();
  } else {
    const bool lost = err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || rd_kafka_assignment_lost(rk_);
    // Commit what the sink confirmed before the partitions move on; auto
    // commit would too, this makes it explicit and immediate.
    PartitionList commit(rd_kafka_topic_partition_list_new(partitions->cnt));
    // All but those restart_idle_partitions() took out of librdkafka's
    // assignment and could not put back (unassigning them would fail).
    PartitionList unassign(rd_kafka_topic_partition_list_new(partitions->cnt));
    for (int i = 0; i < partitions->cnt; ++i) {
      if (!detached_.contains(partitions->elems[i].partition))
        rd_kafka_topic_partition_list_add(unassign.list, config_.topic.c_str(), partitions->elems[i].partition);
      const auto found = assigned_.find(partitions->elems[i].partition);
      if (found == assigned_.end()) continue;
      if (!lost && found->second.stored >= 0)
        rd_kafka_topic_partition_list_add(commit.list, config_.topic.c_str(), found->first)->offset =
            found->second.stored;
      detached_.erase(found->first);
      partition_lag(found->first).set(0);
      assigned_.erase(found);
    }
    if (commit.list->cnt > 0) rd_kafka_commit(rk_, commit.list, 1 /* async */);
    // Records held here for those partitions were never handed over: drop
    // them; the next owner reads them from the committed offset. A batch in
    // flight still completes; its offsets are then not stored (see store_offsets).
    const auto before = buffer_.size();
    std::erase_if(buffer_, [this](const Entry& e) {
      if (assigned_.contains(e.partition)) return false;
      buffered_bytes_ -= e.bytes;
      return true;
    });
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
      logger_.warn("rebalance error (", rd_kafka_err2str(err), "); giving up partitions ", describe(partitions));
    else
      logger_.info(lost ? "lost" : "revoked", " partitions ", describe(partitions), " of topic '", config_.topic, "'",
                   before != buffer_.size() ? " (" + std::to_string(before - buffer_.size()) +
                                                  " records not yet handed over are left to the next owner)"
                                            : "");
    if (cooperative) error = rd_kafka_incremental_unassign(rk_, unassign.list);
    else assign_err = rd_kafka_assign(rk_, nullptr);
  }
  if (error) {
    logger_.error("cannot apply the partition assignment: ", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
  } else if (assign_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    logger_.error("cannot apply the partition assignment: ", rd_kafka_err2str(assign_err));
  }
  assigned_partitions_.set(static_cast<std::int64_t>(assigned_.size()));
  // Not the last assignment's figure: what is known of this one.
  update_lag();
}

void Consumer::forward_to_records(std::int32_t partition) {
  // Before the partition starts fetching: its records go to records_
  // (librdkafka undoes this when the partition goes away).
  if (rd_kafka_queue_t* queue = rd_kafka_queue_get_partition(rk_, config_.topic.c_str(), partition)) {
    rd_kafka_queue_forward(queue, records_);
    rd_kafka_queue_destroy(queue);
  }
}

void Consumer::schedule_restart(std::int32_t partition) {
  // A replay assigns its partitions at explicit offsets: no committed offset is fetched.
  if (replay_) return;
  if (partition < 0) restart_all_ = true;
  else restart_candidates_.insert(partition);
  if (restart_armed_ || stopping_) return;
  restart_armed_ = true;
  restart_timer_.expires_after(kRestartDelay);
  restart_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (!*alive || ec) return;
    restart_armed_ = false;
    restart_idle_partitions();
  });
}

void Consumer::restart_idle_partitions() {
  // librdkafka (2.0.2, and still upstream) starts fetching an assigned
  // partition only once it has read the partition's committed offset. When
  // that OffsetFetch fails (the coordinator moved or is loading: errors it
  // does not retry), the partition stays assigned and idle forever: the
  // member keeps it, nothing is consumed, the lag grows. Assigning it again
  // makes librdkafka read the offset again. A partition from which a record
  // arrived has started and is left alone; one that has started but has no
  // records loses nothing by being assigned again (nothing of it was handed
  // over or stored).
  const bool all = std::exchange(restart_all_, false);
  const auto candidates = std::exchange(restart_candidates_, {});
  if (!rk_ || stopping_ || closing_ || std::strcmp(rd_kafka_rebalance_protocol(rk_), "COOPERATIVE") != 0) return;
  PartitionList idle(rd_kafka_topic_partition_list_new(static_cast<int>(assigned_.size())));
  for (const auto& [partition, state] : assigned_)
    if (!state.received && !detached_.contains(partition) && (all || candidates.contains(partition)))
      rd_kafka_topic_partition_list_add(idle.list, config_.topic.c_str(), partition);
  if (idle.list->cnt > 0) {
    if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(rk_, idle.list)) {
      // Most likely a rebalance is moving them right now, which starts them anew anyway.
      logger_.debug("cannot unassign partitions ", describe(idle.list),
                    " to restart them: ", rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    } else {
      for (int i = 0; i < idle.list->cnt; ++i) detached_.insert(idle.list->elems[i].partition);
      std::uint64_t suppressed = 0;
      if (limiter_.allow("restart", suppressed))
        logger_.warn("assigning partitions ", describe(idle.list), " of topic '", config_.topic,
                     "' again: Kafka did not return their committed offsets, so they would never be fetched",
                     suppressed ? " (" + std::to_string(suppressed) + " more such restarts since the last line)" : "");
    }
  }
  if (detached_.empty()) return;
  PartitionList again(rd_kafka_topic_partition_list_new(static_cast<int>(detached_.size())));
  for (const auto partition : detached_) {
    rd_kafka_topic_partition_list_add(again.list, config_.topic.c_str(), partition);
    forward_to_records(partition);
  }
  if (rd_kafka_error_t* error = rd_kafka_incremental_assign(rk_, again.list)) {
    logger_.warn("cannot assign partitions ", describe(again.list), " again (", rd_kafka_error_string(error),
                 "); trying again shortly");
    rd_kafka_error_destroy(error);
    schedule_restart(*detached_.begin());  // re-arms; the detached ones are retried
    return;
  }
  for (const auto partition : detached_) {
    assigned_[partition] = Assigned{};
    assigned_[partition].epoch = ++next_epoch_;
    partition_restarts_.add();
  }
  detached_.clear();
  look_up_starts();
}

void Consumer::commit_cb(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets, void* opaque) {
  static_cast<Consumer*>(opaque)->on_commit(err, offsets);
}

void Consumer::on_commit(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets) {
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;  // nothing new to commit
  bool failed = err != RD_KAFKA_RESP_ERR_NO_ERROR;
  if (offsets)
    for (int i = 0; i < offsets->cnt; ++i)
      if (offsets->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        failed = true;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = offsets->elems[i].err;
      }
  if (!failed) {
    commits_.add();
    return;
  }
  commit_errors_.add();
  std::uint64_t suppressed = 0;
  if (limiter_.allow("commit", suppressed))
    logger_.warn("an offset commit failed (", rd_kafka_err2str(err),
                 "); the offsets stay stored and go with the next commit",
                 suppressed ? " (" + std::to_string(suppressed) + " more failures since the last such line)" : "");
}

void Consumer::tick() {
  // The safety net for a missed wake-up.
  serve_events();
  pull_records();
  if (!rk_) return;
  // Every tick: it reads only cached figures, and a reader once a second
  // (the runtime's progress lines) then never gets the same, stale one twice.
  update_lag();
  if (replay_) finish_replayed_partitions();
  const auto now = Clock::now();
  if (stopping_ && !closing_ && in_flight_ && now >= stop_deadline_) {
    logger_.warn("the sink did not answer the last batch within ",
                 std::chrono::duration_cast<std::chrono::seconds>(kBatchStopTimeout).count(),
                 " s; leaving it uncommitted");
    in_flight_.reset();
    begin_close();
  } else if (closing_ && now >= stop_deadline_) {
    logger_.warn("the Kafka consumer did not leave its group in time; closing it anyway");
    finish_close();
  }
  if (!rk_) return;
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (*alive && !ec) tick();
  });
}

Gauge& Consumer::partition_lag(std::int32_t partition) {
  auto& slot = partition_lag_[partition];
  if (!slot)
    slot = &context_.metrics().gauge("partition_lag", "Messages of one partition not yet written by the sink",
                                     {{"topic", config_.topic}, {"partition", std::to_string(partition)}});
  return *slot;
}

void Consumer::update_lag() {
  // Partitions no longer owned read 0; their next owner reports them.
  for (auto& [partition, gauge] : partition_lag_)
    if (!assigned_.contains(partition)) gauge->set(0);
  unmeasured_ = 0;
  if (assigned_.empty()) {
    consumer_lag_.set(0);
    // Owning nothing is a backlog of 0, once the group has answered.
    lag_ = ever_assigned_ ? std::optional<std::int64_t>(0) : std::nullopt;
    return;
  }
  PartitionList positions(assignment_list());
  rd_kafka_position(rk_, positions.list);
  std::int64_t lag = 0;
  for (int i = 0; i < positions.list->cnt; ++i) {
    const auto& p = positions.list->elems[i];
    std::int64_t low = -1;
    std::int64_t high = -1;
    // Cached from fetch responses: no request, never blocks.
    const bool marks = rd_kafka_get_watermark_offsets(rk_, config_.topic.c_str(), p.partition, &low, &high) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR &&
                       high >= 0;
    const auto next = marks ? next_to_confirm(assigned_[p.partition], low, p.offset) : std::nullopt;
    if (!next) {
      // Left out: a guess (the log start) would report a caught-up
      // partition as entirely behind.
      ++unmeasured_;
      continue;
    }
    const std::int64_t behind = std::max<std::int64_t>(0, high - *next);
    partition_lag(p.partition).set(behind);
    lag += behind;
  }
  if (unmeasured_ == assigned_.size()) {
    lag_ = std::nullopt;  // nothing measured: no figure, rather than 0
    return;
  }
  consumer_lag_.set(lag);
  lag_ = lag;
}

std::optional<std::int64_t> Consumer::next_to_confirm(const Assigned& owned, std::int64_t low, std::int64_t position) {
  // The sink confirmed up to here.
  if (owned.stored >= 0) return owned.stored;
  // Nothing of this assignment confirmed yet: where it started.
  switch (owned.start) {
    case Assigned::Start::committed:
      // Below the log start, retention deleted them: consumption resets to the earliest.
      return low >= 0 ? std::max(owned.committed, low) : owned.committed;
    case Assigned::Start::earliest:
      if (low >= 0) return low;
      break;
    case Assigned::Start::unknown:
      break;
  }
  // Records came before the start was known: at least those taken are not behind.
  if (position >= 0) return position;
  return std::nullopt;
}

void Consumer::look_up_starts() {
  if (!rk_ || stopping_ || closing_ || start_lookup_in_flight_) return;
  std::vector<StartLookup::Partition> asked;
  for (const auto& [partition, owned] : assigned_)
    if (owned.start == Assigned::Start::unknown && !detached_.contains(partition))
      asked.push_back({partition, owned.epoch});
  if (asked.empty()) return;
  start_lookup_in_flight_ = true;
  // The handle outlives the job: it is destroyed on this same worker, after
  // it (finish_close), or once the worker was joined (~KafkaLog).
  worker_.run(
      [rk = rk_, topic = config_.topic, asked = std::move(asked)]() mutable {
        StartLookup answer;
        PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(asked.size())));
        for (const auto& p : asked) rd_kafka_topic_partition_list_add(list.list, topic.c_str(), p.partition);
        answer.err = rd_kafka_committed(rk, list.list, static_cast<int>(kStartLookupTimeout.count()));
        for (auto& p : asked) {
          const auto* found = rd_kafka_topic_partition_list_find(list.list, topic.c_str(), p.partition);
          p.err = found ? found->err : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
          p.offset = found ? found->offset : RD_KAFKA_OFFSET_INVALID;
        }
        answer.partitions = std::move(asked);
        return answer;
      },
      [this, alive = alive_](StartLookup answer) {
        if (*alive) on_starts(std::move(answer));
      });
}

void Consumer::on_starts(StartLookup answer) {
  start_lookup_in_flight_ = false;
  rd_kafka_resp_err_t failure = answer.err;
  std::vector<std::int32_t> failed;
  for (const auto& p : answer.partitions) {
    auto found = assigned_.find(p.partition);
    // Revoked, or assigned again since: a later assignment reads its own.
    if (found == assigned_.end() || found->second.epoch != p.epoch) continue;
    Assigned& owned = found->second;
    if (answer.err != RD_KAFKA_RESP_ERR_NO_ERROR || p.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (failure == RD_KAFKA_RESP_ERR_NO_ERROR) failure = p.err;
      failed.push_back(p.partition);
      continue;
    }
    if (p.offset >= 0) {
      owned.start = Assigned::Start::committed;
      owned.committed = p.offset;
    } else {
      // Nothing committed: the consumer starts where auto.offset.reset = earliest (start()) puts it.
      owned.start = Assigned::Start::earliest;
    }
  }
  if (!failed.empty()) {
    start_lookup_errors_.add();
    std::ostringstream which;
    for (std::size_t i = 0; i < failed.size(); ++i) which << (i ? ", " : "") << failed[i];
    std::uint64_t suppressed = 0;
    if (limiter_.allow("start-lookup", suppressed))
      logger_.warn("cannot read the committed offsets of partitions [", which.str(), "] of topic '", config_.topic,
                   "' (", rd_kafka_err2str(failure), "); their lag is left out until they are known; trying again in ",
                   kStartLookupRetry.count(), " ms",
                   suppressed ? " (" + std::to_string(suppressed) + " more failures since the last such line)" : "");
    if (!start_lookup_retry_armed_ && !stopping_) {
      start_lookup_retry_armed_ = true;
      start_lookup_timer_.expires_after(kStartLookupRetry);
      start_lookup_timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
        if (!*alive) return;
        start_lookup_retry_armed_ = false;
        if (!ec) look_up_starts();
      });
    }
  } else {
    look_up_starts();  // partitions assigned while this read was in flight
  }
  if (rk_ && !closing_) update_lag();
}

void Consumer::stop(std::function<void()> done) {
  if (stopping_) {
    boost::asio::post(executor_, std::move(done));
    return;
  }
  stopping_ = true;
  on_stopped_ = std::move(done);
  batch_timer_.cancel();
  restart_timer_.cancel();
  start_lookup_timer_.cancel();
  if (!rk_) {
    boost::asio::post(executor_, [this, alive = alive_] {
      if (*alive) finish_close();
    });
    return;
  }
  stop_deadline_ = Clock::now() + kBatchStopTimeout;
  if (in_flight_) {
    // Dead letters waiting for a retry are given up on (uncommitted); the
    // batch ends here if nothing else is awaited.
    dead_letter_timer_.cancel();
    finish_in_flight();
    if (in_flight_)
      logger_.info(
          "waiting for the sink (and the dead-letter topic) to answer the batch in flight before leaving "
          "the group");
    return;
  }
  begin_close();
}

void Consumer::begin_close() {
  if (closing_) return;
  if (replay_ && !std::exchange(replay_committed_, true) && rk_) {
    // A hand-made assignment has no revocation to commit on: what the sink
    // confirmed is committed now, and waited for, so a rerun with this group resumes there.
    worker_.run([rk = rk_] { return rd_kafka_commit(rk, nullptr, 0); },
                [this, alive = alive_](rd_kafka_resp_err_t err) {
                  if (!*alive) return;
                  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
                    logger_.warn("cannot commit the replay's last offsets in group '", config_.group_id, "' (",
                                 rd_kafka_err2str(err), "); a rerun with this group repeats those rows (adding none)");
                  begin_close();
                });
    return;
  }
  closing_ = true;
  // Never handed over: whoever reads these partitions next gets them.
  buffer_.clear();
  buffered_bytes_ = 0;
  stop_deadline_ = Clock::now() + kCloseTimeout;
  // Leaves the group without blocking: revocation (which commits the stored
  // offsets) arrives on the queue we keep serving until the close is done.
  if (rd_kafka_error_t* error = rd_kafka_consumer_close_queue(rk_, queue_)) {
    logger_.warn("cannot close the Kafka consumer cleanly: ", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    return finish_close();
  }
  if (watcher_) watcher_->poke();
}

void Consumer::finish_close() {
  batch_timer_.cancel();
  tick_timer_.cancel();
  restart_timer_.cancel();
  start_lookup_timer_.cancel();
  dead_letter_timer_.cancel();
  if (rk_) {
    const bool closed = rd_kafka_consumer_closed(rk_);
    watcher_.reset();
    records_watcher_.reset();
    rd_kafka_queue_destroy(queue_);
    queue_ = nullptr;
    rd_kafka_queue_destroy(records_);
    records_ = nullptr;
    rd_kafka_t* rk = std::exchange(rk_, nullptr);
    assigned_.clear();
    assigned_partitions_.set(0);
    worker_.run(
        [rk, closed, keep = subscribed_ && !ever_assigned_, &logger = logger_] {
          destroy_handle(rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE, keep, logger);
          return true;
        },
        [this, alive = alive_](bool) {
          if (*alive) finish_stop();
        });
    return;
  }
  finish_stop();
}

void Consumer::finish_stop() {
  if (dead_letters_)
    return dead_letters_->stop([this, alive = alive_] {
      if (!*alive) return;
      if (auto done = std::exchange(on_stopped_, nullptr)) done();
    });
  if (auto done = std::exchange(on_stopped_, nullptr)) done();
}

}  // namespace nudge::plugins::kafka
