#include "sql.hpp"

#include <algorithm>
#include <utility>

#include "nudge/sdk/text.hpp"

namespace nudge::plugins::postgres {

const std::vector<Column>& columns() {
  static const std::vector<Column> all = {
      {"id", "uuid PRIMARY KEY", false},
      {"room", "text NOT NULL", false},
      {"sender", "text NOT NULL", false},
      {"payload", "bytea NOT NULL", false},
      {"created_at", "timestamptz NOT NULL", false},
      {"origin", "text NOT NULL", false},
      {"log_partition", "integer", true},
      {"log_offset", "bigint", true},
      {"stored_at", "timestamptz NOT NULL DEFAULT now()", true},
  };
  return all;
}

std::string create_table_sql(const TableName& table) {
  std::string sql = "CREATE TABLE IF NOT EXISTS " + table.quoted() + " (";
  bool first = true;
  for (const auto& c : columns()) {
    sql += (first ? "" : ", ") + std::string(c.name) + " " + c.definition;
    first = false;
  }
  return sql + "); " + create_index_sql(table);
}

std::string create_index_sql(const TableName& table) {
  return "CREATE INDEX IF NOT EXISTS " + table.index_quoted() + " ON " + table.quoted() + " (room, id)";
}

std::string history_sql(const TableName& table, bool after) {
  // uuid compares bytewise, so id order is UUIDv7 order: time order.
  // created_at: whole ms since the epoch; extract() is numeric (exact) since
  // PostgreSQL 14, and rounding to bigint makes it exact on older servers too.
  // ORDER BY m.id, qualified: a bare `id` would name the output column
  // id::text and sort text instead of walking the (room, id) index.
  return "SELECT m.id::text, m.room, m.sender, m.payload, (extract(epoch FROM m.created_at) * 1000)::bigint,"
         " m.origin, m.log_partition, m.log_offset FROM " +
         table.quoted() + " AS m" +
         (after ? " WHERE m.room = $1 AND m.id > $3::uuid ORDER BY m.id ASC LIMIT $2"
                : " WHERE m.room = $1 ORDER BY m.id DESC LIMIT $2");
}

std::string add_column_sql(const TableName& table, const Column& column) {
  return "ALTER TABLE " + table.quoted() + " ADD COLUMN IF NOT EXISTS " + column.name + " " + column.definition;
}

std::string insert_sql(const TableName& table) {
  // created_at: whole milliseconds since the epoch, exact up to the year 2255
  // (the float8 product stays below 2^53 microseconds).
  return "INSERT INTO " + table.quoted() +
         " (id, room, sender, payload, created_at, origin, log_partition, log_offset)"
         " SELECT m.id, m.room, m.sender, decode(m.payload, 'hex'),"
         " timestamptz 'epoch' + m.ms * interval '1 millisecond', m.origin, m.log_partition, m.log_offset"
         " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],"
         " $7::integer[], $8::bigint[])"
         " AS m(id, room, sender, payload, ms, origin, log_partition, log_offset)"
         " ON CONFLICT (id) DO NOTHING";
}

void append_array_element(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

std::string text_array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t n = 0; n < items.size(); ++n) {
    if (n) out += ',';
    append_array_element(out, items[n]);
  }
  return out + "}";
}

void append_hex(std::string& out, std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  const std::size_t start = out.size();
  out.resize(start + 2 * bytes.size());
  char* p = out.data() + start;
  for (unsigned char b : bytes) {
    *p++ = digits[b >> 4];
    *p++ = digits[b & 15];
  }
}

namespace {

/// Whether a text column takes `text` as it is: valid UTF-8 without NUL.
bool fits_text_column(std::string_view text) {
  return text.find('\0') == std::string_view::npos && nudge::is_valid_utf8(text);
}

void append_text(std::string& out, std::string_view text, std::size_t& repaired) {
  // The common case, valid text, is copied as is.
  std::string scratch;
  if (!fits_text_column(text) && repair_text(text, scratch)) {
    ++repaired;
    append_array_element(out, scratch);
  } else {
    append_array_element(out, text);
  }
}

}  // namespace

bool repair_text(std::string_view text, std::string& out) {
  bool replaced = nudge::repair_utf8(text, out);
  // NUL is valid UTF-8 but text cannot hold it. It is never part of a longer
  // sequence, so replacing it afterwards gives one U+FFFD per NUL.
  if (out.find('\0') == std::string::npos) return replaced;
  std::string fixed;
  fixed.reserve(out.size() + 2 * static_cast<std::size_t>(std::count(out.begin(), out.end(), '\0')));
  for (const char c : out) {
    if (c == '\0') fixed += "\xef\xbf\xbd";
    else fixed += c;
  }
  out = std::move(fixed);
  return true;
}

Batch::const_iterator statement_end(Batch::const_iterator first, Batch::const_iterator last,
                                    std::size_t max_payload_bytes) {
  std::size_t bytes = 0;
  for (auto it = first; it != last; ++it) {
    bytes += (*it)->payload.size();
    if (bytes > max_payload_bytes && it != first) return it;
  }
  return last;
}

EncodedBatch encode_batch(Batch::const_iterator first, Batch::const_iterator last) {
  EncodedBatch e;
  std::size_t payload_bytes = 0;
  const auto count = static_cast<std::size_t>(last - first);
  for (auto it = first; it != last; ++it) payload_bytes += (*it)->payload.size();
  e.ids.reserve(count * 37 + 2);
  e.payloads.reserve(payload_bytes * 2 + count * 3 + 2);
  std::string* all[] = {&e.ids,        &e.rooms,   &e.senders,    &e.payloads,
                        &e.timestamps, &e.origins, &e.partitions, &e.offsets};
  for (auto* s : all) *s += '{';
  for (auto it = first; it != last; ++it) {
    const auto& m = *it;
    if (it != first)
      for (auto* s : all) *s += ',';
    e.ids += m->id.to_string();
    append_text(e.rooms, m->room, e.repaired_texts);
    append_text(e.senders, m->sender, e.repaired_texts);
    e.payloads += '"';
    append_hex(e.payloads, m->payload);
    e.payloads += '"';
    e.timestamps += std::to_string(m->timestamp_ms);
    append_text(e.origins, m->origin, e.repaired_texts);
    if (m->log_position.valid()) {
      e.partitions += std::to_string(m->log_position.partition);
      e.offsets += std::to_string(m->log_position.offset);
    } else {
      e.partitions += "NULL";
      e.offsets += "NULL";
    }
  }
  for (auto* s : all) *s += '}';
  return e;
}

}  // namespace nudge::plugins::postgres
