// Writes the envelope fuzzer's seed corpus: real envelopes from
// encode_envelope (fixed ids and times, so the files do not change from run to
// run), each a shape worth starting from. Built in the fuzz preset:
//   build-fuzz/bin/fuzz_envelope_make_seeds sdk/fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "nudge/sdk/message.hpp"

namespace {

// Message is not movable (it caches its envelope): each seed fills one in place.
void base(nudge::Message& m) {
  m.id = *nudge::MessageId::parse("019ac9a0-1c2b-7a3d-8e4f-0123456789ab");
  m.timestamp_ms = 1764300000123;
  m.room = "general";
  m.sender = "alice";
  m.origin = "chat-1-3f2a1c";
  m.payload = "hello";
}

void write(const std::filesystem::path& file, const nudge::Message& m) {
  std::ofstream out(file, std::ios::binary);
  const std::string bytes = nudge::encode_envelope(m);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  {
    nudge::Message m;
    base(m);
    write(dir / "chat-message", m);
  }
  {
    nudge::Message m;
    base(m);
    m.headers = {{"trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"}, {"empty", ""}};
    write(dir / "with-headers", m);
  }
  {
    nudge::Message m;
    base(m);
    static constexpr char kBytes[] = "nul \0 emoji \xF0\x9F\x98\x80 quote \" backslash \\ invalid \xff";
    m.payload = std::string(kBytes, sizeof kBytes - 1);
    write(dir / "binary-payload", m);
  }
  {
    nudge::Message m;  // nil id, time 0, every string empty
    write(dir / "all-empty", m);
  }
  {
    nudge::Message m;
    base(m);
    m.timestamp_ms = -1;                // all bits set
    m.payload = std::string(300, 'x');  // a two-byte varint length
    write(dir / "long-payload-negative-time", m);
  }
  {
    nudge::Message m;
    base(m);
    for (int i = 0; i < 5; ++i) m.headers.emplace_back("h" + std::to_string(i), std::string(i, 'v'));
    m.room = "team:eng.backend-1";
    write(dir / "many-headers", m);
  }
  return 0;
}
