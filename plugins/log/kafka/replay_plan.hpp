#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "nudge/sdk/log.hpp"

namespace nudge::plugins::kafka {

/// What the log holds of one partition, as the brokers answered when a
/// replay started: what its start and end are decided from.
struct PartitionFacts {
  std::int32_t partition = -1;
  std::int64_t low = 0;   ///< the earliest offset still held (retention deleted those before)
  std::int64_t high = 0;  ///< one past the last record
  /// The first offset stored at or after LogReplay::from_ms / to_ms; -1: none is.
  std::optional<std::int64_t> from_time_offset;
  std::optional<std::int64_t> to_time_offset;
  /// What the replay's group committed there; nullopt: nothing.
  std::optional<std::int64_t> committed;
};

/// One partition of a replay: read [start, end).
struct ReplayPartition {
  std::int32_t partition = -1;
  std::int64_t start = 0;
  std::int64_t end = 0;
  /// The next offset the sink has not confirmed yet (start until one batch is).
  std::int64_t reached = 0;
  /// A record at or past `end` arrived: nothing of the range is left to come
  /// (the offsets just before `end` were no records, e.g. transaction markers).
  bool past_end = false;
};

/// A replay's start and end on every partition, or why it cannot run.
struct ReplayPlan {
  std::vector<ReplayPartition> partitions;
  /// Non-empty: the range asked for is not (all) in the log any more.
  std::string error;
  std::vector<std::string> notes;
};

/// Decides each partition's range from what the brokers answered. Pure:
/// the unit tests feed it facts. `topic` is for the sentences only.
ReplayPlan plan_replay(const LogReplay& range, const std::vector<PartitionFacts>& facts, const std::string& topic);

/// Asks the brokers, through the consumer handle `rk` (blocking, up to a few
/// seconds per request: on a worker thread), what plan_replay needs. Empty
/// with `error` set when they cannot be asked.
std::vector<PartitionFacts> query_partition_facts(rd_kafka_t* rk, const std::string& topic, const LogReplay& range,
                                                  std::string& error);

/// "2026-12-06T14:03:07.250Z", for the sentences of a plan.
std::string utc_text(std::int64_t ms_since_epoch);

}  // namespace nudge::plugins::kafka
