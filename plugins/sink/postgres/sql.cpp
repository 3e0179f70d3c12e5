#include "sql.hpp"

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
         " m.origin, m.log_partition, m.log_offset FROM " + table.quoted() + " AS m" +
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

/// Length of the valid UTF-8 sequence at the start of `s` (1..4), or 0 if the
/// bytes there are not one; `bad` is then how many bytes to replace.
std::size_t utf8_sequence(std::string_view s, std::size_t& bad) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  bad = 1;
  if (b0 == 0) return 0;
  if (b0 < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) len = 2;
  else if (b0 == 0xe0) len = 3, lo = 0xa0;
  else if (b0 >= 0xe1 && b0 <= 0xec) len = 3;
  else if (b0 == 0xed) len = 3, hi = 0x9f;  // no UTF-16 surrogates
  else if (b0 >= 0xee && b0 <= 0xef) len = 3;
  else if (b0 == 0xf0) len = 4, lo = 0x90;
  else if (b0 >= 0xf1 && b0 <= 0xf3) len = 4;
  else if (b0 == 0xf4) len = 4, hi = 0x8f;  // nothing above U+10FFFF
  else return 0;
  for (std::size_t i = 1; i < len; ++i) {
    const bool ok = i < s.size() && byte(i) >= (i == 1 ? lo : 0x80) && byte(i) <= (i == 1 ? hi : 0xbf);
    if (!ok) {
      bad = i;  // the lead byte and the continuation bytes that fit: one replacement
      return 0;
    }
  }
  return len;
}

bool valid_utf8(std::string_view text) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = utf8_sequence(text.substr(i), bad);
    if (!len) return false;
    i += len;
  }
  return true;
}

void append_text(std::string& out, std::string_view text, std::size_t& repaired) {
  // The common case, valid text, is copied as is.
  std::string scratch;
  if (!valid_utf8(text) && repair_utf8(text, scratch)) {
    ++repaired;
    append_array_element(out, scratch);
  } else {
    append_array_element(out, text);
  }
}

}  // namespace

bool repair_utf8(std::string_view text, std::string& out) {
  out.clear();
  bool replaced = false;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t bad = 0;
    const std::size_t len = utf8_sequence(text.substr(i), bad);
    if (len) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      i += bad;
      replaced = true;
    }
  }
  return replaced;
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
  std::string* all[] = {&e.ids, &e.rooms, &e.senders, &e.payloads, &e.timestamps, &e.origins, &e.partitions,
                        &e.offsets};
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
