// libFuzzer target: whole client sessions, HTTP to WebSocket or Socket.IO, in
// memory (test/session_harness.hpp: socketpairs, a fake pipeline). The input
// is a script of steps — connect, upgrade, send frames or packets or raw
// bytes, poll, read or stop reading, close, ack or fail the pipeline's
// messages, hold or release backpressure, answer history, let time pass,
// deliver live messages — and after every step the harness checks what must
// hold (SessionHarness::check_invariants: queued bytes and frames under
// their bounds, client and socket counts, room membership and fanout
// interest, the history budget). ASan catches what is left dangling. The
// parsers' own fuzzers did not find the holes of issue 15 (a ping flood, a
// crash while catching up, unbounded upgrades and joins): those live in the
// session, where this target looks. Limits are small so steps reach them.
// Seeds: session_corpus/; replayed by fuzz.websocket_session.* in every build.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "session_harness.hpp"

namespace {

using namespace nudge;
using namespace nudge::plugins::websocket;
using nudge::plugins::websocket::testing::SessionHarness;

/// Reads the fuzzer's bytes as the script's numbers and strings.
class Script {
 public:
  Script(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool done() const noexcept { return at_ >= size_; }
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::string bytes(std::size_t most) {
    const std::size_t n = std::min<std::size_t>(byte() % (most + 1), size_ - std::min(at_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

const char* const kRooms[] = {"r0", "r1", "r2", "r3", "r4", "r5"};

/// A chat frame or Socket.IO packet a client might send, picked by the script.
std::string chat_text(Script& s, const std::vector<std::string>& ids) {
  const std::string room = kRooms[s.byte() % 6];
  const std::string after =
      ids.empty() ? std::string("00000000-0000-7000-8000-000000000000") : ids[s.byte() % ids.size()];
  switch (s.byte() % 20) {
    case 0:
      return R"({"type":"join","room":")" + room + R"("})";
    case 1:
      return R"({"type":"join","room":")" + room + R"(","after":")" + after + R"("})";
    case 2:
      return R"({"type":"leave","room":")" + room + R"("})";
    case 3:
      return R"({"type":"send","room":")" + room + R"(","text":")" + s.bytes(8) + R"(","ref":"r)" +
             std::to_string(s.byte() % 4) + R"("})";
    case 4:
      return R"({"type":"hello","name":")" + s.bytes(6) + R"("})";
    case 5:
      return "40{\"room\":\"" + room + "\",\"after\":\"" + after + "\"}";
    case 6:
      return "40";
    case 7:
      return "42[\"join\",{\"room\":\"" + room + "\",\"after\":\"" + after + "\"}]";
    case 8:
      return "421[\"event:message\",{\"message\":\"" + s.bytes(8) + "\",\"room\":\"" + room + "\",\"ref\":\"q" +
             std::to_string(s.byte() % 4) + "\"}]";
    case 9:
      return "42[\"leave\",\"" + room + "\"]";
    case 10:
      return "2probe";
    case 11:
      return "5";
    case 12:
      return "3";
    case 13:
      return "2";
    case 14:
      return "41";
    case 15:
      return R"({"type":"presence","room":")" + room + R"(","ref":"p"})";
    case 16:
      return R"({"type":"send","room":")" + room + R"(","text":"t","ephemeral":true})";
    case 17:
      return "422[\"presence\",\"" + room + "\"]";
    case 18:
      return "423[\"event:message\",{\"message\":\"t\",\"ephemeral\":true}]";
    default:
      return s.bytes(40);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Script s(data, size);
  SessionHarness h({{"max_send_queue", std::int64_t{16}},
                    {"max_send_queue_bytes", std::int64_t{64 * 1024}},
                    {"max_message_bytes", std::int64_t{1024}},
                    {"max_rooms_per_connection", std::int64_t{3}},
                    {"max_rooms", std::int64_t{5}},
                    {"max_history_reads", std::int64_t{2}},
                    {"history_buffer_bytes", std::int64_t{64 * 1024}},
                    {"history_messages", std::int64_t{4}},
                    {"catch_up_max_messages", std::int64_t{40}},
                    {"max_connections", std::int64_t{6}},
                    {"max_connections_per_address", std::int64_t{4}},
                    {"max_sockets_per_address", std::int64_t{8}},
                    {"rate_limit_burst", std::int64_t{30}},
                    {"rate_limit_strikes", std::int64_t{10}},
                    {"resend_max_entries", std::int64_t{8}}});
  h.ingress().auto_ack = false;
  h.ingress().presence = true;
  std::vector<std::string> ids;
  for (const char* room : {"r0", "r1"}) {
    for (int i = 0; i < 60; ++i) {
      auto m = std::make_shared<Message>();
      m->id = MessageId::generate();
      m->room = room;
      m->sender = "seed";
      m->payload = std::string(static_cast<std::size_t>(i * 7 % 900), 'x');
      ids.push_back(m->id.to_string());
      h.ingress().stored[room].push_back(std::move(m));
    }
  }
  std::vector<std::string> sids;
  auto now = std::chrono::steady_clock::now();
  auto pick = [&]() -> std::optional<std::size_t> {
    if (h.clients() == 0) return std::nullopt;
    return s.byte() % h.clients();
  };
  auto collect_sids = [&](std::size_t c) {
    const auto& got = h.client(c).received;
    for (auto at = got.find("\"sid\":\""); at != std::string::npos; at = got.find("\"sid\":\"", at + 1))
      if (got.size() >= at + 27) sids.push_back(got.substr(at + 7, 20));
  };
  for (int step = 0; step < 300 && !s.done(); ++step) {
    switch (s.byte() % 20) {
      case 0:
        h.connect("192.0.2." + std::to_string(s.byte() % 3));
        break;
      case 1:
        if (auto c = pick()) h.send(*c, SessionHarness::upgrade_request("/ws"));
        break;
      case 2:
        if (auto c = pick()) h.send(*c, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\n\r\n");
        break;
      case 3:
        if (auto c = pick()) {
          std::string path = "/socket.io/?EIO=4&transport=websocket";
          if (!sids.empty() && s.byte() % 2) path += "&sid=" + sids[s.byte() % sids.size()];
          h.send(*c, SessionHarness::upgrade_request(path));
        }
        break;
      case 4:
        if (auto c = pick()) {
          static constexpr Opcode kOps[] = {Opcode::text, Opcode::text, Opcode::text,  Opcode::binary,
                                            Opcode::ping, Opcode::pong, Opcode::close, Opcode::continuation};
          const auto flags = s.byte();
          h.send(*c, SessionHarness::client_frame(kOps[flags % 8], chat_text(s, ids), (flags & 0x80) == 0));
        }
        break;
      case 5:
        if (auto c = pick()) h.send(*c, s.bytes(64));
        break;
      case 6:
        if (auto c = pick(); c && !sids.empty()) {
          std::string body = chat_text(s, ids);
          if (s.byte() % 2) body += "\x1e" + chat_text(s, ids);
          h.send(*c, "POST /socket.io/?EIO=4&transport=polling&sid=" + sids[s.byte() % sids.size()] +
                         " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        }
        break;
      case 7:
        if (auto c = pick(); c && !sids.empty())
          h.send(*c, "GET /socket.io/?EIO=4&transport=polling&sid=" + sids[s.byte() % sids.size()] +
                         " HTTP/1.1\r\nHost: t\r\n\r\n");
        break;
      case 8:
        if (auto c = pick()) {
          h.read(*c);
          collect_sids(*c);
        }
        break;
      case 9:
        if (auto c = pick()) h.drain(*c);
        break;
      case 10:
        if (auto c = pick()) h.close(*c);
        break;
      case 11:
        h.ingress().complete_all(s.byte() % 3 ? Status::success() : Status::error(StatusCode::unavailable, "down"));
        h.run();
        break;
      case 12:
        h.ingress().set_ready(s.byte() % 2);
        h.run();
        break;
      case 13:
        h.ingress().hold_history = s.byte() % 2;
        h.ingress().answer_history();
        // Presence reads are held and answered with history's.
        h.ingress().hold_presence = h.ingress().hold_history;
        h.ingress().answer_presence();
        h.run();
        break;
      case 14:
        now += std::chrono::milliseconds(250 * (1 + s.byte()));
        h.sweep(now);
        break;
      case 15: {
        auto m = std::make_shared<Message>();
        m->id = MessageId::generate();
        m->room = kRooms[s.byte() % 6];
        m->sender = "live";
        m->payload = std::string(static_cast<std::size_t>(s.byte()) * 8, 'y');
        h.deliver(m);
        break;
      }
    }
    h.check_invariants();
  }
  return 0;
}
