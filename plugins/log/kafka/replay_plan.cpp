#include "replay_plan.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>

namespace nudge::plugins::kafka {

namespace {

// Each question to the brokers while a replay plans; nothing waits on it but the replay.
constexpr int kQueryTimeoutMs = 10000;

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using List = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

std::string partition_list(const std::vector<std::int32_t>& partitions) {
  std::string text;
  for (std::size_t i = 0; i < partitions.size() && i < 8; ++i) text += (i ? ", " : "") + std::to_string(partitions[i]);
  if (partitions.size() > 8) text += ", ...";
  return "[" + text + "]";
}

}  // namespace

std::string utc_text(std::int64_t ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[96];  // room for any int the format could take, as -Wformat-truncation counts
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return text;
}

ReplayPlan plan_replay(const LogReplay& range, const std::vector<PartitionFacts>& facts, const std::string& topic) {
  ReplayPlan plan;
  std::vector<std::string> gaps;
  std::vector<std::int32_t> resumed;
  std::vector<std::int32_t> trimmed;
  std::int64_t deleted = 0;
  for (const auto& f : facts) {
    ReplayPartition p{f.partition, f.low, f.high, 0, false};
    if (range.to_ms) p.end = f.to_time_offset && *f.to_time_offset >= 0 ? std::min(*f.to_time_offset, f.high) : f.high;
    const auto asked = range.from_offsets.find(f.partition);
    if (f.committed) {
      // The group read this far before (an interrupted replay): go on from there.
      resumed.push_back(f.partition);
      p.start = *f.committed;
      if (p.start < f.low)
        gaps.push_back("partition " + std::to_string(f.partition) + ": the group committed offset " +
                       std::to_string(p.start) + ", but the log now starts at offset " + std::to_string(f.low) +
                       " (retention deleted the " + std::to_string(f.low - p.start) + " records between)");
    } else if (asked != range.from_offsets.end()) {
      p.start = std::min(asked->second, f.high);
      if (asked->second < f.low)
        gaps.push_back("partition " + std::to_string(f.partition) + ": offset " + std::to_string(asked->second) +
                       " was asked for, but the log starts at offset " + std::to_string(f.low) +
                       " (retention deleted the records before it)");
    } else if (range.from_ms) {
      // No record at or after the time: nothing of this partition is in the range.
      p.start = f.from_time_offset && *f.from_time_offset >= 0 ? *f.from_time_offset : f.high;
      // The first record at or after the time is the earliest one held, and
      // some were deleted before it: those may have been in the range too.
      if (p.start == f.low && f.low > 0 && f.low < f.high)
        gaps.push_back("partition " + std::to_string(f.partition) + " starts at offset " + std::to_string(f.low) +
                       " (retention deleted the " + std::to_string(f.low) +
                       " records before it), and that earliest record is already at or after " +
                       utc_text(*range.from_ms));
    } else if (f.low > 0) {
      deleted += f.low;
      trimmed.push_back(f.partition);
    }
    p.start = std::min(p.start, p.end);
    p.reached = p.start;
    plan.partitions.push_back(p);
  }
  if (!gaps.empty()) {
    std::string what = range.from_ms ? "the log no longer reaches back to " + utc_text(*range.from_ms)
                                     : std::string("the log no longer holds the start asked for");
    plan.error = what + " on topic '" + topic + "': " + gaps.front() +
                 (gaps.size() > 1 ? " (and " + std::to_string(gaps.size() - 1) + " more partitions alike)" : "") +
                 ". Messages in the range may be gone: replay with --from earliest to take what the log still holds, "
                 "or from a later time";
  }
  if (!resumed.empty())
    plan.notes.push_back("partitions " + partition_list(resumed) +
                         " continue from the offsets this group committed (a replay resumed)");
  if (!trimmed.empty())
    plan.notes.push_back(std::to_string(deleted) + " records of partitions " + partition_list(trimmed) +
                         " were deleted by retention before this replay; it starts at the earliest record held");
  return plan;
}

std::vector<PartitionFacts> query_partition_facts(rd_kafka_t* rk, const std::string& topic, const LogReplay& range,
                                                  std::string& error) {
  std::vector<PartitionFacts> facts;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (!rkt) {
    error = "cannot look up topic '" + topic + "': " + rd_kafka_err2str(rd_kafka_last_error());
    return {};
  }
  const rd_kafka_metadata_t* metadata = nullptr;
  const auto err = rd_kafka_metadata(rk, 0, rkt, &metadata, kQueryTimeoutMs);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = "cannot read the metadata of topic '" + topic + "': " + rd_kafka_err2str(err);
    return {};
  }
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    const auto& t = metadata->topics[i];
    if (topic != t.topic) continue;
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = "topic '" + topic + "': " + rd_kafka_err2str(t.err) + " (nothing to replay)";
      break;
    }
    for (int j = 0; j < t.partition_cnt; ++j) {
      PartitionFacts f;
      f.partition = t.partitions[j].id;
      facts.push_back(f);
    }
  }
  rd_kafka_metadata_destroy(metadata);
  if (!error.empty()) return {};
  if (facts.empty()) {
    error = "topic '" + topic + "' has no partitions (nothing to replay)";
    return {};
  }
  std::sort(facts.begin(), facts.end(), [](const auto& a, const auto& b) { return a.partition < b.partition; });
  for (auto& f : facts) {
    if (const auto e =
            rd_kafka_query_watermark_offsets(rk, topic.c_str(), f.partition, &f.low, &f.high, kQueryTimeoutMs);
        e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = "cannot read the offsets of partition " + std::to_string(f.partition) + " of topic '" + topic +
              "': " + rd_kafka_err2str(e);
      return {};
    }
  }
  // The first offset at or after a time (Kafka's ListOffsets, offsetsForTimes).
  auto offsets_for = [&](std::int64_t ms, std::optional<std::int64_t> PartitionFacts::*into) {
    List list(rd_kafka_topic_partition_list_new(static_cast<int>(facts.size())));
    for (const auto& f : facts) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), f.partition)->offset = ms;
    if (const auto e = rd_kafka_offsets_for_times(rk, list.get(), kQueryTimeoutMs); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = "cannot find the offsets of " + utc_text(ms) + " in topic '" + topic + "': " + rd_kafka_err2str(e);
      return false;
    }
    for (auto& f : facts) {
      const auto* found = rd_kafka_topic_partition_list_find(list.get(), topic.c_str(), f.partition);
      if (!found || found->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        error = "cannot find the offset of " + utc_text(ms) + " in partition " + std::to_string(f.partition) +
                " of topic '" + topic +
                "': " + rd_kafka_err2str(found ? found->err : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION);
        return false;
      }
      f.*into = found->offset;
    }
    return true;
  };
  if (range.from_ms && !offsets_for(*range.from_ms, &PartitionFacts::from_time_offset)) return {};
  if (range.to_ms && !offsets_for(*range.to_ms, &PartitionFacts::to_time_offset)) return {};
  List committed(rd_kafka_topic_partition_list_new(static_cast<int>(facts.size())));
  for (const auto& f : facts) rd_kafka_topic_partition_list_add(committed.get(), topic.c_str(), f.partition);
  if (const auto e = rd_kafka_committed(rk, committed.get(), kQueryTimeoutMs); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = "cannot read the replay group's committed offsets on topic '" + topic + "': " + rd_kafka_err2str(e);
    return {};
  }
  for (auto& f : facts) {
    const auto* found = rd_kafka_topic_partition_list_find(committed.get(), topic.c_str(), f.partition);
    if (found && found->err == RD_KAFKA_RESP_ERR_NO_ERROR && found->offset >= 0) f.committed = found->offset;
  }
  return facts;
}

}  // namespace nudge::plugins::kafka
