#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "nudge/sdk/health_probe.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge {
namespace {

using namespace std::chrono_literals;
using testing::run_for;
using testing::run_until;

class HealthProbeTest : public ::testing::Test {
 protected:
  std::unique_ptr<HealthProbe> make(std::chrono::milliseconds interval) {
    return std::make_unique<HealthProbe>(context_, "DB", "db://host", interval, checks_);
  }
  /// A probe that reported healthy and runs `check` every `interval`.
  std::unique_ptr<HealthProbe> running(std::chrono::milliseconds interval, HealthProbe::Check check,
                                       HealthProbe::Busy busy = {}) {
    auto probe = make(interval);
    probe->report("");
    probe->start(std::move(check), std::move(busy));
    return probe;
  }
  /// A check that answers `answer` at once, as a worker would: on the executor.
  HealthProbe::Check answering(const std::string& answer) {
    return [this, answer](HealthProbe::Done done) {
      ++started_;
      boost::asio::post(io_, [done, answer] { done(answer); });
    };
  }
  /// A check that never answers by itself: the test calls pending_.
  HealthProbe::Check holding() {
    return [this](HealthProbe::Done done) {
      ++started_;
      pending_ = std::move(done);
    };
  }
  std::size_t warnings(const std::string& part) { return context_.logger().count(LogLevel::warn, part); }

  boost::asio::io_context io_;
  testing::TestContext context_{io_, "sink.test"};
  Counter checks_;
  int started_ = 0;
  HealthProbe::Done pending_;
};

TEST_F(HealthProbeTest, NotReadyUntilTheFirstReport) {
  auto probe = make(20ms);
  EXPECT_FALSE(probe->readiness().ready);
  EXPECT_EQ(probe->readiness().reason, "not connected to DB yet");
  probe->report("");
  EXPECT_TRUE(probe->readiness().ready);
}

TEST_F(HealthProbeTest, EveryIntervalRunsACheck) {
  auto probe = running(20ms, answering(""));
  run_for(io_, 300ms);
  EXPECT_GE(started_, 5) << "a check every 20 ms";
  EXPECT_LE(started_, 16);
  EXPECT_GE(checks_.value(), 5u) << "each answered check counts";
  EXPECT_TRUE(probe->readiness().ready) << probe->readiness().reason;
}

TEST_F(HealthProbeTest, NoCheckWhileBusy) {
  bool busy = true;
  auto probe = running(20ms, answering(""), [&] { return busy; });
  run_for(io_, 200ms);
  EXPECT_EQ(started_, 0) << "work queued on the connection tells as much as a check";
  busy = false;
  EXPECT_TRUE(run_until(
      io_, [&] { return checks_.value() >= 2; }, 1s));
}

TEST_F(HealthProbeTest, AFailingCheckMakesItNotReadyWithTheReasonAndWarnsOnce) {
  std::string answer = "connection refused";
  auto probe =
      running(20ms, [&](HealthProbe::Done done) { boost::asio::post(io_, [done, &answer] { done(answer); }); });
  ASSERT_TRUE(run_until(
      io_, [&] { return checks_.value() >= 3; }, 1s));
  EXPECT_FALSE(probe->readiness().ready);
  EXPECT_EQ(probe->readiness().reason, "no connection to DB: connection refused");
  EXPECT_EQ(warnings("DB at db://host cannot be used: connection refused"), 1u) << "on the change only";
  answer.clear();
  EXPECT_TRUE(run_until(
      io_, [&] { return probe->readiness().ready; }, 1s))
      << "ready again once a check gets through";
}

TEST_F(HealthProbeTest, AHungCheckMakesItNotReadyAfterTwiceTheIntervalAtLeast2s) {
  auto probe = running(20ms, holding());
  ASSERT_TRUE(run_until(
      io_, [&] { return started_ == 1; }, 1s));
  run_for(io_, 1500ms);
  EXPECT_TRUE(probe->readiness().ready) << "2 s of patience at the least: " << probe->readiness().reason;
  EXPECT_EQ(started_, 1) << "no second check while one is out";
  ASSERT_TRUE(run_until(
      io_, [&] { return !probe->readiness().ready; }, 1500ms));
  EXPECT_EQ(probe->readiness().reason, "no answer from DB at db://host to a health check for 2000 ms");
  pending_("");
  EXPECT_TRUE(probe->readiness().ready) << probe->readiness().reason;
  EXPECT_EQ(checks_.value(), 1u);
  pending_("late second answer");
  EXPECT_TRUE(probe->readiness().ready) << "a Done called twice counts once";
}

TEST_F(HealthProbeTest, AReportOverridesAndLogsNothing) {
  auto probe = running(20ms, answering(""));
  ASSERT_TRUE(run_until(
      io_, [&] { return checks_.value() >= 1; }, 1s));
  probe->report("lost the connection while writing");
  EXPECT_EQ(probe->readiness().reason, "no connection to DB: lost the connection while writing");
  EXPECT_EQ(warnings("cannot be used"), 0u) << "the failed call logs for itself";
  probe->report("");
  EXPECT_TRUE(probe->readiness().ready);
}

TEST_F(HealthProbeTest, SetIntervalRearmsTheTimer) {
  auto probe = running(60s, answering(""));
  run_for(io_, 100ms);
  EXPECT_EQ(started_, 0);
  probe->set_interval(20ms);
  ASSERT_TRUE(run_until(
      io_, [&] { return started_ >= 3; }, 1s))
      << "the new interval applies at once";
  probe->set_interval(60s);
  const int before = started_;
  run_for(io_, 200ms);
  EXPECT_LE(started_, before + 1);
}

TEST_F(HealthProbeTest, StopSilencesIt) {
  auto probe = running(20ms, holding());
  ASSERT_TRUE(run_until(
      io_, [&] { return started_ == 1; }, 1s));
  probe->stop();
  pending_("too late");
  EXPECT_EQ(checks_.value(), 0u) << "a Done after stop() is ignored";
  EXPECT_TRUE(probe->readiness().ready);
  probe->set_interval(10ms);
  run_for(io_, 100ms);
  EXPECT_EQ(started_, 1) << "no check after stop()";
  probe.reset();
  pending_("after the probe is gone");
  run_for(io_, 20ms);
}

TEST_F(HealthProbeTest, AStatusReportsOnlyWhatItSaysOfTheConnection) {
  auto probe = make(20ms);
  probe->report(Status::success());
  EXPECT_TRUE(probe->readiness().ready);
  probe->report(Status::error(StatusCode::invalid_argument, "a row the table refuses"));
  EXPECT_TRUE(probe->readiness().ready) << "a data error says nothing of the connection";
  probe->report(Status::error(StatusCode::unavailable, "connection refused"));
  EXPECT_EQ(probe->readiness().reason, "no connection to DB: connection refused");
  probe->report(Status::success());
  EXPECT_TRUE(probe->readiness().ready);
}

TEST_F(HealthProbeTest, TheIntervalKeyIsDeclaredLiveAndReconfigureAppliesIt) {
  ConfigSchema schema;
  HealthProbe::interval_key(schema);
  const ConfigField* field = schema.find(HealthProbe::kIntervalKey);
  ASSERT_TRUE(field);
  EXPECT_TRUE(field->live);
  EXPECT_EQ(std::get<std::int64_t>(*field->default_value), 1000);
  EXPECT_NE(field->validate(std::int64_t{99}), "");
  EXPECT_EQ(field->validate(std::int64_t{60000}), "");

  auto probe = running(1h, answering(""));
  run_for(io_, 60ms);
  EXPECT_EQ(started_, 0);
  const Status applied =
      probe->reconfigure(testing::make_config(schema, {{"health_check_interval_ms", std::int64_t{100}}}));
  ASSERT_TRUE(applied.ok()) << applied.message();
  EXPECT_TRUE(run_until(
      io_, [&] { return started_ >= 2; }, 2s))
      << "checks every 100 ms from now";
}

}  // namespace
}  // namespace nudge
