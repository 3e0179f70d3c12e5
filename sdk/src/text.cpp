#include "nudge/sdk/text.hpp"

#include <cstddef>

namespace nudge {
namespace {

/// Length of the valid UTF-8 sequence at the start of `s` (1..4), or 0 if the
/// bytes there are not one; `bad` is then how many bytes to replace.
std::size_t utf8_sequence(std::string_view s, std::size_t& bad) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  bad = 1;
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

}  // namespace

bool is_valid_utf8(std::string_view text) noexcept {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = utf8_sequence(text.substr(i), bad);
    if (!len) return false;
    i += len;
  }
  return true;
}

bool repair_utf8(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size());
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

}  // namespace nudge
