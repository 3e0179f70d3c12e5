// libFuzzer target: the Socket.IO packet parser (socketio.hpp), which reads
// what any Socket.IO client sends after the Engine.IO "4". Besides not
// crashing, checks what the parser promises: an accepted event has a name
// and its arguments as a valid JSON array one shorter than the packet's (the
// arguments are cut from the text, not re-serialised, so this is the check
// that the cut is right); an accepted ack has its id and an array; a connect
// has an object or nothing; binary packets are never accepted.
// Seeds: socketio_corpus/; replayed by fuzz.websocket_socketio.* in every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <rapidjson/document.h>

#include "socketio.hpp"

namespace {

using namespace nudge::plugins::websocket;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "socketio fuzz: broken invariant: %s\n", what);
  std::abort();
}

constexpr unsigned kFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  socketio::ParseError error;
  const auto packet = socketio::parse_packet(text, error);
  if (!packet) {
    check(!error.message.empty(), "a refusal says why");
    return 0;
  }
  check(packet->type != socketio::PacketType::binary_event && packet->type != socketio::PacketType::binary_ack,
        "binary packets are refused");
  check(!packet->nsp.empty() && packet->nsp[0] == '/', "the namespace starts with '/'");
  rapidjson::Document whole;
  if (!packet->data.empty()) whole.Parse<kFlags>(packet->data.data(), packet->data.size());
  switch (packet->type) {
    case socketio::PacketType::event: {
      check(!packet->event.empty() || (whole.IsArray() && whole[0].IsString()), "an event has a name");
      rapidjson::Document args;
      args.Parse<kFlags>(packet->args.data(), packet->args.size());
      check(!args.HasParseError() && args.IsArray(), "the arguments are a JSON array");
      check(whole.IsArray() && args.Size() + 1 == whole.Size(), "the arguments are the array less its name");
      // And each argument is the packet's, in order.
      for (rapidjson::SizeType i = 0; i < args.Size(); ++i) check(args[i] == whole[i + 1], "the same arguments");
      // What the server sends back from these arguments is a packet it can read again.
      const std::string echoed = socketio::event_packet(packet->event, packet->args);
      socketio::ParseError again;
      const auto reread = socketio::parse_packet(std::string_view(echoed).substr(1), again);
      check(reread && reread->event == packet->event, "an event the server writes reads back");
      break;
    }
    case socketio::PacketType::ack:
      check(packet->ack_id.has_value() && whole.IsArray(), "an ack has its id and an array");
      break;
    case socketio::PacketType::connect:
      check(packet->data.empty() || whole.IsObject(), "connect data is an object or nothing");
      break;
    default:
      break;
  }
  return 0;
}
