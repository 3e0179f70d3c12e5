// libFuzzer target: decode_envelope on untrusted bytes (what a fanout or a log
// hands the runtime). Besides not crashing, checks the decoder's contract:
// a refusal is invalid_argument and leaves `out` untouched; whatever decodes
// re-encodes to an envelope that decodes to the same message, and encoding is
// a fixed point from there on. Seeds: corpus/ (real envelopes from
// encode_envelope, see make_seeds.cpp); replayed by the unit test
// fuzz.envelope.* in every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "nudge/sdk/message.hpp"

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "envelope fuzz: broken invariant: %s\n", what);
  std::abort();
}

bool same(const nudge::Message& a, const nudge::Message& b) {
  return a.id == b.id && a.timestamp_ms == b.timestamp_ms && a.room == b.room && a.sender == b.sender &&
         a.origin == b.origin && a.payload == b.payload && a.headers == b.headers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::shared_ptr<nudge::Message> message;
  const nudge::Status status = nudge::decode_envelope(bytes, message);

  // Tight limits refuse more, never accept something the defaults refuse.
  std::shared_ptr<nudge::Message> small;
  const nudge::Status tight = nudge::decode_envelope(bytes, small, nudge::EnvelopeLimits{32, 2});
  check(!tight.ok() || status.ok(), "accepted under tight limits but refused under the defaults");

  if (!status.ok()) {
    check(status.code() == nudge::StatusCode::invalid_argument, "a refusal is invalid_argument");
    check(message == nullptr, "a refusal leaves `out` untouched");
    return 0;
  }
  check(message != nullptr, "success yields a message");

  const std::string encoded = nudge::encode_envelope(*message);
  check(message->envelope() == encoded, "the cached envelope is encode_envelope's");
  std::shared_ptr<nudge::Message> again;
  check(nudge::decode_envelope(encoded, again).ok(), "a re-encoded envelope decodes");
  check(same(*message, *again), "a re-encoded envelope decodes to the same message");
  check(nudge::encode_envelope(*again) == encoded, "encoding is a fixed point");
  // Varints are the only thing with more than one spelling: a canonical input is its own encoding.
  check(encoded.size() <= bytes.size(), "the canonical encoding is the shortest");
  return 0;
}
