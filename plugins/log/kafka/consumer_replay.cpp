// The consumer's replay mode (nudge replay): a bounded read of every
// partition in a group of its own, assigned by hand at planned offsets.
#include <algorithm>
#include <memory>

#include "consumer.hpp"

namespace nudge::plugins::kafka {

namespace {

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using List = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

struct Facts {
  std::vector<PartitionFacts> facts;
  std::string error;
};

}  // namespace

void Consumer::replay(LogReplay range) {
  if (!rk_ || replay_ || subscribed_ || stopping_) return;
  replay_ = std::move(range);
  logger_.info("planning a replay of topic '", config_.topic, "' in group '", config_.group_id, "'");
  // The handle outlives the job: it is destroyed on this same worker, after it.
  worker_.run(
      [rk = rk_, topic = config_.topic, range = *replay_] {
        Facts out;
        out.facts = query_partition_facts(rk, topic, range, out.error);
        return out;
      },
      [this, alive = alive_](Facts out) {
        if (*alive) on_replay_facts(std::move(out.facts), std::move(out.error));
      });
}

void Consumer::on_replay_facts(std::vector<PartitionFacts> facts, std::string error) {
  if (!rk_ || stopping_) return;
  auto fail = [this](std::string why) {
    replay_state_ = ReplayProgress::State::failed;
    replay_error_ = std::move(why);
    logger_.error("cannot replay: ", replay_error_);
  };
  if (!error.empty()) return fail(std::move(error));
  ReplayPlan plan = plan_replay(*replay_, facts, config_.topic);
  replay_notes_ = plan.notes;
  for (const auto& note : plan.notes) logger_.info(note);
  if (!plan.error.empty()) return fail(std::move(plan.error));

  List list(rd_kafka_topic_partition_list_new(static_cast<int>(plan.partitions.size())));
  std::int64_t records = 0;
  for (const auto& p : plan.partitions) {
    replay_plan_[p.partition] = p;
    if (p.start >= p.end) continue;  // nothing of it in the range
    records += p.end - p.start;
    rd_kafka_topic_partition_list_add(list.get(), config_.topic.c_str(), p.partition)->offset = p.start;
    Assigned& owned = assigned_[p.partition];
    owned = Assigned{};
    owned.epoch = ++next_epoch_;
    // Its lag counts from where it starts, known already.
    owned.start = Assigned::Start::committed;
    owned.committed = p.start;
    forward_to_records(p.partition);
    partition_lag(p.partition);
  }
  ever_assigned_ = true;
  if (list->cnt > 0)
    if (const auto err = rd_kafka_assign(rk_, list.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      assigned_.clear();
      return fail(std::string("cannot assign the partitions of topic '") + config_.topic +
                  "': " + rd_kafka_err2str(err));
    }
  assigned_partitions_.set(static_cast<std::int64_t>(assigned_.size()));
  replay_state_ = ReplayProgress::State::reading;
  logger_.info("replaying ", records, " records from ", list->cnt, " of the ", plan.partitions.size(),
               " partitions of topic '", config_.topic, "' in group '", config_.group_id, "'");
  update_lag();
}

void Consumer::finish_replayed_partitions() {
  if (replay_state_ != ReplayProgress::State::reading || !rk_ || closing_) return;
  for (auto& [partition, range] : replay_plan_) {
    if (!range.past_end || range.reached >= range.end) continue;
    auto pending = [partition](const Entry& e) { return e.partition == partition; };
    if (std::any_of(buffer_.begin(), buffer_.end(), pending)) continue;
    if (in_flight_ && std::any_of(in_flight_->entries.begin(), in_flight_->entries.end(), pending)) continue;
    // Offsets below the end that were no records (transaction markers): nothing was left to write.
    List list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), config_.topic.c_str(), partition)->offset = range.end;
    if (rd_kafka_offsets_store(rk_, list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      range.reached = range.end;
      if (auto owned = assigned_.find(partition); owned != assigned_.end()) owned->second.stored = range.end;
    }
  }
  if (std::all_of(replay_plan_.begin(), replay_plan_.end(),
                  [](const auto& item) { return item.second.reached >= item.second.end; }))
    replay_state_ = ReplayProgress::State::done;
}

std::optional<ReplayProgress> Consumer::replay_progress() const {
  if (!replay_) return std::nullopt;
  ReplayProgress progress;
  progress.state = replay_state_;
  progress.group = config_.group_id;
  progress.error = replay_error_;
  progress.notes = replay_notes_;
  for (const auto& [partition, range] : replay_plan_) {
    ++progress.partitions;
    progress.total += range.end - range.start;
    const auto reached = std::min(range.reached, range.end);
    progress.done += std::max<std::int64_t>(0, reached - range.start);
    if (reached >= range.end) ++progress.partitions_done;
  }
  // Done is decided on the tick; seen here at once for a plan with nothing to read.
  if (progress.state == ReplayProgress::State::reading && progress.partitions_done == progress.partitions)
    progress.state = ReplayProgress::State::done;
  return progress;
}

}  // namespace nudge::plugins::kafka
