#include "nudge/sdk/presence.hpp"

#include "binary_codec.hpp"

namespace nudge {

namespace {

using detail::put_bytes;
using detail::put_varint;
using detail::Reader;

constexpr char kMagic0 = 'N';
constexpr char kMagic1 = 'P';
constexpr char kVersion = 1;
/// Room, user, connection and instance names are short; anything longer is
/// not a frame a fanout sent.
constexpr std::size_t kMaxName = 64 * 1024;

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
  if (!in.bytes(kMaxName, f.room) || !in.bytes(kMaxName, f.instance) || !in.varint(f.total) || !in.varint(count))
    return malformed("truncated header");
  if (count > max_members) return malformed("too many members");
  if (f.kind != PresenceFrame::Kind::snapshot && count != 1) return malformed("a join or leave names one member");
  f.members.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    PresenceMember m;
    if (!in.bytes(kMaxName, m.user) || !in.bytes(kMaxName, m.connection)) return malformed("truncated member");
    m.instance = f.instance;
    f.members.push_back(std::move(m));
  }
  if (!in.at_end()) return malformed("trailing bytes");
  out = std::move(f);
  return Status::success();
}

}  // namespace nudge
