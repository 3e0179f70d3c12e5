// libFuzzer target: parse_client_frame, the websocket source's parser of what
// any client on the network sends (one text frame). Besides not crashing,
// checks what the parser promises: an accepted frame has a valid room or name
// and a short ref; a refused one has one of the protocol's error codes; and
// whatever the server would send back about it (the ack, the message as
// delivered, the error) is valid JSON carrying the same strings.
// Seeds: corpus/; replayed by the unit test fuzz.websocket_protocol.* in every
// build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include "protocol.hpp"

namespace {

using namespace nudge::plugins::websocket;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "websocket protocol fuzz: broken invariant: %s\n", what);
  std::abort();
}

/// `json` is a JSON object (strictly: valid UTF-8) with string `key` equal to `value`.
bool has_string(const std::string& json, const char* key, std::string_view value) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  if (!doc.HasMember(key)) return false;
  const rapidjson::Value& member = doc[key];
  return member.IsString() && std::string_view(member.GetString(), member.GetStringLength()) == value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ProtocolError error;
  const auto frame = parse_client_frame(text, error);
  if (!frame) {
    check(error.code == "bad_json" || error.code == "bad_request" || error.code == "unknown_type",
          "a refusal has one of the protocol's codes");
    check(!error.message.empty(), "a refusal says why");
    const std::string reply = error_frame(error.ref, error.code, error.message);
    check(has_string(reply, "message", error.message), "the error frame is valid JSON with the message");
    check(error.ref.empty() || has_string(reply, "ref", error.ref), "the error frame carries the ref");
    return 0;
  }
  check(frame->ref.size() <= 128, "an accepted ref is at most 128 bytes");
  const nudge::MessageId id = nudge::MessageId::generate();
  check(has_string(ack_frame(frame->ref, id), "ref", frame->ref), "the ack is valid JSON with the ref");
  switch (frame->type) {
    case ClientFrame::Type::hello:
      check(is_valid_name(frame->name), "hello carries a valid name");
      break;
    case ClientFrame::Type::join:
    case ClientFrame::Type::leave:
      check(is_valid_room(frame->room), "join and leave carry a valid room");
      break;
    case ClientFrame::Type::presence: {
      check(is_valid_room(frame->room), "presence carries a valid room");
      nudge::PresenceList list;
      list.members.push_back(nudge::PresenceMember{"fuzz", "0123456789abcdef", "i"});
      list.total = 1;
      check(has_string(presence_reply_frame(frame->room, frame->ref, list, 10), "room", frame->room),
            "the presence reply is valid JSON with the room");
      break;
    }
    case ClientFrame::Type::send: {
      check(is_valid_room(frame->room), "send carries a valid room");
      nudge::Message m;
      m.id = id;
      m.room = frame->room;
      m.sender = "fuzz";
      m.payload = frame->text;
      if (frame->ephemeral) m.headers.emplace_back(std::string(nudge::kEphemeralHeader), "1");
      // The text was valid UTF-8 JSON, so it can go out to other clients as is.
      check(has_string(message_frame(m), "text", frame->text), "the delivered message is valid JSON with the text");
      break;
    }
  }
  return 0;
}
