#include "rows.hpp"

#include <chrono>

#include "nudge/sdk/text.hpp"
#include "sql.hpp"

namespace nudge::plugins::mysql {

namespace {

void repair_into(std::string_view text, std::size_t max_chars, std::string& out, std::size_t& repaired) {
  if (repair_text(text, max_chars, out)) ++repaired;
}

}  // namespace

bool repair_text(std::string_view text, std::size_t max_chars, std::string& out) {
  // NUL stays: a utf8mb4 VARCHAR holds it.
  const bool replaced = nudge::repair_utf8(text, out);
  // `out` is valid UTF-8 now: a character starts at every byte that is not a
  // continuation byte (10xxxxxx).
  std::size_t chars = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if ((static_cast<unsigned char>(out[i]) & 0xc0) != 0x80 && chars++ == max_chars) {
      out.resize(i);
      return true;
    }
  }
  return replaced;
}

CivilTime utc_civil_time(std::int64_t unix_ms, bool& clamped) {
  using namespace std::chrono;
  clamped = unix_ms < kMinDatetimeMs || unix_ms > kMaxDatetimeMs;
  if (unix_ms < kMinDatetimeMs) unix_ms = kMinDatetimeMs;
  if (unix_ms > kMaxDatetimeMs) unix_ms = kMaxDatetimeMs;
  const sys_time<milliseconds> time{milliseconds{unix_ms}};
  const auto day = floor<days>(time);  // floor: 1969-12-31 23:59:59 for -1000
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{time - day};
  CivilTime t;
  t.year = static_cast<int>(ymd.year());
  t.month = static_cast<unsigned>(ymd.month());
  t.day = static_cast<unsigned>(ymd.day());
  t.hour = static_cast<unsigned>(hms.hours().count());
  t.minute = static_cast<unsigned>(hms.minutes().count());
  t.second = static_cast<unsigned>(hms.seconds().count());
  t.millisecond = static_cast<unsigned>(hms.subseconds().count());
  return t;
}

std::int64_t unix_ms(const CivilTime& t) {
  using namespace std::chrono;
  const sys_days day{year{t.year} / month{t.month} / std::chrono::day{t.day}};
  return (duration_cast<milliseconds>(day.time_since_epoch()) + hours{t.hour} + minutes{t.minute} + seconds{t.second} +
          milliseconds{t.millisecond})
      .count();
}

static_assert(std::chrono::sys_days{std::chrono::year{1000} / 1 / 1}.time_since_epoch().count() * 86400000LL ==
              kMinDatetimeMs);
static_assert(std::chrono::sys_days{std::chrono::year{10000} / 1 / 1}.time_since_epoch().count() * 86400000LL - 1 ==
              kMaxDatetimeMs);

EncodedBatch encode_batch(const Batch& batch) {
  EncodedBatch e;
  e.rows.resize(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Message& m = *batch[i];
    Row& row = e.rows[i];
    row.id = m.id.to_string();
    repair_into(m.room, kRoomChars, row.room, e.texts_repaired);
    repair_into(m.sender, kSenderChars, row.sender, e.texts_repaired);
    repair_into(m.origin, kOriginChars, row.origin, e.texts_repaired);
    row.payload = m.payload;
    bool clamped = false;
    row.created_at = utc_civil_time(m.timestamp_ms, clamped);
    if (clamped) ++e.timestamps_clamped;
    if (m.log_position.valid()) {
      row.log_partition = m.log_position.partition;
      row.log_offset = m.log_position.offset;
    }
  }
  return e;
}

std::size_t lenenc_size(std::uint64_t n) {
  if (n < 251) return 1;
  if (n < (1u << 16)) return 3;
  if (n < (1u << 24)) return 4;
  return 9;
}

std::size_t row_packet_bytes(const Row& row) {
  auto text = [](std::size_t n) { return lenenc_size(n) + n; };
  return 2 * kParamsPerRow + 1 + text(row.id.size()) + text(row.room.size()) + text(row.sender.size()) +
         text(row.payload.size()) + 12 + text(row.origin.size()) + (row.log_partition ? 4 : 0) +
         (row.log_offset ? 8 : 0);
}

ChunkPlan plan_chunks(const std::vector<std::size_t>& row_bytes, std::size_t max_packet, std::size_t max_rows) {
  ChunkPlan plan;
  const std::size_t budget = max_packet > kStatementOverheadBytes ? max_packet - kStatementOverheadBytes : 0;
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < row_bytes.size(); ++i) {
    if (row_bytes[i] > budget) {
      plan.chunks.clear();
      plan.too_large = i;
      return plan;
    }
    if (plan.chunks.empty() || plan.chunks.back().count == max_rows || bytes + row_bytes[i] > budget) {
      plan.chunks.push_back({i, 0});
      bytes = 0;
    }
    ++plan.chunks.back().count;
    bytes += row_bytes[i];
  }
  return plan;
}

}  // namespace nudge::plugins::mysql
