#pragma once

// The length-prefixed binary encoding shared by the message envelope
// (message.cpp) and the presence frame (presence.cpp): LEB128 varints and
// varint-prefixed byte strings. Internal to the SDK library (not installed):
// the formats are specified by what encode_envelope and encode_presence_frame
// write, and the fuzzers check both decoders.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nudge::detail {

inline void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline void put_bytes(std::string& out, std::string_view bytes) {
  put_varint(out, bytes.size());
  out.append(bytes);
}

/// Reads untrusted input front to back; every read says whether the input
/// had what was asked for, and nothing reads past its end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool raw(std::size_t n, std::string_view& out) {
    if (in_.size() - pos_ < n) return false;
    out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool byte(std::uint8_t& out) {
    if (pos_ >= in_.size()) return false;
    out = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
  /// At most ten bytes (64 bits); a longer run of continuation bytes is refused.
  bool varint(std::uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      std::uint8_t b = 0;
      if (!byte(b)) return false;
      out |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  /// A varint length, at most `limit`, and that many bytes.
  bool bytes(std::size_t limit, std::string& out) {
    std::uint64_t n = 0;
    std::string_view view;
    if (!varint(n) || n > limit || !raw(static_cast<std::size_t>(n), view)) return false;
    out.assign(view);
    return true;
  }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

}  // namespace nudge::detail
