#pragma once

// The websocket source's sessions in one process with no network, for unit
// tests and the session fuzzer (fuzz/session_fuzz.cpp): each client is one
// end of a socketpair whose other end an HttpSession serves, exactly as an
// accepted TCP connection is served, and the pipeline is a FakeIngress the
// test drives (acks, backpressure, history answers).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "nudge/sdk/testing.hpp"
#include "sessions.hpp"

namespace nudge::plugins::websocket::testing {

/// The pipeline as a test wants it: publishes are kept until acked (or
/// acked at once with `auto_ack`), readiness is switched by the test, and
/// history is answered from `stored` (or held until answer_history()).
class FakeIngress final : public Ingress {
 public:
  explicit FakeIngress(boost::asio::io_context& io) : io_(io) {}

  void publish(MessagePtr message, Completion on_durable) override;
  void when_ready(std::function<void()> resume) override;
  void set_room_interest(std::string_view room, bool interested) override;
  bool has_history() const override { return true; }
  void read_history(HistoryQuery query, HistoryHandler done) override;

  // Presence, as a fanout that keeps it (when `presence` is true): joins
  // and leaves are kept in `members` and reported back (posted) through
  // `report`, which the harness points at the hub.
  bool has_presence() const override { return presence; }
  void presence_join(std::string_view room, std::string_view user, std::string_view connection) override;
  void presence_leave(std::string_view room, std::string_view user, std::string_view connection) override;
  void read_presence(std::string_view room, PresenceHandler done) override;
  /// Answers the held presence reads.
  void answer_presence();

  /// Completes every publish not yet completed with `status`.
  void complete_all(const Status& status);
  /// While false, when_ready holds its callers; true releases them.
  void set_ready(bool ready);
  /// Answers the held history reads from `stored`.
  void answer_history();

  bool auto_ack = true;
  /// Reads are held until answer_history() rather than answered at once.
  bool hold_history = false;
  std::vector<MessagePtr> published;
  std::size_t waiting_for_ready() const noexcept { return ready_waiters_.size(); }
  std::size_t history_reads() const noexcept { return history_reads_; }
  std::size_t held_history_reads() const noexcept { return held_reads_.size(); }
  /// A room's stored messages, oldest first: what history reads find.
  std::map<std::string, std::vector<MessagePtr>> stored;
  std::map<std::string, int> interest;
  bool presence = false;
  /// Presence reads are held until answer_presence().
  bool hold_presence = false;
  /// A room's members in join order.
  std::map<std::string, std::vector<PresenceMember>> members;
  std::function<void(std::string_view room, const PresenceEvent& event)> report;
  std::size_t presence_reads = 0;
  std::size_t held_presence_reads() const noexcept { return held_presence_.size(); }

 private:
  void answer(const HistoryQuery& query, HistoryHandler done);

  boost::asio::io_context& io_;
  bool ready_ = true;
  std::vector<Completion> pending_;
  std::vector<std::function<void()>> ready_waiters_;
  std::vector<std::pair<HistoryQuery, HistoryHandler>> held_reads_;
  std::vector<std::pair<std::string, PresenceHandler>> held_presence_;
  void answer_presence(const std::string& room, PresenceHandler done);
  std::size_t history_reads_ = 0;
};

/// One client's end of its connection.
struct FakeClient {
  int fd = -1;
  /// Everything read from the server so far (less what take_frames took).
  std::string received;
  bool upgraded = false;
  bool open() const noexcept { return fd >= 0; }
};

/// The source's hub and sessions over socketpairs, on a test's io_context.
class SessionHarness {
 public:
  /// `overrides`: websocket keys other than their defaults.
  explicit SessionHarness(const std::map<std::string, ConfigValue>& overrides = {});
  ~SessionHarness();
  SessionHarness(const SessionHarness&) = delete;
  SessionHarness& operator=(const SessionHarness&) = delete;

  /// A new client from `peer` (its address key); nullopt when the source
  /// closed it at accept (limits). Returns the client's index.
  std::optional<std::size_t> connect(const std::string& peer = "192.0.2.1");
  /// Writes `bytes` as the client (what the socket takes; the rest is dropped
  /// and false returned when the server stopped reading long ago).
  bool send(std::size_t client, std::string_view bytes);
  /// Reads what the server sent the client, appended to `received`;
  /// returns what this call read. EOF closes the client's end.
  std::string read(std::size_t client);
  /// Reads, running the loop between reads, until the server has nothing
  /// more to write for now (what a client that keeps reading gets).
  void drain(std::size_t client);
  /// The whole frames in `received` since the last call (the 101 response
  /// skipped), taken out of it.
  std::vector<std::pair<Opcode, std::string>> take_frames(std::size_t client);
  void close(std::size_t client);
  /// Runs the loop until it has nothing ready to do (bounded).
  void run();
  /// The source's sweep at `now` (pings, idle cuts, expiry, close deadlines).
  void sweep(std::chrono::steady_clock::time_point now);
  /// What the source does with a message the fanout hands back: delivers it
  /// to the local clients of its room (WebSocketSource::deliver).
  void deliver(const MessagePtr& message);
  /// What the source does with a presence event the fanout reports.
  void deliver_presence(std::string_view room, const PresenceEvent& event);

  /// Checks what must hold after any step; aborts with the broken invariant
  /// named (the fuzzer's check), or returns its text when `abort` is false.
  std::string check_invariants(bool abort = true) const;

  Hub& hub() noexcept { return *hub_; }
  FakeIngress& ingress() noexcept { return ingress_; }
  FakeClient& client(std::size_t i) { return clients_.at(i); }
  std::size_t clients() const noexcept { return clients_.size(); }
  /// Room for `count` clients, so a test measuring the heap sees the server's allocations only.
  void reserve_clients(std::size_t count) { clients_.reserve(count); }
  boost::asio::io_context& io() noexcept { return io_; }
  nudge::testing::TestContext& context() noexcept { return context_; }

  /// A WebSocket upgrade request for `path` (the handshake key is fixed).
  static std::string upgrade_request(std::string_view path, std::string_view extra_headers = {});
  /// A masked client frame.
  static std::string client_frame(Opcode opcode, std::string_view payload, bool fin = true);
  /// The payloads of the server frames in `bytes` (after the 101 response).
  static std::vector<std::pair<Opcode, std::string>> server_frames(std::string_view bytes);

 private:
  boost::asio::io_context io_;
  nudge::testing::TestContext context_{io_, "source.websocket"};
  FakeIngress ingress_{io_};
  std::shared_ptr<Hub> hub_;
  std::vector<FakeClient> clients_;
  /// Handlers one run() may run: far more than any honest step needs.
  static constexpr std::size_t kMaxHandlersPerRun = 1'000'000;
  bool busy_forever_ = false;
};

}  // namespace nudge::plugins::websocket::testing
