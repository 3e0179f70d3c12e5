#include "protocol.hpp"

#include <algorithm>
#include <chrono>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "json_writer.hpp"
#include "nudge/sdk/text.hpp"

namespace nudge::plugins::websocket {

namespace {

constexpr std::size_t kMaxRoom = 128;
constexpr std::size_t kMaxRef = 128;

bool put(JsonWriter& w, std::string_view key, std::string_view value) {
  return w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size())) && write_string(w, value);
}

/// At most `max` bytes of `text` (valid UTF-8), cut at a character boundary:
/// a cut inside a character would make the error frame invalid UTF-8.
std::string_view utf8_prefix(std::string_view text, std::size_t max) {
  if (text.size() <= max) return text;
  while (max > 0 && (static_cast<unsigned char>(text[max]) & 0xC0) == 0x80) --max;
  return text.substr(0, max);
}

std::optional<std::string> string_member(const rapidjson::Value& object, const char* key) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

bool is_valid_room(std::string_view room) {
  if (room.empty() || room.size() > kMaxRoom) return false;
  for (char c : room) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::string not_joined_message(std::string_view room) {
  if (!is_valid_room(room))
    return "join the room before sending to it (a room name is 1 to 128 characters of A-Z a-z 0-9 _ - . :)";
  return "join room '" + std::string(room) + "' before sending to it";
}

bool is_valid_name(std::string_view name) { return is_acceptable_display_name(name); }

std::optional<ClientFrame> parse_client_frame(std::string_view text, ProtocolError& error) {
  rapidjson::Document doc;
  // Iterative: nesting depth costs heap, not stack, so `[[[[...` cannot overflow the stack.
  doc.Parse<kJsonParseFlags>(text.data(), text.size());
  if (doc.HasParseError()) {
    error = {"bad_json",
             std::string("not valid JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
                 std::to_string(doc.GetErrorOffset()),
             ""};
    return std::nullopt;
  }
  if (!doc.IsObject()) {
    error = {"bad_json", "a frame must be a JSON object", ""};
    return std::nullopt;
  }
  // rapidjson 1.1.0 decodes a lone low-surrogate escape ("\udc00") into bytes
  // that are not UTF-8 (kParseValidateEncodingFlag checks the raw input only);
  // such a string could not go back out in a text frame (ack, error, message).
  for (const char* key : {"type", "ref", "name", "room", "text"}) {
    auto it = doc.FindMember(key);
    if (it != doc.MemberEnd() && it->value.IsString() &&
        !is_valid_utf8(std::string_view(it->value.GetString(), it->value.GetStringLength()))) {
      error = {"bad_json", std::string("'") + key + "' holds an unpaired UTF-16 surrogate escape", ""};
      return std::nullopt;
    }
  }
  ClientFrame frame;
  if (const auto it = doc.FindMember("ref"); it != doc.MemberEnd()) {
    // A ref the client cannot have meant as one (a number, null, "") would
    // make a resend a second message: refused, not dropped.
    if (!it->value.IsString() || it->value.GetStringLength() == 0 || it->value.GetStringLength() > kMaxRef) {
      error = {"bad_request", "'ref' must be a string of 1 to 128 bytes", ""};
      return std::nullopt;
    }
    frame.ref.assign(it->value.GetString(), it->value.GetStringLength());
  }
  error.ref = frame.ref;
  const auto type = string_member(doc, "type");
  if (!type) {
    error.code = "bad_request";
    error.message = "missing string field 'type'";
    return std::nullopt;
  }
  auto need_room = [&]() -> bool {
    auto room = string_member(doc, "room");
    if (!room) {
      error.code = "bad_request";
      error.message = "missing string field 'room'";
      return false;
    }
    if (!is_valid_room(*room)) {
      error.code = "bad_request";
      error.message = "invalid room name: use 1 to 128 characters of A-Z a-z 0-9 _ - . :";
      return false;
    }
    frame.room = std::move(*room);
    return true;
  };
  if (*type == "hello") {
    frame.type = ClientFrame::Type::hello;
    auto name = string_member(doc, "name");
    if (!name || !is_valid_name(*name)) {
      error.code = "bad_request";
      error.message = kNameRule;
      return std::nullopt;
    }
    frame.name = std::move(*name);
  } else if (*type == "join" || *type == "leave") {
    frame.type = *type == "join" ? ClientFrame::Type::join : ClientFrame::Type::leave;
    if (!need_room()) return std::nullopt;
    if (frame.type == ClientFrame::Type::join && doc.HasMember("after")) {
      auto after = string_member(doc, "after");
      frame.after = after ? MessageId::parse(*after) : std::nullopt;
      if (!frame.after) {
        error.code = "bad_request";
        error.message = "'after' must be the id of a message (a UUID string)";
        return std::nullopt;
      }
    }
  } else if (*type == "send") {
    frame.type = ClientFrame::Type::send;
    if (!need_room()) return std::nullopt;
    auto body = string_member(doc, "text");
    if (!body) {
      error.code = "bad_request";
      error.message = "missing string field 'text'";
      return std::nullopt;
    }
    frame.text = std::move(*body);
    if (const auto it = doc.FindMember("ephemeral"); it != doc.MemberEnd()) {
      // "true" or 1 would be a client that meant something we cannot be sure of.
      if (!it->value.IsBool()) {
        error.code = "bad_request";
        error.message = "'ephemeral' must be true or false";
        return std::nullopt;
      }
      frame.ephemeral = it->value.GetBool();
    }
  } else if (*type == "presence") {
    frame.type = ClientFrame::Type::presence;
    if (!need_room()) return std::nullopt;
  } else {
    error.code = "unknown_type";
    error.message = "unknown frame type '" + std::string(utf8_prefix(*type, 64)) +
                    "'; expected hello, join, leave, send or presence";
    return std::nullopt;
  }
  return frame;
}

std::string message_frame(const Message& m, bool history) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  bool ok = put(w, "type", is_ephemeral(m) ? "ephemeral" : "message") && put(w, "id", m.id.to_string()) &&
            put(w, "room", m.room) && put(w, "sender", m.sender) && put(w, "text", m.payload) && w.Key("ts") &&
            w.Int64(m.timestamp_ms);
  if (history) ok = ok && w.Key("history") && w.Bool(true);
  ok = ok && w.EndObject();
  if (!ok) return {};
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string presence_event_frame(std::string_view room, const PresenceEvent& event) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  const char* type = "presence_join";
  switch (event.change) {
    case PresenceChange::join:
      type = "presence_join";
      break;
    case PresenceChange::leave:
      type = "presence_leave";
      break;
  }
  const bool ok = w.StartObject() && put(w, "type", type) && put(w, "room", room) &&
                  put(w, "user", event.member.user) && put(w, "client", event.member.connection) && w.EndObject();
  if (!ok) return {};
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string presence_members_json(const PresenceList& list, std::size_t max_members) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartArray();
  std::size_t listed = 0;
  for (const auto& member : list.members) {
    if (listed >= max_members) break;
    // A member another instance named in bytes that are not UTF-8 would
    // break the writer mid-array: it is left out, still in `total`.
    if (!is_valid_utf8(member.user) || !is_valid_utf8(member.connection)) continue;
    w.StartObject();
    put(w, "user", member.user);
    put(w, "client", member.connection);
    w.EndObject();
    ++listed;
  }
  w.EndArray();
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string presence_reply_frame(std::string_view room, std::string_view ref, const PresenceList& list,
                                 std::size_t max_members) {
  std::string out = "{\"type\":\"presence\",\"room\":" + json_string(room);
  if (!ref.empty()) out += ",\"ref\":" + json_string(ref);
  out += ",\"members\":" + presence_members_json(list, max_members);
  out += ",\"total\":" + std::to_string(std::max<std::size_t>(list.total, list.members.size())) + "}";
  return out;
}

std::string joined_frame(std::string_view room, std::size_t history) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "type", "joined");
  put(w, "room", room);
  w.Key("history");
  w.Uint64(history);
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string_view error_code_for(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::ok:
      return "ok";
    case StatusCode::invalid_argument:
      return "bad_request";
    case StatusCode::rejected:
      return "rejected";
    case StatusCode::unavailable:
    case StatusCode::timeout:
    case StatusCode::cancelled:
      return "unavailable";
    case StatusCode::internal:
      return "internal";
  }
  return "internal";
}

std::int64_t now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string ack_frame(std::string_view ref, const MessageId& id) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "type", "ack");
  put(w, "ref", ref);
  put(w, "id", id.to_string());
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string error_frame(std::string_view ref, std::string_view code, std::string_view message) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "type", "error");
  if (!ref.empty()) put(w, "ref", ref);
  put(w, "code", code);
  put(w, "message", message);
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace nudge::plugins::websocket
