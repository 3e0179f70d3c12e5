// The log conformance suite. Each case uses a topic and consumer group of its
// own (generated unless --set), appends through one instance of the plugin
// (LogStartOptions{produce}) and consumes through others ({consumer}), as the
// runtime's edge and persistence instances would.
//
// What a log promises (sdk/include/nudge/sdk/log.hpp, docs/architecture.md):
// an append's ok means stored; the consumer side hands each stored message
// over, one batch at a time, in append order per room (the key); a batch's
// position is committed only after the sink confirmed it, so a batch that was
// never confirmed is handed over again to the group's next consumer.

#include <algorithm>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <boost/asio/post.hpp>

#include "harness.hpp"

namespace nudge::conformance {
namespace {

using std::chrono::seconds;

/// What the consumer side hands over. Records batches, answers them according
/// to `policy`, and checks the one-batch-at-a-time rule. Messages of other
/// runs (a reused topic) are confirmed and ignored.
struct Recorder final : LogConsumer {
  enum class Policy { confirm, hold_next, cancel_all };

  boost::asio::any_io_executor executor;
  std::string tag;
  Policy policy = Policy::confirm;
  /// With hold_next: confirm until this many messages were confirmed, then hold.
  std::size_t hold_after = 0;

  std::vector<MessagePtr> delivered;  // every handover of our messages, in order
  std::vector<MessagePtr> confirmed;  // those in batches answered ok
  std::vector<MessagePtr> held_batch;
  Completion held;
  std::size_t batches = 0;
  std::size_t batches_while_busy = 0;
  std::size_t largest_batch = 0;
  std::size_t foreign = 0;
  bool busy = false;

  void on_batch(BatchPtr batch, Completion done) override {
    ++batches;
    if (busy) ++batches_while_busy;
    busy = true;
    largest_batch = std::max(largest_batch, batch->size());
    std::vector<MessagePtr> ours;
    for (const auto& m : *batch) {
      const std::string* t = header(*m, kTagHeader);
      if (t && *t == tag) ours.push_back(m);
      else ++foreign;
    }
    delivered.insert(delivered.end(), ours.begin(), ours.end());
    if (policy == Policy::cancel_all) {
      answer(std::move(done), Status::error(StatusCode::cancelled, "conformance: shutting down"));
      return;
    }
    if (policy == Policy::hold_next && confirmed.size() >= hold_after && !held && !ours.empty()) {
      held_batch = std::move(ours);
      held = [this, done = std::move(done)](Status s) mutable {
        busy = false;
        done(std::move(s));
      };
      return;
    }
    confirmed.insert(confirmed.end(), ours.begin(), ours.end());
    answer(std::move(done), Status::success());
  }

  /// Answered on a later turn of the loop, as a sink's write would be.
  void answer(Completion done, Status status) {
    boost::asio::post(executor, [this, done = std::move(done), status = std::move(status)]() mutable {
      busy = false;
      done(std::move(status));
    });
  }

  /// As the runtime at shutdown: the held batch fails (cancelled), and any
  /// batch handed over from now on is cancelled too.
  void release_cancelled() {
    policy = Policy::cancel_all;
    if (held) std::exchange(held, nullptr)(Status::error(StatusCode::cancelled, "conformance: shutting down"));
  }

  std::set<MessageId> delivered_ids() const {
    std::set<MessageId> ids;
    for (const auto& m : delivered) ids.insert(m->id);
    return ids;
  }
};

struct Instance {
  nudge::testing::TestContext context;
  std::unique_ptr<Log> log;
  explicit Instance(boost::asio::io_context& io, const std::string& name)
      : context(io, "log." + settings().plugin->name() + "@" + name, name) {}
};

class LogConformance : public ConformanceTest {
 public:
  void OrderPerRoomAndExactlyOnceWhenEveryBatchIsConfirmed();
  void AtLeastOnceAcrossAConsumerRestart();
  void NothingIsCommittedBeforeTheSinkConfirms();

 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped()) return;
    tag_ = case_tag();
    config_ = config_for_case(tag_);
  }

  void TearDown() override {
    for (auto& r : recorders_) r->release_cancelled();
    for (auto& instance : instances_) stop(*instance);
    instances_.clear();
    recorders_.clear();
    ConformanceTest::TearDown();
  }

  Instance& start(const std::string& name, const LogStartOptions& options) {
    instances_.push_back(std::make_unique<Instance>(io_, "conf-" + name + "-" + tag_));
    Instance& instance = *instances_.back();
    std::string error;
    instance.log = create_instance<Log>(config_, instance.context, error);
    EXPECT_TRUE(instance.log) << "create() failed: " << error;
    if (!instance.log) return instance;
    const Status started = instance.log->start(options);
    EXPECT_TRUE(started.ok()) << "start() failed: " << started.message();
    if (!started.ok()) instance.log.reset();
    return instance;
  }

  void stop(Instance& instance) {
    if (!instance.log) return;
    auto stopped = std::make_shared<bool>(false);
    instance.log->stop([stopped] { *stopped = true; });
    EXPECT_TRUE(run_until([&] { return *stopped; }, seconds(60))) << "stop() did not call its completion within 60 s";
    instance.log.reset();
    run_for(milliseconds(20));
  }

  /// Appends `n` messages over `rooms` rooms and waits for every completion;
  /// returns them in append order.
  std::vector<MessagePtr> append(Log& log, int n, int rooms) {
    // Shared with the completions, which may come after a timeout here.
    struct Tally {
      std::vector<int> answers;
      std::size_t ok = 0, answered = 0;
      std::map<std::string, std::size_t> errors;
    };
    auto tally = std::make_shared<Tally>();
    tally->answers.resize(static_cast<std::size_t>(n));
    std::vector<MessagePtr> sent;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      auto m = std::make_shared<Message>();
      m->id = MessageId::generate();
      m->room = "conf-" + tag_ + "-room" + std::to_string(i % rooms);
      m->sender = "s" + std::to_string(i % 3);
      m->payload = "m" + std::to_string(i);
      m->timestamp_ms = now_ms();
      m->origin = "conf-" + tag_;
      m->headers = {{std::string(kTagHeader), tag_}, {std::string(kSeqHeader), std::to_string(i)}};
      sent.push_back(m);
      log.append(m, [tally, i](Status s) {
        if (tally->answers[static_cast<std::size_t>(i)]++ == 0) ++tally->answered;
        if (s.ok()) ++tally->ok;
        else ++tally->errors[std::string(to_string(s.code())) + ": " + s.message()];
      });
      if (i % 100 == 99) run_for(milliseconds(1));
    }
    EXPECT_TRUE(run_until([&] { return tally->answered == static_cast<std::size_t>(n); }, seconds(60)))
        << tally->answered << " of " << n << " appends were answered within 60 s";
    const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
    run_for(milliseconds(100));
    std::size_t twice = 0;
    for (int a : tally->answers) twice += a > 1;
    EXPECT_EQ(twice, 0u) << "appends whose completion ran more than once";
    EXPECT_EQ(tally->ok, static_cast<std::size_t>(n)) << "appends not acked";
    for (const auto& [what, count] : tally->errors) ADD_FAILURE() << count << " appends failed with " << what;
    measured(
        "append_ms", ms,
        std::to_string(n) + " appends over " + std::to_string(rooms) + " rooms acked in " + std::to_string(ms) + " ms");
    return sent;
  }

  /// A consumer owned by the fixture, so it outlives the log instances
  /// (they are stopped in TearDown, after the case's body).
  Recorder& recorder() {
    recorders_.push_back(std::make_unique<Recorder>());
    Recorder& r = *recorders_.back();
    r.executor = io_.get_executor();
    r.tag = tag_;
    return r;
  }

  std::string tag_;
  Config config_;
  std::vector<std::unique_ptr<Recorder>> recorders_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

LogStartOptions producer_options() {
  LogStartOptions o;
  o.produce = true;
  return o;
}

LogStartOptions consumer_options(LogConsumer& consumer, std::size_t max_batch) {
  LogStartOptions o;
  o.consumer = &consumer;
  o.max_batch_messages = max_batch;
  return o;
}

void LogConformance::OrderPerRoomAndExactlyOnceWhenEveryBatchIsConfirmed() {
  constexpr int kMessages = 2000;
  constexpr int kRooms = 20;
  constexpr std::size_t kMaxBatch = 500;
  Instance& producer = start("producer", producer_options());
  ASSERT_TRUE(producer.log);
  const auto sent = append(*producer.log, kMessages, kRooms);
  if (HasFailure()) return;
  stop(producer);

  Recorder& sink = recorder();
  Instance& consumer = start("consumer", consumer_options(sink, kMaxBatch));
  ASSERT_TRUE(consumer.log);
  const auto t0 = Clock::now();
  const bool all = run_until([&] { return sink.delivered.size() >= sent.size(); }, seconds(90));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  run_for(seconds(1));  // duplicates would show up here
  ASSERT_TRUE(all) << sink.delivered.size() << " of " << sent.size() << " messages were handed over within 90 s";
  measured("consume_ms", ms,
           std::to_string(sent.size()) + " messages handed over in " + std::to_string(sink.batches) +
               " batches within " + std::to_string(ms) + " ms of the consumer's start");

  EXPECT_EQ(sink.delivered.size(), sent.size()) << "every message exactly once when every batch is confirmed";
  EXPECT_EQ(sink.batches_while_busy, 0u) << "a batch was handed over before the previous one was answered";
  EXPECT_LE(sink.largest_batch, kMaxBatch) << "a batch exceeded LogStartOptions::max_batch_messages";
  std::map<MessageId, int> times;
  for (const auto& m : sink.delivered) ++times[m->id];
  std::size_t missing = 0, twice = 0;
  for (const auto& m : sent) {
    const int t = times[m->id];
    missing += t == 0;
    twice += t > 1;
  }
  EXPECT_EQ(missing, 0u) << "messages never handed over";
  EXPECT_EQ(twice, 0u) << "messages handed over more than once";
  // Per room: the append order.
  std::map<std::string, std::vector<std::int64_t>> order;
  for (const auto& m : sink.delivered) order[m->room].push_back(seq_of(*m));
  std::size_t rooms_out_of_order = 0;
  for (const auto& [room, seqs] : order)
    if (!std::is_sorted(seqs.begin(), seqs.end())) {
      if (rooms_out_of_order++ == 0) ADD_FAILURE() << "room '" << room << "' was handed over out of append order";
    }
  EXPECT_EQ(order.size(), static_cast<std::size_t>(kRooms));
  EXPECT_EQ(rooms_out_of_order, 0u);
  std::size_t positions_missing = 0;
  for (const auto& m : sink.delivered) positions_missing += !m->log_position.valid();
  EXPECT_EQ(positions_missing, 0u) << "messages handed over without their log_position";
  // Fields travel as appended.
  std::map<MessageId, MessagePtr> by_id;
  for (const auto& m : sent) by_id.emplace(m->id, m);
  std::size_t altered = 0;
  for (const auto& m : sink.delivered) {
    const auto& want = *by_id.at(m->id);
    altered += m->room != want.room || m->sender != want.sender || m->payload != want.payload ||
               m->timestamp_ms != want.timestamp_ms || m->origin != want.origin || m->headers != want.headers;
  }
  EXPECT_EQ(altered, 0u) << "messages whose fields changed on the way through the log";
}

void LogConformance::AtLeastOnceAcrossAConsumerRestart() {
  constexpr int kMessages = 1000;
  constexpr std::size_t kMaxBatch = 100;
  Instance& producer = start("producer", producer_options());
  ASSERT_TRUE(producer.log);
  const auto sent = append(*producer.log, kMessages, 10);
  if (HasFailure()) return;
  stop(producer);

  Recorder& first = recorder();
  first.policy = Recorder::Policy::hold_next;
  first.hold_after = kMessages / 3;
  Instance& c1 = start("consumer1", consumer_options(first, kMaxBatch));
  ASSERT_TRUE(c1.log);
  ASSERT_TRUE(run_until([&] { return static_cast<bool>(first.held); }, seconds(90)))
      << "the first consumer got " << first.delivered.size() << " messages, not enough to hold a batch after "
      << first.hold_after;
  const std::size_t batches_at_hold = first.batches;
  run_for(seconds(1));
  EXPECT_EQ(first.batches, batches_at_hold) << "a batch was handed over while one was held (not answered)";
  // Shut down as the runtime does: the held batch fails (cancelled), then stop.
  first.release_cancelled();
  stop(c1);
  const std::vector<MessagePtr> held = first.held_batch;
  std::cout << "[ RESTART  ] first consumer: " << first.confirmed.size() << " confirmed, " << held.size()
            << " held then cancelled" << std::endl;

  Recorder& second = recorder();
  Instance& c2 = start("consumer2", consumer_options(second, kMaxBatch));
  ASSERT_TRUE(c2.log);
  std::set<MessageId> confirmed_first;
  for (const auto& m : first.confirmed) confirmed_first.insert(m->id);
  auto seen_all = [&] {
    std::set<MessageId> all = confirmed_first;
    for (const auto& m : second.delivered) all.insert(m->id);
    return all.size() >= sent.size();
  };
  const auto t0 = Clock::now();
  const bool all = run_until(seen_all, seconds(90));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  run_for(seconds(1));
  EXPECT_TRUE(all) << "across both consumers not every message was seen within 90 s of the second's start";

  const auto again = second.delivered_ids();
  std::size_t lost = 0, held_not_again = 0, repeated_confirmed = 0;
  for (const auto& m : sent)
    if (!confirmed_first.contains(m->id) && !again.contains(m->id)) ++lost;
  for (const auto& m : held) held_not_again += !again.contains(m->id);
  for (const auto& id : confirmed_first) repeated_confirmed += again.contains(id);
  EXPECT_EQ(lost, 0u) << "messages seen by neither consumer (at-least-once broken)";
  EXPECT_EQ(held_not_again, 0u) << "messages of the batch that was never confirmed were not handed over again";
  measured("second_consumer_ms", ms,
           "second consumer: " + std::to_string(second.delivered.size()) + " messages within " + std::to_string(ms) +
               " ms, including the " + std::to_string(held.size()) + " of the unconfirmed batch; " +
               std::to_string(repeated_confirmed) + " messages already confirmed came again (allowed)");
}

void LogConformance::NothingIsCommittedBeforeTheSinkConfirms() {
  constexpr int kMessages = 500;
  constexpr std::size_t kMaxBatch = 100;
  Instance& producer = start("producer", producer_options());
  ASSERT_TRUE(producer.log);
  const auto sent = append(*producer.log, kMessages, 5);
  if (HasFailure()) return;
  stop(producer);

  Recorder& first = recorder();
  first.policy = Recorder::Policy::hold_next;
  first.hold_after = 0;  // the very first batch is held
  Instance& c1 = start("consumer1", consumer_options(first, kMaxBatch));
  ASSERT_TRUE(c1.log);
  ASSERT_TRUE(run_until([&] { return static_cast<bool>(first.held); }, seconds(90)))
      << "the first consumer was handed no batch within 90 s";
  run_for(seconds(3));  // a log committing on a timer would commit now
  EXPECT_EQ(first.batches, 1u) << "a batch was handed over while the first one was not answered";
  first.release_cancelled();
  stop(c1);
  const std::vector<MessagePtr> held = first.held_batch;
  EXPECT_TRUE(first.confirmed.empty());

  Recorder& second = recorder();
  Instance& c2 = start("consumer2", consumer_options(second, kMaxBatch));
  ASSERT_TRUE(c2.log);
  const bool all = run_until([&] { return second.delivered_ids().size() >= sent.size(); }, seconds(90));
  run_for(milliseconds(500));
  const auto again = second.delivered_ids();
  std::size_t held_not_again = 0, missing = 0;
  for (const auto& m : held) held_not_again += !again.contains(m->id);
  for (const auto& m : sent) missing += !again.contains(m->id);
  EXPECT_EQ(held_not_again, 0u) << "messages of the batch never confirmed were not handed over again: its position "
                                   "was committed before the sink confirmed it";
  EXPECT_EQ(missing, 0u) << "nothing was confirmed, so the group's next consumer must get every message";
  EXPECT_TRUE(all);
  std::cout << "[ CHECKED  ] held batch of " << held.size() << " messages (never confirmed) handed over again; the "
            << "second consumer got " << again.size() << " of " << sent.size() << std::endl;
}

}  // namespace

void register_log_cases() {
  const char* suite = "LogConformance";
  register_case<LogConformance>(suite, "OrderPerRoomAndExactlyOnceWhenEveryBatchIsConfirmed",
                                &LogConformance::OrderPerRoomAndExactlyOnceWhenEveryBatchIsConfirmed, __FILE__,
                                __LINE__);
  register_case<LogConformance>(suite, "AtLeastOnceAcrossAConsumerRestart",
                                &LogConformance::AtLeastOnceAcrossAConsumerRestart, __FILE__, __LINE__);
  register_case<LogConformance>(suite, "NothingIsCommittedBeforeTheSinkConfirms",
                                &LogConformance::NothingIsCommittedBeforeTheSinkConfirms, __FILE__, __LINE__);
}

}  // namespace nudge::conformance
