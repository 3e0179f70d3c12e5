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

namespace {

constexpr std::size_t kMaxDisplayName = 64;

/// Code points a name may not hold: controls (C0, DEL, C1), line and
/// paragraph separators, bidirectional controls, and every default-ignorable
/// code point (Unicode's DerivedCoreProperties: zero-width spaces and
/// joiners, soft hyphen, fillers, variation selectors, tags...). They either
/// reorder what is displayed ("\u202Eadmin") or display as nothing, so two
/// names that look alike would be different senders.
bool refused_in_name(char32_t c) noexcept {
  struct Range {
    char32_t first, last;
  };
  static constexpr Range kRefused[] = {
      {0x0000, 0x001F}, {0x007F, 0x009F},   {0x00AD, 0x00AD},   {0x034F, 0x034F},   {0x061C, 0x061C},
      {0x115F, 0x1160}, {0x17B4, 0x17B5},   {0x180B, 0x180F},   {0x200B, 0x200F},   {0x2028, 0x202E},
      {0x2060, 0x206F}, {0x3164, 0x3164},   {0xFE00, 0xFE0F},   {0xFEFF, 0xFEFF},   {0xFFA0, 0xFFA0},
      {0xFFF0, 0xFFFB}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0000, 0xE0FFF},
  };
  for (const auto& range : kRefused)
    if (c >= range.first && c <= range.last) return true;
  return false;
}

/// Space separators (Unicode category Zs): not at either end of a name, so
/// "admin\u00a0" does not pass for "admin".
bool is_space(char32_t c) noexcept {
  return c == 0x20 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F ||
         c == 0x3000 || c == 0x2800 /* braille blank: drawn as nothing */;
}

/// Combining marks of the common blocks: a name does not start with one
/// (it would draw on whatever the page shows before the name).
bool is_combining(char32_t c) noexcept {
  return (c >= 0x0300 && c <= 0x036F) || (c >= 0x1AB0 && c <= 0x1AFF) || (c >= 0x1DC0 && c <= 0x1DFF) ||
         (c >= 0x20D0 && c <= 0x20FF) || (c >= 0xFE20 && c <= 0xFE2F);
}

/// The code points of valid UTF-8 `text`, one at a time.
char32_t next_code_point(std::string_view text, std::size_t& at) noexcept {
  const auto lead = static_cast<unsigned char>(text[at]);
  const int length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  char32_t c = length == 1 ? lead : length == 2 ? (lead & 0x1F) : length == 3 ? (lead & 0x0F) : (lead & 0x07);
  for (int i = 1; i < length; ++i) c = (c << 6) | (static_cast<unsigned char>(text[at + i]) & 0x3F);
  at += static_cast<std::size_t>(length);
  return c;
}

}  // namespace

bool is_acceptable_display_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxDisplayName || !is_valid_utf8(name)) return false;
  char32_t first = 0;
  char32_t last = 0;
  for (std::size_t at = 0; at < name.size();) {
    const char32_t c = next_code_point(name, at);
    if (refused_in_name(c)) return false;
    if (first == 0) first = c;
    last = c;
  }
  // "admin " and "admin\u00a0" are not to pass for "admin"; a name of spaces,
  // or one starting with a combining mark, shows as nothing of its own.
  return !is_space(first) && !is_space(last) && !is_combining(first);
}

std::string one_line(std::string_view message) {
  std::string out;
  bool space = false;
  for (char c : message) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace nudge
