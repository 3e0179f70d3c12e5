// The sink conformance suite. Rows are read back through the sink's history
// capability (Sink::read_history), so a sink must support it to be checked.
//
// What a sink promises (sdk/include/nudge/sdk/sink.hpp, docs/architecture.md):
// a batch written again adds no row (idempotent by message id); rooms,
// senders and payloads are stored as given, whatever their bytes; a write
// during an outage fails with a retryable status and lands once the server is
// back, exactly once; history reads return a room's rows oldest first.

#include <algorithm>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace nudge::conformance {
namespace {

/// Long enough for any write, including one that waits out a connect timeout.
constexpr auto kWriteLimit = std::chrono::seconds(60);
constexpr std::size_t kReadAll = 10000;

class SinkConformance : public ConformanceTest {
 public:
  void AReplayedBatchAddsNoRow();
  void TextAndBinaryAreStoredByteForByte();
  void HistoryReadsOneRoomOldestFirst();
  void ABatchWrittenDuringAnOutageLandsAfterIt();

 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped()) return;
    tag_ = case_tag();
    context_ = std::make_unique<nudge::testing::TestContext>(io_, "sink." + settings().plugin->name(),
                                                             "conf-" + tag_);
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
  std::vector<MessagePtr> read(HistoryQuery query, Status* status_out = nullptr) {
    auto result = std::make_shared<std::optional<std::pair<Status, std::vector<MessagePtr>>>>();
    const std::string room_name = query.room;
    sink_->read_history(std::move(query), [result](Status s, std::vector<MessagePtr> messages) {
      if (result->has_value()) ADD_FAILURE() << "read_history() called its handler twice";
      *result = std::make_pair(std::move(s), std::move(messages));
    });
    if (!run_until([&] { return result->has_value(); }, kWriteLimit)) {
      ADD_FAILURE() << "read_history() of room '" << room_name << "' did not call its handler within 60 s";
      return {};
    }
    auto& [status, messages] = **result;
    if (status_out) *status_out = status;
    else
      EXPECT_TRUE(status.ok()) << "read_history() of room '" << room_name << "' failed: " << status.message();
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
      room("emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 \xc3\xbcn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87"),
      room("quote ' double \" backslash \\ end\\"),
      room("'); DROP TABLE messages; --"),
      room("100%"),
      room("%"),
      room("a_b"),
      room("axb"),  // a LIKE 'a_b' would catch this one too
      room("tab\tnewline\ncr\r"),
  };
  const std::vector<std::string> senders = {
      "O'Brien \"Bob\" \\ \xf0\x9f\x98\x80",
      "'); DROP TABLE messages; --",
      "%_%\\%",
      "\xe2\x80\xae right-to-left \xe2\x80\xac",
  };
  std::vector<std::string> payloads;
  payloads.push_back(pattern(256));                      // every byte value, ascending
  std::string descending = pattern(256);
  std::reverse(descending.begin(), descending.end());
  payloads.push_back(descending);
  payloads.push_back("");
  payloads.push_back(std::string(1, '\0'));
  payloads.push_back(std::string(1, '\xff'));
  payloads.push_back("\xc3\x28 not UTF-8 \xa0\xa1");
  payloads.push_back(std::string("'); DROP TABLE messages; --\0\\%_\"", 32));
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

void SinkConformance::ABatchWrittenDuringAnOutageLandsAfterIt() {
  if (!settings().has_outage()) GTEST_SKIP() << no_outage_commands();
  const std::string r = room("outage");
  std::vector<MessagePtr> batch;
  for (int i = 0; i < 100; ++i) batch.push_back(make(r, "s", "during the outage " + std::to_string(i)));

  begin_outage();
  if (HasFatalFailure()) return;
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

}  // namespace

void register_sink_cases() {
  const char* suite = "SinkConformance";
  register_case<SinkConformance>(suite, "AReplayedBatchAddsNoRow", &SinkConformance::AReplayedBatchAddsNoRow,
                                 __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "TextAndBinaryAreStoredByteForByte",
                                 &SinkConformance::TextAndBinaryAreStoredByteForByte, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "HistoryReadsOneRoomOldestFirst",
                                 &SinkConformance::HistoryReadsOneRoomOldestFirst, __FILE__, __LINE__);
  register_case<SinkConformance>(suite, "ABatchWrittenDuringAnOutageLandsAfterIt",
                                 &SinkConformance::ABatchWrittenDuringAnOutageLandsAfterIt, __FILE__, __LINE__);
}

}  // namespace nudge::conformance
