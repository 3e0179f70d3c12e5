// libFuzzer target: FrameReader, the websocket source's reader of the raw
// bytes any client on the network sends after the upgrade. Besides not
// crashing, checks what the reader promises: the events are the same however
// the bytes are split across reads; a message is never over the size limit;
// a text message is valid UTF-8; after a failure nothing more is read.
// The first byte chooses the size limit and where the input is split.
// Seeds: wire_corpus/; replayed by the unit test fuzz.websocket_wire.* in
// every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "wire.hpp"

namespace {

using namespace nudge::plugins::websocket;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "websocket wire fuzz: broken invariant: %s\n", what);
  std::abort();
}

/// The events of reading `bytes` in pieces of `piece`, as text.
std::vector<std::string> read(std::vector<std::uint8_t> bytes, std::size_t piece, std::size_t max_message) {
  FrameReader reader(max_message);
  std::vector<std::string> events;
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    std::span<std::uint8_t> input(bytes.data() + at, std::min(piece, bytes.size() - at));
    while (true) {
      const auto event = reader.next(input);
      if (event == FrameReader::Event::need_more) {
        check(input.empty(), "need_more with input left");
        break;
      }
      switch (event) {
        case FrameReader::Event::message: {
          const auto message = reader.message();
          check(message.size() <= max_message, "a message over the limit");
          if (reader.is_text()) {
            Utf8Validator utf8;
            check(utf8.feed(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()) && utf8.complete(),
                  "a text message that is not UTF-8");
          }
          events.push_back((reader.is_text() ? "text:" : "binary:") + std::string(message));
          break;
        }
        case FrameReader::Event::ping:
          events.push_back("ping:" + std::string(reader.payload()));
          break;
        case FrameReader::Event::pong:
          events.push_back("pong:" + std::string(reader.payload()));
          break;
        case FrameReader::Event::close:
          events.push_back("close:" + std::to_string(reader.close_code()) + ":" + std::string(reader.payload()));
          break;
        case FrameReader::Event::failure: {
          events.push_back("failure:" + std::to_string(static_cast<int>(reader.failure_code())));
          std::span<std::uint8_t> more(bytes.data(), bytes.size());
          check(reader.next(more) == FrameReader::Event::failure, "reading on after a failure");
          return events;
        }
        case FrameReader::Event::need_more:
          break;
      }
    }
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t max_message = 16u << (data[0] & 0x0F);  // 16 B to 512 KiB
  const std::size_t piece = 1 + (data[0] >> 4);
  std::vector<std::uint8_t> bytes(data + 1, data + size);
  const auto whole = read(bytes, bytes.size() + 1, max_message);
  const auto split = read(bytes, piece, max_message);
  check(whole == split, "different events for different splits of the same bytes");
  return 0;
}
