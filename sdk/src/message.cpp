#include "nudge/sdk/message.hpp"

#include <sys/random.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>

#include "binary_codec.hpp"

namespace nudge {
namespace {

using detail::put_bytes;
using detail::put_varint;
using detail::Reader;

// UUIDv7 with a 16-bit sub-millisecond counter (RFC 9562 §6.2, method 1):
// the 12 bits of rand_a plus the top 4 bits of rand_b. The whole
// (milliseconds, counter) pair lives in one atomic word, so ids are strictly
// increasing across threads without a lock; when the counter of a millisecond
// runs out, the clock is borrowed from the next one.
std::atomic<std::uint64_t> g_last_tick{0};  // (unix_ms << 16) | counter

std::uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<std::uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

std::uint64_t next_tick() {
  const std::uint64_t wall = now_ms() << 16;
  std::uint64_t last = g_last_tick.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    next = wall > last ? wall : last + 1;
  } while (!g_last_tick.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return next;
}

/// 64 bits from the kernel's CSPRNG (getrandom), drawn 4 KiB at a time.
/// Ids are seen by every client: from a PRNG such as mt19937 a client could
/// read its state off 312 ids and predict everything it makes next.
std::uint64_t random_bits() {
  struct Pool {
    std::array<std::uint64_t, 512> words{};
    std::size_t next = 512;
  };
  thread_local Pool pool;
  if (pool.next == pool.words.size()) {
    auto* bytes = reinterpret_cast<std::uint8_t*>(pool.words.data());
    std::size_t filled = 0;
    while (filled < sizeof(pool.words)) {
      const ssize_t got = ::getrandom(bytes + filled, sizeof(pool.words) - filled, 0);
      if (got > 0) filled += static_cast<std::size_t>(got);
      else if (errno != EINTR) std::abort();  // no entropy source at all: nothing safe to do
    }
    pool.next = 0;
  }
  return pool.words[pool.next++];
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr char kMagic0 = 'N';
constexpr char kMagic1 = 'G';
constexpr char kEnvelopeVersion = 1;

}  // namespace

MessageId MessageId::generate() {
  const std::uint64_t tick = next_tick();
  const std::uint64_t ms = tick >> 16;
  const std::uint64_t counter = tick & 0xffff;
  const std::uint64_t rnd = random_bits();
  std::array<std::uint8_t, 16> b{};
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  // version 7, then the counter's top 12 bits (rand_a)
  b[6] = static_cast<std::uint8_t>(0x70 | ((counter >> 12) & 0x0f));
  b[7] = static_cast<std::uint8_t>((counter >> 4) & 0xff);
  // variant 0b10, the counter's low 4 bits, then 58 random bits
  b[8] = static_cast<std::uint8_t>(0x80 | ((counter & 0x0f) << 2) | (rnd & 0x03));
  for (int i = 9; i < 16; ++i) b[i] = static_cast<std::uint8_t>(rnd >> (2 + 8 * (i - 9)));
  return MessageId(b);
}

std::optional<MessageId> MessageId::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  std::array<std::uint8_t, 16> b{};
  std::size_t out = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    const int hi = hex_value(text[i]);
    const int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    b[out++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return MessageId(b);
}

std::string MessageId::to_string() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (std::size_t i = 0; i < bytes_.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(kHex[bytes_[i] >> 4]);
    s.push_back(kHex[bytes_[i] & 0x0f]);
  }
  return s;
}

std::int64_t MessageId::unix_ms() const noexcept {
  std::int64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | bytes_[i];
  return ms;
}

const std::string& Message::envelope() const {
  std::call_once(envelope_once_, [this] { envelope_ = encode_envelope(*this); });
  return envelope_;
}

std::string encode_envelope(const Message& m) {
  std::string out;
  out.reserve(3 + 16 + 8 + m.room.size() + m.sender.size() + m.origin.size() + m.payload.size() + 16);
  out.push_back(kMagic0);
  out.push_back(kMagic1);
  out.push_back(kEnvelopeVersion);
  out.append(reinterpret_cast<const char*>(m.id.bytes().data()), m.id.bytes().size());
  const auto ts = static_cast<std::uint64_t>(m.timestamp_ms);
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((ts >> shift) & 0xff));
  put_bytes(out, m.room);
  put_bytes(out, m.sender);
  put_bytes(out, m.origin);
  put_bytes(out, m.payload);
  put_varint(out, m.headers.size());
  for (const auto& [key, value] : m.headers) {
    put_bytes(out, key);
    put_bytes(out, value);
  }
  return out;
}

Status decode_envelope(std::string_view bytes, std::shared_ptr<Message>& out, const EnvelopeLimits& limits) {
  auto fail = [](const char* what) {
    return Status::error(StatusCode::invalid_argument, std::string("malformed envelope: ") + what);
  };
  Reader r(bytes);
  std::string_view head;
  if (!r.raw(3, head) || head[0] != kMagic0 || head[1] != kMagic1) return fail("bad magic");
  if (head[2] != kEnvelopeVersion) return fail("unsupported version");
  auto m = std::make_shared<Message>();
  std::string_view id_bytes;
  std::string_view ts_bytes;
  if (!r.raw(16, id_bytes)) return fail("truncated id");
  std::array<std::uint8_t, 16> id{};
  for (std::size_t i = 0; i < 16; ++i) id[i] = static_cast<std::uint8_t>(id_bytes[i]);
  m->id = MessageId(id);
  if (!r.raw(8, ts_bytes)) return fail("truncated timestamp");
  std::uint64_t ts = 0;
  for (char c : ts_bytes) ts = (ts << 8) | static_cast<std::uint8_t>(c);
  m->timestamp_ms = static_cast<std::int64_t>(ts);
  const auto limit = limits.max_field_bytes;
  if (!r.bytes(limit, m->room)) return fail("bad room");
  if (!r.bytes(limit, m->sender)) return fail("bad sender");
  if (!r.bytes(limit, m->origin)) return fail("bad origin");
  if (!r.bytes(limit, m->payload)) return fail("bad payload");
  std::uint64_t header_count = 0;
  if (!r.varint(header_count) || header_count > limits.max_headers) return fail("bad header count");
  m->headers.reserve(static_cast<std::size_t>(header_count));
  for (std::uint64_t i = 0; i < header_count; ++i) {
    std::string key;
    std::string value;
    if (!r.bytes(limit, key) || !r.bytes(limit, value)) return fail("bad header");
    m->headers.emplace_back(std::move(key), std::move(value));
  }
  if (!r.at_end()) return fail("trailing bytes");
  out = std::move(m);
  return Status::success();
}

bool is_ephemeral(const Message& message) noexcept {
  for (const auto& [key, value] : message.headers)
    if (key == kEphemeralHeader) return true;
  return false;
}

}  // namespace nudge
