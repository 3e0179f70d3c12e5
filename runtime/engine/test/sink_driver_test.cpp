#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "engine/logging.hpp"
#include "engine/sink_driver.hpp"

namespace nudge::runtime {
namespace {

/// A sink that fails its first `failures` writes, then records batches.
class FlakySink final : public Sink {
 public:
  FlakySink(boost::asio::io_context& io, int failures) : io_(io), failures_(failures) {}
  Status start() override { return Status::success(); }
  void write(BatchPtr batch, Completion done) override {
    ++attempts;
    const bool fail = failures_-- > 0;
    boost::asio::post(io_, [this, batch, done, fail] {
      if (fail) return done(Status::error(StatusCode::unavailable, "database is down"));
      written.push_back(batch);
      done(Status::success());
    });
  }
  void stop(std::function<void()> done) override { done(); }

  int attempts = 0;
  std::vector<BatchPtr> written;

 private:
  boost::asio::io_context& io_;
  int failures_;
};

MessagePtr message(int n) {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = "r";
  m->payload = std::to_string(n);
  return m;
}

class SinkDriverTest : public ::testing::Test {
 protected:
  boost::asio::io_context io_;
  NamedLogger logger_{"test"};
  MetricsRegistry registry_;
  StageStats metrics_{registry_, "sink.test"};
  SinkSettings settings_{.batch_max_messages = 3, .batch_linger_ms = 20, .retry_initial_ms = 1, .retry_max_ms = 4};
};

TEST_F(SinkDriverTest, RetriesAFailedBatchUntilItIsWrittenThenCompletesOnce) {
  FlakySink sink(io_, 3);
  SinkDriver driver(io_.get_executor(), sink, settings_, logger_, metrics_);
  int completions = 0;
  Status result = Status::error(StatusCode::internal, "not called");
  auto batch = std::make_shared<const Batch>(Batch{message(1), message(2)});
  driver.write_with_retry(batch, [&](Status s) {
    ++completions;
    result = s;
  });
  io_.run();
  EXPECT_EQ(completions, 1);
  EXPECT_TRUE(result.ok()) << result.message();
  EXPECT_EQ(sink.attempts, 4);
  ASSERT_EQ(sink.written.size(), 1u);
  EXPECT_EQ(sink.written[0], batch) << "the same batch is retried, not a copy or a subset";
  EXPECT_EQ(metrics_.retries.value(), 3u);
  EXPECT_EQ(metrics_.out.value(), 2u);
  EXPECT_EQ(metrics_.errors.value(), 3u);
  EXPECT_EQ(metrics_.batch_messages->count(), 1u);
  EXPECT_EQ(metrics_.queue_depth.value(), 0);
}

TEST_F(SinkDriverTest, GathersSingleMessagesIntoBatchesBySizeThenLinger) {
  FlakySink sink(io_, 0);
  SinkDriver driver(io_.get_executor(), sink, settings_, logger_, metrics_);
  std::vector<int> acked;
  for (int n = 0; n < 7; ++n)
    driver.enqueue(message(n), [&acked, n](Status s) {
      if (s.ok()) acked.push_back(n);
    });
  io_.run();
  ASSERT_EQ(sink.written.size(), 3u);
  EXPECT_EQ(sink.written[0]->size(), 3u);
  EXPECT_EQ(sink.written[1]->size(), 3u);
  EXPECT_EQ(sink.written[2]->size(), 1u) << "the remainder goes out when the linger time is up";
  EXPECT_EQ(acked, (std::vector<int>{0, 1, 2, 3, 4, 5, 6})) << "acks in the order messages came";
}

TEST_F(SinkDriverTest, ShutdownCancelsAPendingRetryWithoutReportingSuccess) {
  FlakySink sink(io_, 1000);
  settings_.retry_initial_ms = 50;
  SinkDriver driver(io_.get_executor(), sink, settings_, logger_, metrics_);
  Status result;
  bool idle = false;
  driver.write_with_retry(std::make_shared<const Batch>(Batch{message(1)}), [&](Status s) { result = s; });
  io_.run_for(std::chrono::milliseconds(20));
  driver.shutdown([&] { idle = true; });
  io_.run();
  EXPECT_EQ(result.code(), StatusCode::cancelled);
  EXPECT_TRUE(idle);
  EXPECT_TRUE(sink.written.empty());
}

}  // namespace
}  // namespace nudge::runtime
