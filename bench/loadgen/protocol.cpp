#include "protocol.hpp"

#include <charconv>

#include <rapidjson/document.h>

namespace nudge::bench {
namespace {

// Only for strings the benchmark makes itself (room names, names): no byte
// that JSON escapes. Anything else is the caller's bug.
void append_plain_string(std::string& out, std::string_view s) {
  out.push_back('"');
  out.append(s);
  out.push_back('"');
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::string_view member_string(const rapidjson::Value& object, const char* key) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

}  // namespace

std::string_view to_string(Protocol protocol) noexcept {
  switch (protocol) {
    case Protocol::nudge:
      return "nudge";
    case Protocol::socket_io:
      return "socketio";
  }
  return "?";
}

std::string nudge_hello(std::string_view name) {
  std::string out = R"({"type":"hello","name":)";
  append_plain_string(out, name);
  out.push_back('}');
  return out;
}

std::string nudge_join(std::string_view room) {
  std::string out = R"({"type":"join","room":)";
  append_plain_string(out, room);
  out.push_back('}');
  return out;
}

std::string nudge_send(std::string_view room, const MessageHeader& header, std::size_t payload_bytes) {
  std::string out;
  out.reserve(payload_bytes + room.size() + 80);
  out.append(R"({"type":"send","room":)");
  append_plain_string(out, room);
  out.append(R"(,"text":")");
  append_header(out, header, payload_bytes);
  out.append(R"(","ref":")");
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, header.seq);
  (void)ec;
  out.append(buf, ptr);
  out.append("\"}");
  return out;
}

Incoming parse_nudge(std::string_view frame) {
  Incoming in;
  constexpr std::string_view kMessagePrefix = R"({"type":"message")";
  // A room's history, sent on joining, is not a delivery of this run.
  if (frame.starts_with(kMessagePrefix) && frame.ends_with(R"(,"history":true})")) {
    in.kind = Incoming::Kind::other;
    return in;
  }
  if (frame.starts_with(kMessagePrefix)) {
    in.kind = Incoming::Kind::delivery;
    in.header = find_header(frame);
    return in;
  }
  rapidjson::Document doc;
  doc.Parse(frame.data(), frame.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    in.kind = Incoming::Kind::malformed;
    return in;
  }
  const std::string_view type = member_string(doc, "type");
  if (type == "message") {
    in.kind = Incoming::Kind::delivery;
    in.header = find_header(member_string(doc, "text"));
  } else if (type == "ack") {
    in.kind = Incoming::Kind::ack;
    in.ref = to_u64(member_string(doc, "ref"));
    if (!in.ref) in.kind = Incoming::Kind::malformed;
  } else if (type == "error") {
    in.kind = Incoming::Kind::error;
    in.ref = to_u64(member_string(doc, "ref"));
    in.code = std::string(member_string(doc, "code"));
    if (in.code.empty()) in.code = "(none)";
  } else {
    in.kind = Incoming::Kind::other;
  }
  return in;
}

std::string socketio_path(std::string_view base) {
  std::string path(base.empty() ? "/socket.io/" : base);
  if (path.back() != '/') path.push_back('/');
  path.append("?EIO=4&transport=websocket");
  return path;
}

std::string socketio_join(std::string_view room) {
  std::string out = R"(42["join",)";
  append_plain_string(out, room);
  out.push_back(']');
  return out;
}

std::string socketio_send(const MessageHeader& header, std::size_t payload_bytes, std::optional<std::uint64_t> ack_id) {
  std::string out;
  out.reserve(payload_bytes + 64);
  out.append("42");
  if (ack_id) {
    char buf[24];
    auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, *ack_id);
    (void)ec;
    out.append(buf, ptr);
  }
  out.append(R"(["event:message",{"message":")");
  append_header(out, header, payload_bytes);
  out.append("\"}]");
  return out;
}

Incoming parse_socketio(std::string_view frame) {
  Incoming in;
  if (frame.empty()) {
    in.kind = Incoming::Kind::malformed;
    return in;
  }
  switch (frame[0]) {
    case '0':
      in.kind = Incoming::Kind::open;
      return in;
    case '1':
      in.kind = Incoming::Kind::close;
      return in;
    case '2':
      in.kind = Incoming::Kind::ping;
      return in;
    case '4':
      break;  // a Socket.IO packet, below
    default:
      in.kind = Incoming::Kind::other;  // pong, upgrade, noop, or an unknown type
      return in;
  }
  if (frame.size() < 2) {
    in.kind = Incoming::Kind::malformed;
    return in;
  }
  std::string_view rest = frame.substr(2);
  // Packets of another namespace ("/admin,...") are not ours.
  if (!rest.empty() && rest[0] == '/') {
    in.kind = Incoming::Kind::other;
    return in;
  }
  const auto digits_end = rest.find_first_not_of("0123456789");
  const std::string_view id = rest.substr(0, std::min(digits_end, rest.size()));
  const std::string_view data = rest.substr(id.size());
  switch (frame[1]) {
    case '0':
      in.kind = Incoming::Kind::connected;
      return in;
    case '1':
      in.kind = Incoming::Kind::close;
      return in;
    case '2': {  // EVENT
      if (data.starts_with(R"(["message")") && data.ends_with(R"(,\"history\":true}"])")) {
        in.kind = Incoming::Kind::other;  // history on joining, not a delivery of this run
      } else if (data.starts_with(R"(["message")")) {
        in.kind = Incoming::Kind::delivery;
        in.header = find_header(data);
      } else if (data.starts_with(R"(["error")")) {
        in.kind = Incoming::Kind::error;
        in.code = "event:error";
      } else if (data.starts_with("[")) {
        in.kind = Incoming::Kind::other;
      } else {
        in.kind = Incoming::Kind::malformed;
      }
      return in;
    }
    case '3':  // ACK
      in.ref = to_u64(id);
      in.kind = in.ref ? Incoming::Kind::ack : Incoming::Kind::malformed;
      return in;
    case '4':
      in.kind = Incoming::Kind::connect_error;
      in.code = "connect_error";
      return in;
    default:
      in.kind = Incoming::Kind::other;  // binary event/ack: not used here
      return in;
  }
}

}  // namespace nudge::bench
