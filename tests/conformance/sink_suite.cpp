// The sink conformance suite. Rows are read back through the sink's history
// capability (Sink::read_history), so a sink must support it to be checked.
//
// What a sink promises (sdk/include/nudge/sdk/sink.hpp, docs/architecture.md):
// a batch written again adds no row (idempotent by message id); rooms,
// senders and payloads are stored as given, whatever their bytes; a write
// during an outage fails with a retryable status and lands once the server is
// back, exactly once; history reads return a room's rows oldest first, by id
// (not by when they were written), matching rooms byte for byte; stop() lets a
// write in progress finish; a read queued after a write sees it; readiness
// follows start().

#include <algorithm>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <boost/asio/ip/address.hpp>

#include "harness.hpp"
#include "nudge/sdk/tcp_proxy.hpp"

namespace nudge::conformance {
namespace {

/// Long enough for any write, including one that waits out a connect timeout.
constexpr auto kWriteLimit = std::chrono::seconds(60);
constexpr std::size_t kReadAll = 10000;

class SinkConformance : public ConformanceTest {
 public:
  void AReplayedBatchAddsNoRow();
  void TextAndBinaryAreStoredByteForByte();
  void TimestampsAreKeptToTheMillisecond();
  void HistoryReadsOneRoomOldestFirst();
  void HistoryKeepsEveryFieldAndGoesByIdNotByArrival();
  void HistoryMatchesRoomsExactly();
  void AReadQueuedAfterAWriteSeesIt();
  void StopLetsAWriteInProgressFinish();
  void NotReadyBeforeStartAndReadyAfter();
  void ABatchWrittenDuringAnOutageLandsAfterIt();
  void NotReadySoonAfterLosingItsServerWithoutTrafficAndReadyWhenBack();

 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped()) return;
    tag_ = case_tag();
    context_ = std::make_unique<nudge::testing::TestContext>(io_, "sink." + settings().plugin->name(), "conf-" + tag_);
    std::string error;
    sink_ = create_instance<Sink>(config_for_case(tag_), *context_, error);
    ASSERT_TRUE(sink_) << "create() failed: " << error;
    const Status started = sink_->start();
    ASSERT_TRUE(started.ok()) << "start() failed: " << started.message();
    started_ = true;
    ASSERT_TRUE(sink_->supports_history())
        << "sink does not support history; the conformance suite needs it to read rows back "
           "(implement Sink::supports_history() and Sink::read_history())";
  }

  void TearDown() override {
    if (sink_ && started_) {
      auto stopped = std::make_shared<bool>(false);
      sink_->stop([stopped] { *stopped = true; });
      EXPECT_TRUE(run_until([&] { return *stopped; }, kWriteLimit)) << "stop() must call its completion";
    }
    sink_.reset();
    run_for(milliseconds(20));
    context_.reset();
    ConformanceTest::TearDown();
  }

  std::string room(const std::string& name) const { return "conf-" + tag_ + "-" + name; }

  /// Another instance of the plugin on the same config (the same table or file), started.
  std::unique_ptr<Sink> second_instance() {
    std::string error;
    auto other = create_instance<Sink>(config_for_case(tag_), *context_, error);
    EXPECT_TRUE(other) << "create() failed: " << error;
    if (!other) return nullptr;
    const Status started = other->start();
    EXPECT_TRUE(started.ok()) << "start() of a second instance failed: " << started.message();
    return started.ok() ? std::move(other) : nullptr;
  }

  MessagePtr make(const std::string& room, std::string sender, std::string payload) {
    auto m = std::make_shared<Message>();
    m->id = MessageId::generate();
    m->room = room;
    m->sender = std::move(sender);
    m->payload = std::move(payload);
    m->timestamp_ms = now_ms();
    m->origin = "conf-origin-" + tag_;
    m->headers = {{std::string(kTagHeader), tag_}};
    return m;
  }

  /// write() and run the loop until its completion (a timeout status if none).
  Status write(const std::vector<MessagePtr>& messages) {
    auto result = std::make_shared<std::optional<Status>>();
    const auto batch = std::make_shared<const Batch>(messages);
    sink_->write(batch, [result](Status s) {
      if (result->has_value()) ADD_FAILURE() << "write() called its completion twice";
      *result = std::move(s);
    });
    if (!run_until([&] { return result->has_value(); }, kWriteLimit))
      return Status::error(StatusCode::timeout, "write() did not call its completion within 60 s");
    return **result;
  }

  /// read_history() and run the loop until its handler runs.
  std::vector<MessagePtr> read(HistoryQuery query, Status* status_out = nullptr, Sink* from = nullptr) {
    auto result = std::make_shared<std::optional<std::pair<Status, std::vector<MessagePtr>>>>();
    const std::string room_name = query.room;
    (from ? from : sink_.get())->read_history(std::move(query), [result](Status s, std::vector<MessagePtr> messages) {
      if (result->has_value()) ADD_FAILURE() << "read_history() called its handler twice";
      *result = std::make_pair(std::move(s), std::move(messages));
    });
    if (!run_until([&] { return result->has_value(); }, kWriteLimit)) {
      ADD_FAILURE() << "read_history() of room '" << room_name << "' did not call its handler within 60 s";
      return {};
    }
    auto& [status, messages] = **result;
    if (status_out) *status_out = status;
    else EXPECT_TRUE(status.ok()) << "read_history() of room '" << room_name << "' failed: " << status.message();
    return std::move(messages);
  }

  std::vector<MessagePtr> read_room(const std::string& room_name) {
    HistoryQuery query;
    query.room = room_name;
    query.limit = kReadAll;
    return read(std::move(query));
  }

  /// Fields a sink keeps (sink.hpp: id, room, sender, payload, timestamp, origin).
  static void expect_same(const Message& got, const Message& want) {
    SCOPED_TRACE("message " + want.id.to_string());
    EXPECT_EQ(got.room, want.room);
    EXPECT_EQ(got.sender, want.sender);
    EXPECT_EQ(got.origin, want.origin);
    EXPECT_EQ(got.timestamp_ms, want.timestamp_ms);
    EXPECT_TRUE(got.payload == want.payload) << "payload: " << describe_difference(got.payload, want.payload);
  }

  static void expect_oldest_first(const std::vector<MessagePtr>& rows, const std::string& room_name) {
    for (std::size_t i = 1; i < rows.size(); ++i)
      if (!(rows[i - 1]->id < rows[i]->id)) {
        ADD_FAILURE() << "history of room '" << room_name
                      << "' is not strictly in id order (oldest first, each id once) at row " << i;
        return;
      }
  }

  std::string tag_;
  std::unique_ptr<nudge::testing::TestContext> context_;
  std::unique_ptr<Sink> sink_;
  bool started_ = false;
};

void SinkConformance::AReplayedBatchAddsNoRow() {
  const std::vector<std::string> rooms = {room("r0"), room("r1"), room("r2"), room("r3")};
  std::vector<MessagePtr> first;
  auto numbered = [&](int i) {
    const std::string& r = rooms[static_cast<std::size_t>(i % 4)];
    return make(r, "sender" + std::to_string(i % 7), "payload " + std::to_string(i));
  };
  for (int i = 0; i < 200; ++i) first.push_back(numbered(i));
  std::vector<MessagePtr> replay;  // other objects, same ids: the sink must go by id
  for (const auto& m : first) replay.push_back(copy_of(*m));
  std::vector<MessagePtr> overlapping(first.begin() + 100, first.end());
  std::vector<MessagePtr> fresh;
  for (int i = 200; i < 300; ++i) {
    fresh.push_back(numbered(i));
    overlapping.push_back(fresh.back());
  }

  Status s = write(first);
  ASSERT_TRUE(s.ok()) << "writing a batch of 200 failed: " << s.message();
  s = write(replay);
  ASSERT_TRUE(s.ok()) << "writing the same batch again must succeed (and add nothing): " << s.message();
  s = write(overlapping);
  ASSERT_TRUE(s.ok()) << "writing a batch half of which is stored already failed: " << s.message();
  const std::vector<MessagePtr> repeated = {fresh.front(), copy_of(*fresh.back()), fresh.back()};
  s = write(repeated);
  ASSERT_TRUE(s.ok()) << "writing a batch with one id twice in it failed: " << s.message();
  s = write({});
  ASSERT_TRUE(s.ok()) << "writing an empty batch failed: " << s.message();

  std::map<MessageId, MessagePtr> sent;
  for (const auto* list : {&first, &fresh})
    for (const auto& m : *list) sent.emplace(m->id, m);
  std::map<MessageId, int> rows;
  for (const auto& r : rooms) {
    const auto got = read_room(r);
    EXPECT_EQ(got.size(), 75u) << "room '" << r << "' should hold 75 rows (300 messages over 4 rooms), each once";
    expect_oldest_first(got, r);
    for (const auto& m : got) {
      ++rows[m->id];
      EXPECT_EQ(m->room, r) << "history of room '" << r << "' returned a row of another room";
      if (auto it = sent.find(m->id); it != sent.end()) expect_same(*m, *it->second);
    }
  }
  std::size_t twice = 0, missing = 0, unknown = 0;
  for (const auto& [id, n] : rows) {
    if (n > 1) ++twice;
    if (!sent.contains(id)) ++unknown;
  }
  for (const auto& [id, m] : sent)
    if (!rows.contains(id)) ++missing;
  EXPECT_EQ(rows.size(), 300u) << "distinct ids stored";
  EXPECT_EQ(twice, 0u) << "ids stored more than once";
  EXPECT_EQ(missing, 0u) << "messages not stored";
  EXPECT_EQ(unknown, 0u) << "rows that were never written";
}

void SinkConformance::TextAndBinaryAreStoredByteForByte() {
  // Rooms and senders: valid UTF-8 without NUL (sources guarantee that);
  // quotes, backslashes, SQL and LIKE metacharacters must be plain data.
  const std::vector<std::string> room_names = {
      room("emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 \xc3\xbcn\xc3\xaf"
           "c\xc3\xb6"
           "d\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87"),
      room("quote ' double \" backslash \\ end\\"),
      room("'); DROP TABLE messages; --"),
      room("100%"),
      room("%"),
      room("a_b"),
      room("axb"),  // a LIKE 'a_b' would catch this one too
      room("tab\tnewline\ncr\r"),
      room("NULL"),
      room("{\"a\",\"b\"} $1 ?, ? :name"),  // array literals and statement placeholders
  };
  const std::vector<std::string> senders = {
      "O'Brien \"Bob\" \\ \xf0\x9f\x98\x80",
      "'); DROP TABLE messages; --",
      "%_%\\%",
      "\xe2\x80\xae right-to-left \xe2\x80\xac",
      "null",
      " ",
      "",
  };
  std::vector<std::string> payloads;
  payloads.push_back(pattern(256));  // every byte value, ascending
  std::string descending = pattern(256);
  std::reverse(descending.begin(), descending.end());
  payloads.push_back(descending);
  payloads.push_back("");
  payloads.push_back(std::string(1, '\0'));
  payloads.push_back(std::string(1, '\xff'));
  payloads.push_back("\xc3\x28 not UTF-8 \xa0\xa1");
  payloads.push_back(std::string("'); DROP TABLE messages; --\0\\%_\"", 32));
  payloads.push_back("NULL");
  payloads.push_back(std::string(100000, '\\'));  // what an escaping bug would double
  payloads.push_back(pattern(std::min<std::size_t>(settings().max_payload, 1 << 20), 7));

  std::vector<MessagePtr> sent;
  std::size_t n = 0;
  for (const auto& r : room_names)
    for (const auto& p : payloads) {
      auto m = std::const_pointer_cast<Message>(make(r, senders[n % senders.size()], p));
      m->origin = "conf-origin '\"\\ \xf0\x9f\x98\x80 " + tag_;
      sent.push_back(m);
      ++n;
    }
  const Status s = write(sent);
  ASSERT_TRUE(s.ok()) << "write failed: " << s.message();

  std::size_t bytes = 0;
  for (const auto& r : room_names) {
    SCOPED_TRACE("room '" + r + "'");
    const auto got = read_room(r);
    std::vector<MessagePtr> want;
    for (const auto& m : sent)
      if (m->room == r) want.push_back(m);
    ASSERT_EQ(got.size(), want.size()) << "rows read back for this room (another room's rows, or missing ones?)";
    expect_oldest_first(got, r);
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i]->id, want[i]->id);
      expect_same(*got[i], *want[i]);
      bytes += got[i]->payload.size();
    }
  }
  std::cout << "[ CHECKED  ] " << sent.size() << " rows in " << room_names.size() << " rooms, " << bytes
            << " payload bytes compared" << std::endl;
}

void SinkConformance::HistoryReadsOneRoomOldestFirst() {
  const std::string r = room("paged");
  std::vector<MessagePtr> sent;
  for (int i = 0; i < 30; ++i) sent.push_back(make(r, "s", "m" + std::to_string(i)));
  sent.push_back(make(room("other"), "s", "elsewhere"));
  const Status s = write(sent);
  ASSERT_TRUE(s.ok()) << "write failed: " << s.message();

  auto payloads_of = [](const std::vector<MessagePtr>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms) out.push_back(m->payload);
    return out;
  };
  auto payloads = [&](int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) out.push_back("m" + std::to_string(i));
    return out;
  };
  HistoryQuery last;
  last.room = r;
  last.limit = 10;
  EXPECT_EQ(payloads_of(read(last)), payloads(20, 30))
      << "without `after`: the room's last `limit` messages, oldest first";

  HistoryQuery after;
  after.room = r;
  after.limit = 5;
  after.after = sent[9]->id;
  EXPECT_EQ(payloads_of(read(after)), payloads(10, 15)) << "with `after`: the messages after that id, oldest first";

  after.after = sent[29]->id;
  after.limit = 50;
  EXPECT_TRUE(read(after).empty()) << "nothing is stored after the newest message";

  HistoryQuery none;
  none.room = room("never-written");
  EXPECT_TRUE(read(none).empty()) << "a room without messages has an empty history (and an ok status)";
}

void SinkConformance::TimestampsAreKeptToTheMillisecond() {
  // From before 1970 to the last millisecond of 9999 (what SQL date types hold).
  const std::vector<std::int64_t> stamps = {-1000, 1, 1600000000000, 1700000000123, 1764300000999, 253402300799999};
  const std::string r = room("stamps");
  std::vector<MessagePtr> sent;
  for (const std::int64_t ms : stamps) {
    auto m = std::const_pointer_cast<Message>(make(r, "s", "at " + std::to_string(ms)));
    m->timestamp_ms = ms;
    sent.push_back(m);
  }
  const Status s = write(sent);
  ASSERT_TRUE(s.ok()) << "write failed: " << s.message();
  const auto got = read_room(r);
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i]->timestamp_ms, sent[i]->timestamp_ms) << "payload '" << sent[i]->payload << "'";
}

void SinkConformance::HistoryKeepsEveryFieldAndGoesByIdNotByArrival() {
  // 30 messages in room A and 10 in room B, made in id order and interleaved;
  // written in four batches, newest first: the order of ids counts, not of writes.
  const std::string room_a = room("A \xc3\xa9"), room_b = room("B");
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
  std::vector<MessagePtr> all, a, b;
  for (int n = 0; n < 40; ++n) {
    const bool in_a = n % 4 != 3;
    auto m = std::const_pointer_cast<Message>(make(in_a ? room_a : room_b,
                                                   "sender-" + std::to_string(n % 7) + " \xf0\x9f\x98\x80",
                                                   every_byte + std::to_string(n)));
    std::rotate(m->payload.begin(), m->payload.begin() + n, m->payload.end());
    m->timestamp_ms = 1764300000000 + n * 1001 - (n == 5 ? 3000000000000 : 0);  // one before 1970
    m->origin = "instance-" + std::to_string(n % 3) + "-" + tag_;
    if (n % 3) m->log_position = {n % 5, 9000000000LL + n};
    (in_a ? a : b).push_back(m);
    all.push_back(m);
  }
  for (int first = 30; first >= 0; first -= 10) {
    const Status s = write(std::vector<MessagePtr>(all.begin() + first, all.begin() + first + 10));
    ASSERT_TRUE(s.ok()) << "write failed: " << s.message();
  }
  // A sink need not keep log positions; one that hands them back hands back what was written.
  auto expect_fields = [](const MessagePtr& got, const MessagePtr& want) {
    EXPECT_EQ(got->id, want->id);
    expect_same(*got, *want);
    if (got->log_position.valid()) {
      EXPECT_EQ(got->log_position.partition, want->log_position.partition) << want->id.to_string();
      EXPECT_EQ(got->log_position.offset, want->log_position.offset) << want->id.to_string();
    }
  };
  auto query = [](const std::string& r, std::size_t limit, std::optional<MessageId> after) {
    HistoryQuery q;
    q.room = r;
    q.limit = limit;
    q.after = after;
    return q;
  };

  const auto last = read(query(room_a, 10, std::nullopt));
  ASSERT_EQ(last.size(), 10u) << "the last 10 of room A";
  for (std::size_t i = 0; i < 10; ++i) expect_fields(last[i], a[20 + i]);
  const auto after = read(query(room_a, 100, a[19]->id));
  ASSERT_EQ(after.size(), 10u) << "what came after the 20th of room A";
  for (std::size_t i = 0; i < 10; ++i) expect_fields(after[i], a[20 + i]);
  const auto page = read(query(room_a, 3, a[4]->id));
  ASSERT_EQ(page.size(), 3u) << "a limit with `after`: the oldest ones after the id";
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(page[i]->id, a[5 + i]->id);
  const auto all_a = read(query(room_a, 1000, std::nullopt));
  ASSERT_EQ(all_a.size(), 30u);
  for (std::size_t i = 0; i < 30; ++i) expect_fields(all_a[i], a[i]);
  const auto all_b = read(query(room_b, 1000, std::nullopt));
  ASSERT_EQ(all_b.size(), 10u);
  for (std::size_t i = 0; i < 10; ++i) expect_fields(all_b[i], b[i]);
  const auto by_b = read(query(room_a, 100, b[4]->id));  // b[4] came after a[14]
  ASSERT_EQ(by_b.size(), 15u) << "an id of another room is still a position";
  EXPECT_EQ(by_b.front()->id, a[15]->id);
  EXPECT_EQ(read(query(room_a, std::numeric_limits<std::size_t>::max(), std::nullopt)).size(), 30u)
      << "a limit beyond int64 is as good as none";

  for (const HistoryQuery& q :
       {query(room("none"), 10, std::nullopt), query(room_a, 0, std::nullopt), query(room_a, 0, a[0]->id),
        query(room_a, 10, a[29]->id), query(room_b, 10, b[9]->id), query(room("b"), 10, std::nullopt),
        query(room_b + " ", 10, std::nullopt), query("", 10, std::nullopt)}) {
    Status status;
    const auto none = read(q, &status);
    EXPECT_TRUE(status.ok()) << "room '" << q.room << "' limit " << q.limit << ": " << status.message();
    EXPECT_TRUE(none.empty()) << "room '" << q.room << "' limit " << q.limit << " should be empty";
  }
}

void SinkConformance::HistoryMatchesRoomsExactly() {
  // Case, trailing spaces and LIKE wildcards are part of a room's name.
  // (A PAD SPACE collation would take "lobby" and "lobby  " for one room.)
  const std::vector<std::string> rooms = {room("Lobby"),
                                          room("lobby"),
                                          room("lobby "),
                                          room("lobby  "),
                                          room("%"),
                                          room("_"),
                                          room("'); DROP TABLE x; --")};
  std::vector<MessagePtr> sent;
  for (const auto& r : rooms) sent.push_back(make(r, "s", "in " + r));
  const Status s = write(sent);
  ASSERT_TRUE(s.ok()) << "write failed: " << s.message();
  for (const auto& r : rooms) {
    const auto got = read_room(r);
    ASSERT_EQ(got.size(), 1u) << "room '" << r << "' holds one message";
    EXPECT_EQ(got[0]->room, r);
    EXPECT_EQ(got[0]->payload, "in " + r);
  }
}

void SinkConformance::AReadQueuedAfterAWriteSeesIt() {
  // A client's history request right after its message was acknowledged.
  const std::string r = room("queued");
  std::vector<MessagePtr> batch;
  for (int i = 0; i < 500; ++i) batch.push_back(make(r, "s", "m" + std::to_string(i)));
  std::vector<std::string> order;
  std::size_t seen = 0;
  sink_->write(std::make_shared<const Batch>(batch),
               [&](Status st) { order.push_back(st.ok() ? "written" : "write failed: " + st.message()); });
  HistoryQuery q;
  q.room = r;
  q.limit = 1000;
  sink_->read_history(q, [&](Status st, std::vector<MessagePtr> messages) {
    order.push_back(st.ok() ? "read" : "read failed: " + st.message());
    seen = messages.size();
  });
  ASSERT_TRUE(run_until([&] { return order.size() == 2; }, kWriteLimit)) << "write or read never completed";
  EXPECT_EQ(order, (std::vector<std::string>{"written", "read"}));
  EXPECT_EQ(seen, 500u) << "the read queued after the write must see all of it";
}

void SinkConformance::StopLetsAWriteInProgressFinish() {
  const std::string r = room("stopping");
  std::vector<MessagePtr> batch;
  for (int i = 0; i < 500; ++i) batch.push_back(make(r, "s", "m" + std::to_string(i)));
  std::vector<std::string> order;
  sink_->write(std::make_shared<const Batch>(batch),
               [&](Status st) { order.push_back(st.ok() ? "written" : "failed: " + st.message()); });
  sink_->stop([&] { order.push_back("stopped"); });
  started_ = false;  // TearDown must not stop it again
  ASSERT_TRUE(run_until([&] { return order.size() == 2; }, kWriteLimit)) << "write or stop never completed";
  EXPECT_EQ(order, (std::vector<std::string>{"written", "stopped"}));
  sink_.reset();
  run_for(milliseconds(20));
  const auto other = second_instance();
  ASSERT_TRUE(other);
  HistoryQuery q;
  q.room = r;
  q.limit = kReadAll;
  EXPECT_EQ(read(q, nullptr, other.get()).size(), 500u) << "rows of the write stop() waited for";
  auto stopped = std::make_shared<bool>(false);
  other->stop([stopped] { *stopped = true; });
  EXPECT_TRUE(run_until([&] { return *stopped; }, kWriteLimit)) << "stop() must call its completion";
}

void SinkConformance::NotReadyBeforeStartAndReadyAfter() {
  std::string error;
  auto unstarted = create_instance<Sink>(config_for_case(tag_), *context_, error);
  ASSERT_TRUE(unstarted) << "create() failed: " << error;
  const Readiness before = unstarted->readiness();
  EXPECT_FALSE(before.ready) << "an instance that was not started has nothing to write to";
  EXPECT_FALSE(before.reason.empty()) << "not ready says why";
  unstarted.reset();
  EXPECT_TRUE(sink_->readiness().ready) << "not ready after start(): " << sink_->readiness().reason;
  const Status s = write({make(room("ready"), "s", "one")});
  ASSERT_TRUE(s.ok()) << "write failed: " << s.message();
  EXPECT_TRUE(sink_->readiness().ready) << "not ready after a write that worked: " << sink_->readiness().reason;
}

void SinkConformance::ABatchWrittenDuringAnOutageLandsAfterIt() {
  if (!settings().has_outage()) GTEST_SKIP() << no_outage_commands();
  const std::string r = room("outage");
  std::vector<MessagePtr> batch;
  for (int i = 0; i < 100; ++i) batch.push_back(make(r, "s", "during the outage " + std::to_string(i)));

  begin_outage();
  if (HasFatalFailure()) return;
  {
    // A client joining a room meanwhile: an error the runtime may retry, or an answer.
    HistoryQuery q;
    q.room = r;
    Status read_status;
    read(q, &read_status);
    if (!read_status.ok()) {
      EXPECT_TRUE(read_status.retryable()) << "a history read during an outage must fail retryably (unavailable or "
                                              "timeout), got "
                                           << to_string(read_status.code()) << ": " << read_status.message();
    }
  }
  const auto outage_began = Clock::now();
  // As the runtime's sink driver: write; on an error wait 200 ms and write the
  // same batch again. The server comes back (in parallel) after about 3 s.
  int attempts = 0, failures = 0, not_retryable = 0;
  std::string first_error;
  Clock::time_point back_at{};
  std::optional<Clock::time_point> landed_at;
  bool succeeded_during_outage = false;
  while (true) {
    ++attempts;
    const auto t = Clock::now();
    const Status s = write(batch);
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
    if (s.ok()) {
      landed_at = Clock::now();
      succeeded_during_outage = failures == 0;
      break;
    }
    ++failures;
    if (first_error.empty())
      first_error = std::string(to_string(s.code())) + ": " + s.message() + " (after " + std::to_string(took) + " ms)";
    if (!s.retryable()) {
      if (not_retryable++ == 0)
        ADD_FAILURE() << "a write during an outage must fail with a retryable status (unavailable or timeout), "
                         "got "
                      << to_string(s.code()) << ": " << s.message();
    }
    if (Clock::now() - outage_began >= std::chrono::seconds(3)) start_outage_end();
    if (back_at == Clock::time_point{} && outage_end_finished()) back_at = Clock::now();
    if (back_at != Clock::time_point{} && Clock::now() - back_at > std::chrono::seconds(60)) break;
    if (Clock::now() - outage_began > std::chrono::seconds(240)) break;  // --outage-end hangs
    run_for(milliseconds(200));
    if (back_at == Clock::time_point{} && outage_end_finished()) back_at = Clock::now();
  }
  ASSERT_TRUE(end_outage()) << "--outage-end '" << settings().outage_end << "' failed";
  back_at = outage_end_finished_at();
  ASSERT_TRUE(landed_at) << "the batch did not land within 60 s of the server being back; " << attempts
                         << " attempts, first error: " << first_error;
  if (succeeded_during_outage)
    std::cout << "[ WARNING  ] the first write succeeded during the outage: --outage-begin did not take the "
                 "server away from this sink"
              << std::endl;
  const auto after_back_ms = std::chrono::duration_cast<milliseconds>(*landed_at - back_at).count();
  measured("landed_after_outage_ms", after_back_ms,
           "the batch failed " + std::to_string(failures) + " times during the outage (first: " +
               (first_error.empty() ? std::string("none") : first_error) + ") and landed " +
               (after_back_ms >= 0 ? std::to_string(after_back_ms) + " ms after --outage-end returned"
                                   : std::to_string(-after_back_ms) + " ms before --outage-end returned (the server "
                                                                      "answered already)") +
               " (retrying every 200 ms), on attempt " + std::to_string(attempts));

  const auto got = read_room(r);
  std::map<MessageId, int> rows;
  for (const auto& m : got) ++rows[m->id];
  EXPECT_EQ(got.size(), batch.size()) << "rows of the batch written during the outage";
  for (const auto& m : batch)
    EXPECT_EQ(rows[m->id], 1) << "message " << m->id.to_string() << " stored " << rows[m->id] << " times";
}

// The server "goes away" without traffic: a proxy between the sink and its
// server closes its listener and every connection (the server itself, shared
// with other tests, keeps running). Readiness is what a load balancer and the
// runtime's /ready act on, so it must follow the server on its own.
void SinkConformance::NotReadySoonAfterLosingItsServerWithoutTrafficAndReadyWhenBack() {
  const Settings& s = settings();
  if (s.server_host.empty()) GTEST_SKIP() << "needs --require-server to know where the server is";
  boost::system::error_code ec;
  boost::asio::ip::make_address(s.server_host, ec);
  if (ec) GTEST_SKIP() << "the proxy needs the server as an IP address, got " << s.server_host;
  nudge::testing::TcpProxy proxy(s.server_host, s.server_port);
  const auto through_proxy = overrides_naming_server_at(proxy.port());
  if (through_proxy.empty())
    GTEST_SKIP() << "no --set value names the server " << s.server_host << ":" << s.server_port;

  std::string error;
  auto sink = create_instance<Sink>(config_for_case(tag_, through_proxy), *context_, error);
  ASSERT_TRUE(sink) << "create() failed: " << error;
  const Status started = sink->start();
  ASSERT_TRUE(started.ok()) << "start() through the proxy failed: " << started.message();
  ASSERT_TRUE(sink->readiness().ready) << sink->readiness().reason;
  const auto write_one = [&](const std::string& name) {
    auto done = std::make_shared<std::optional<Status>>();
    sink->write(std::make_shared<const Batch>(std::vector<MessagePtr>{make(room(name), "s", name)}),
                [done](Status st) { *done = std::move(st); });
    return run_until([&] { return done->has_value(); }, kWriteLimit) && (*done)->ok();
  };
  ASSERT_TRUE(write_one("before"));

  const auto within = s.readiness_within;
  proxy.down();
  auto t0 = Clock::now();
  ASSERT_TRUE(run_until([&] { return !sink->readiness().ready; }, within + std::chrono::seconds(5)))
      << "still ready " << (within + std::chrono::seconds(5)).count() << " ms after the server went away";
  const auto noticed = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  EXPECT_LE(noticed, within) << "noticed after " << noticed.count() << " ms (--readiness-within-ms " << within.count()
                             << ")";
  const auto reason = sink->readiness().reason;
  EXPECT_FALSE(reason.empty()) << "not ready says why";
  measured("not_ready_after_ms", noticed.count(),
           "not ready " + std::to_string(noticed.count()) + " ms after the server went away: " + reason);
  // Still not ready a while later: no check may pass while the server is away.
  run_for(milliseconds(1500));
  EXPECT_FALSE(sink->readiness().ready) << "ready again while the server is still away";

  proxy.up();
  t0 = Clock::now();
  ASSERT_TRUE(run_until([&] { return sink->readiness().ready; }, within + std::chrono::seconds(5)))
      << "not ready " << (within + std::chrono::seconds(5)).count()
      << " ms after the server came back: " << sink->readiness().reason;
  const auto back = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  EXPECT_LE(back, within) << "ready after " << back.count() << " ms (--readiness-within-ms " << within.count() << ")";
  measured("ready_again_after_ms", back.count(),
           "ready again " + std::to_string(back.count()) + " ms after the server came back");
  EXPECT_TRUE(write_one("after")) << "a write once ready again";

  auto stopped = std::make_shared<bool>(false);
  sink->stop([stopped] { *stopped = true; });
  EXPECT_TRUE(run_until([&] { return *stopped; }, kWriteLimit)) << "stop() must call its completion";
}

}  // namespace

void register_sink_cases() {
  const char* suite = "SinkConformance";
  register_case<SinkConformance>(suite, "AReplayedBatchAddsNoRow", &SinkConformance::AReplayedBatchAddsNoRow, __FILE__,
                                 __LINE__);
  register_case<SinkConformance>(suite, "TextAndBinaryAreStoredByteForByte",
                                 &SinkConformance::TextAndBinaryAreStoredByteForByte, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "HistoryReadsOneRoomOldestFirst",
                                 &SinkConformance::HistoryReadsOneRoomOldestFirst, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "TimestampsAreKeptToTheMillisecond",
                                 &SinkConformance::TimestampsAreKeptToTheMillisecond, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "HistoryKeepsEveryFieldAndGoesByIdNotByArrival",
                                 &SinkConformance::HistoryKeepsEveryFieldAndGoesByIdNotByArrival, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "HistoryMatchesRoomsExactly", &SinkConformance::HistoryMatchesRoomsExactly,
                                 __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "AReadQueuedAfterAWriteSeesIt", &SinkConformance::AReadQueuedAfterAWriteSeesIt,
                                 __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "StopLetsAWriteInProgressFinish",
                                 &SinkConformance::StopLetsAWriteInProgressFinish, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "NotReadyBeforeStartAndReadyAfter",
                                 &SinkConformance::NotReadyBeforeStartAndReadyAfter, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "ABatchWrittenDuringAnOutageLandsAfterIt",
                                 &SinkConformance::ABatchWrittenDuringAnOutageLandsAfterIt, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "NotReadySoonAfterLosingItsServerWithoutTrafficAndReadyWhenBack",
                                 &SinkConformance::NotReadySoonAfterLosingItsServerWithoutTrafficAndReadyWhenBack,
                                 __FILE__, __LINE__);
}

}  // namespace nudge::conformance
