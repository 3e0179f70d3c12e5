#include "header.hpp"

#include <charconv>

namespace nudge::bench {
namespace {

constexpr std::string_view kMarker = "nb1.";

template <typename T>
bool take_field(std::string_view& rest, T& value, int base) {
  const char* end = rest.data() + rest.size();
  auto [ptr, ec] = std::from_chars(rest.data(), end, value, base);
  if (ec != std::errc{} || ptr == rest.data() || ptr == end || *ptr != '.') return false;
  rest.remove_prefix(static_cast<std::size_t>(ptr - rest.data()) + 1);
  return true;
}

template <typename T>
void put_field(std::string& out, T value, int base) {
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, value, base);
  (void)ec;  // 24 bytes hold any 64-bit number
  out.append(buf, ptr);
  out.push_back('.');
}

}  // namespace

void append_header(std::string& out, const MessageHeader& header, std::size_t payload_bytes) {
  const std::size_t start = out.size();
  out.append(kMarker);
  char run[9];
  constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) run[i] = kHex[(header.run >> (28 - 4 * i)) & 0xf];
  out.append(run, 8);
  out.push_back('.');
  put_field(out, header.sender, 10);
  put_field(out, header.seq, 10);
  put_field(out, header.scheduled_ns, 10);
  const std::size_t written = out.size() - start;
  if (written < payload_bytes) out.append(payload_bytes - written, 'x');
}

std::string encode_header(const MessageHeader& header, std::size_t payload_bytes) {
  std::string out;
  out.reserve(std::max<std::size_t>(payload_bytes, 64));
  append_header(out, header, payload_bytes);
  return out;
}

std::optional<MessageHeader> find_header(std::string_view frame) noexcept {
  const std::size_t at = frame.find(kMarker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = frame.substr(at + kMarker.size());
  if (rest.size() < 9 || rest[8] != '.') return std::nullopt;
  MessageHeader h;
  std::string_view run = rest.substr(0, 8);
  auto [ptr, ec] = std::from_chars(run.data(), run.data() + 8, h.run, 16);
  if (ec != std::errc{} || ptr != run.data() + 8) return std::nullopt;
  rest.remove_prefix(9);
  if (!take_field(rest, h.sender, 10) || !take_field(rest, h.seq, 10) || !take_field(rest, h.scheduled_ns, 10)) {
    return std::nullopt;
  }
  return h;
}

}  // namespace nudge::bench
