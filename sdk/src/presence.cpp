#include "nudge/sdk/presence.hpp"

namespace nudge {

namespace {

constexpr char kMagic0 = 'N';
constexpr char kMagic1 = 'P';
constexpr char kVersion = 1;
/// Room, user, connection and instance names are short; anything longer is
/// not a frame a fanout sent.
constexpr std::size_t kMaxName = 64 * 1024;

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_bytes(std::string& out, std::string_view bytes) {
  put_varint(out, bytes.size());
  out.append(bytes);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool byte(std::uint8_t& out) {
    if (pos_ >= in_.size()) return false;
    out = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
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
  bool bytes(std::string& out) {
    std::uint64_t n = 0;
    if (!varint(n) || n > kMaxName || in_.size() - pos_ < n) return false;
    out.assign(in_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

Status malformed(const char* what) {
  return Status::error(StatusCode::invalid_argument, std::string("malformed presence frame: ") + what);
}

}  // namespace

std::string encode_presence_frame(const PresenceFrame& frame) {
  std::string out{kMagic0, kMagic1, kVersion, static_cast<char>(frame.kind)};
  put_bytes(out, frame.room);
  put_bytes(out, frame.instance);
  put_varint(out, frame.total);
  put_varint(out, frame.members.size());
  for (const auto& m : frame.members) {
    put_bytes(out, m.user);
    put_bytes(out, m.connection);
  }
  return out;
}

bool is_presence_frame(std::string_view bytes) noexcept {
  return bytes.size() >= 3 && bytes[0] == kMagic0 && bytes[1] == kMagic1 && bytes[2] == kVersion;
}

Status decode_presence_frame(std::string_view bytes, PresenceFrame& out, std::size_t max_members) {
  if (!is_presence_frame(bytes)) return malformed("no N,P,1 magic");
  Reader in(bytes.substr(3));
  std::uint8_t kind = 0;
  if (!in.byte(kind) || kind < 1 || kind > 3) return malformed("unknown kind");
  PresenceFrame f;
  f.kind = static_cast<PresenceFrame::Kind>(kind);
  std::uint64_t count = 0;
  if (!in.bytes(f.room) || !in.bytes(f.instance) || !in.varint(f.total) || !in.varint(count))
    return malformed("truncated header");
  if (count > max_members) return malformed("too many members");
  if (f.kind != PresenceFrame::Kind::snapshot && count != 1) return malformed("a join or leave names one member");
  f.members.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    PresenceMember m;
    if (!in.bytes(m.user) || !in.bytes(m.connection)) return malformed("truncated member");
    m.instance = f.instance;
    f.members.push_back(std::move(m));
  }
  if (!in.at_end()) return malformed("trailing bytes");
  out = std::move(f);
  return Status::success();
}

}  // namespace nudge
