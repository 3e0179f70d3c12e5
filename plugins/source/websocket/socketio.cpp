#include "socketio.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include <openssl/rand.h>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "json_writer.hpp"

namespace nudge::plugins::websocket::socketio {

std::string new_session_id() {
  std::array<unsigned char, 15> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("OpenSSL's random generator failed");
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string id;
  id.reserve(20);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t triple = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) id.push_back(kAlphabet[(triple >> shift) & 0x3f]);
  }
  return id;
}

namespace {

/// Larger ids are not exact in the client's JavaScript numbers.
constexpr std::uint64_t kMaxAckId = (std::uint64_t{1} << 53) - 1;
/// Event names Socket.IO keeps for itself: a client may not emit them.
constexpr std::array<std::string_view, 6> kReservedEvents = {"connect",       "connect_error", "disconnect",
                                                             "disconnecting", "newListener",   "removeListener"};

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/// The elements after the first of a valid JSON array whose first element is
/// a string, as a JSON array: taken from the text as sent, not re-serialised
/// (no recursion however deep the arguments, and the client's bytes kept).
std::string rest_of_array(std::string_view json) {
  std::size_t i = json.find('"');  // the name's opening quote
  for (++i; json[i] != '"'; ++i)
    if (json[i] == '\\') ++i;
  for (++i; is_json_space(json[i]); ++i) {
  }
  if (json[i] == ']') return "[]";
  return "[" + std::string(json.substr(i + 1));  // after the comma, up to and with the closing bracket
}

std::optional<Packet> refuse(ParseError& error, std::string message) {
  error.message = std::move(message);
  return std::nullopt;
}

}  // namespace

std::optional<EnginePacket> parse_engine_packet(std::string_view frame) {
  if (frame.empty() || frame[0] < '0' || frame[0] > '6') return std::nullopt;
  return EnginePacket{static_cast<EngineType>(frame[0]), frame.substr(1)};
}

std::optional<BinaryHeader> parse_binary_header(std::string_view text) {
  if (text.empty() || (text[0] != '5' && text[0] != '6')) return std::nullopt;
  std::size_t at = 1;
  // Reads every digit there is; a number past `limit` is none.
  auto number = [&](std::uint64_t limit) -> std::optional<std::uint64_t> {
    std::uint64_t value = 0;
    bool over = false;
    const std::size_t from = at;
    for (; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at) {
      if (value > limit) over = true;
      else value = value * 10 + static_cast<std::uint64_t>(text[at] - '0');
    }
    if (at == from || over || value > limit) return std::nullopt;
    return value;
  };
  BinaryHeader header;
  const auto attachments = number(1000);
  if (at < text.size() && text[at] == '-') {
    header.attachments = attachments.value_or(0);
    ++at;
  }
  if (at < text.size() && text[at] == '/') {
    const auto comma = text.find(',', at);
    at = comma == std::string_view::npos ? text.size() : comma + 1;
  }
  header.ack_id = number(kMaxAckId);
  return header;
}

std::optional<Packet> parse_packet(std::string_view text, ParseError& error) {
  if (text.empty()) return refuse(error, "empty packet");
  const char type = text[0];
  if (type < '0' || type > '6') return refuse(error, "unknown packet type '" + std::string(1, type) + "'");
  Packet p;
  p.type = static_cast<PacketType>(type);
  if (p.type == PacketType::binary_event || p.type == PacketType::binary_ack)
    return refuse(error, "binary packets are not supported; send JSON");
  std::size_t at = 1;
  if (at < text.size() && text[at] == '/') {
    const auto comma = text.find(',', at);
    const auto end = comma == std::string_view::npos ? text.size() : comma;
    p.nsp = std::string(text.substr(at, end - at));
    at = comma == std::string_view::npos ? end : end + 1;
  }
  if (at < text.size() && text[at] >= '0' && text[at] <= '9') {
    std::uint64_t id = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      id = id * 10 + static_cast<std::uint64_t>(text[at++] - '0');
      if (id > kMaxAckId) return refuse(error, "acknowledgement id out of range");
    }
    p.ack_id = id;
  }
  p.data = std::string(text.substr(at));
  rapidjson::Document doc;
  const bool has_data = !p.data.empty();
  if (has_data) {
    doc.Parse<kJsonParseFlags>(p.data.data(), p.data.size());
    if (doc.HasParseError())
      return refuse(error, std::string("malformed JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
                               rapidjson::GetParseError_En(doc.GetParseError()));
  }
  switch (p.type) {
    case PacketType::connect:
      if (p.ack_id) return refuse(error, "a connect packet carries no acknowledgement id");
      if (has_data && !doc.IsObject()) return refuse(error, "connect data must be a JSON object");
      break;
    case PacketType::disconnect:
      if (has_data || p.ack_id) return refuse(error, "a disconnect packet carries no data");
      break;
    case PacketType::event: {
      if (!has_data || !doc.IsArray() || doc.Empty() || !doc[0].IsString())
        return refuse(error, "an event must be a JSON array whose first element is the event's name");
      p.event.assign(doc[0].GetString(), doc[0].GetStringLength());
      if (std::find(kReservedEvents.begin(), kReservedEvents.end(), p.event) != kReservedEvents.end())
        return refuse(error, "'" + p.event + "' is a reserved event name");
      p.args = rest_of_array(p.data);
      break;
    }
    case PacketType::ack:
      if (!p.ack_id) return refuse(error, "an ack packet needs its acknowledgement id");
      if (!has_data || !doc.IsArray()) return refuse(error, "ack data must be a JSON array");
      break;
    case PacketType::connect_error:
      return refuse(error, "connect_error is sent by servers only");
    case PacketType::binary_event:
    case PacketType::binary_ack:
      break;  // refused above
  }
  return p;
}

std::string open_packet(std::string_view sid, bool can_upgrade, std::int64_t ping_interval_ms,
                        std::int64_t ping_timeout_ms, std::int64_t max_payload) {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  w.Key("sid");
  write_string(w, sid);
  w.Key("upgrades");
  w.StartArray();
  if (can_upgrade) w.String("websocket");
  w.EndArray();
  w.Key("pingInterval");
  w.Int64(ping_interval_ms);
  w.Key("pingTimeout");
  w.Int64(ping_timeout_ms);
  w.Key("maxPayload");
  w.Int64(max_payload);
  w.EndObject();
  return "0" + std::string(out.GetString(), out.GetSize());
}

std::string connect_packet(std::string_view sid) {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  w.Key("sid");
  write_string(w, sid);
  w.EndObject();
  return "40" + std::string(out.GetString(), out.GetSize());
}

std::string connect_error_packet(std::string_view nsp, std::string_view message) {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  w.Key("message");
  write_string(w, message);
  w.EndObject();
  std::string packet = "44";
  if (nsp != "/") packet.append(nsp).append(",");
  return packet + std::string(out.GetString(), out.GetSize());
}

std::string event_packet(std::string_view name, std::string_view args_json) {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  write_string(w, name);
  std::string packet = "42[";
  packet.append(out.GetString(), out.GetSize());
  // args_json is "[...]": splice its elements in after the name.
  const auto inner = args_json.size() >= 2 ? args_json.substr(1, args_json.size() - 2) : std::string_view();
  if (inner.find_first_not_of(" \t\r\n") != std::string_view::npos) packet.append(",").append(inner);
  packet.append("]");
  return packet;
}

std::string ack_packet(std::uint64_t id, std::string_view args_json) {
  return "43" + std::to_string(id) + std::string(args_json.empty() ? std::string_view("[]") : args_json);
}

}  // namespace nudge::plugins::websocket::socketio
