#include <chrono>

#include <gtest/gtest.h>
#include <pqxx/except>

#include <boost/asio/io_context.hpp>

#include "errors.hpp"
#include "nudge/sdk/testing.hpp"
#include "postgres_sink.hpp"

namespace nudge::plugins::postgres {
namespace {

TEST(SqlstateTest, RetryableClasses) {
  struct Case {
    const char* sqlstate;
    bool reconnect;
  };
  for (auto c : {Case{"08000", true}, Case{"08006", true}, Case{"08001", true}, Case{"08P01", true},
                 Case{"57P01", true},     // admin_shutdown
                 Case{"57P02", true},     // crash_shutdown
                 Case{"57P03", true},     // cannot_connect_now
                 Case{"57014", false},    // query_canceled: statement_timeout
                 Case{"53300", false},    // too_many_connections
                 Case{"53100", false},    // disk_full
                 Case{"40001", false},    // serialization_failure
                 Case{"40P01", false},    // deadlock_detected
                 Case{"55P03", false},    // lock_not_available
                 Case{"58030", false},    // io_error
                 Case{"25006", true}}) {  // read_only_sql_transaction: reconnect to find the primary
    const auto got = classify_sqlstate(c.sqlstate);
    EXPECT_EQ(got.code, StatusCode::unavailable) << c.sqlstate;
    EXPECT_EQ(got.reconnect, c.reconnect) << c.sqlstate;
    EXPECT_TRUE(Status::error(got.code, "").retryable()) << c.sqlstate;
  }
}

TEST(SqlstateTest, PermanentClasses) {
  for (const char* s : {"22001",  // string_data_right_truncation
                        "22021",  // character_not_in_repertoire
                        "22P02",  // invalid_text_representation
                        "23502",  // not_null_violation
                        "42P01",  // undefined_table
                        "42703",  // undefined_column
                        "42501",  // insufficient_privilege
                        "42P10",  // ON CONFLICT without a unique index
                        "25001", "XX000", "", "5", "570140"}) {
    const auto got = classify_sqlstate(s);
    EXPECT_EQ(got.code, StatusCode::internal) << s;
    EXPECT_FALSE(got.reconnect) << s;
  }
}

TEST(ClassifyTest, LibpqxxExceptions) {
  const auto broken =
      classify(pqxx::broken_connection("server closed the connection unexpectedly\n\tThis probably..."));
  EXPECT_EQ(broken.what.code, StatusCode::unavailable);
  EXPECT_TRUE(broken.what.reconnect);
  EXPECT_EQ(broken.message, "server closed the connection unexpectedly This probably...");

  const auto too_many = classify(pqxx::too_many_connections("FATAL: sorry, too many clients already"));
  EXPECT_EQ(too_many.what.code, StatusCode::unavailable);

  const auto deadlock = classify(pqxx::deadlock_detected("deadlock detected"));
  EXPECT_EQ(deadlock.what.code, StatusCode::unavailable);

  const auto timeout =
      classify(pqxx::sql_error("ERROR: canceling statement due to statement timeout\n", "INSERT", "57014"));
  EXPECT_EQ(timeout.what.code, StatusCode::unavailable);
  EXPECT_EQ(timeout.sqlstate, "57014");
  EXPECT_EQ(timeout.message, "ERROR: canceling statement due to statement timeout");

  const auto data = classify(pqxx::data_exception("ERROR: value too long", "INSERT", "22001"));
  EXPECT_EQ(data.what.code, StatusCode::internal);
  EXPECT_EQ(data.sqlstate, "22001");

  EXPECT_EQ(classify(std::runtime_error("other")).what.code, StatusCode::internal);
}

TEST(ClassifyTest, PermanentConnectErrors) {
  EXPECT_TRUE(is_permanent_connect_error("FATAL: password authentication failed for user \"nudge\""));
  EXPECT_TRUE(is_permanent_connect_error("FATAL: database \"nope\" does not exist"));
  EXPECT_TRUE(is_permanent_connect_error("FATAL: no pg_hba.conf entry for host \"10.0.0.1\""));
  EXPECT_FALSE(is_permanent_connect_error(
      "could not connect to server: Connection refused Is the server running on host \"127.0.0.1\""));
  EXPECT_FALSE(is_permanent_connect_error("FATAL: the database system is starting up"));
  EXPECT_FALSE(is_permanent_connect_error("timeout expired"));
}

// No server needed: nothing listens on port 1.
Config unreachable_config(std::int64_t wait_ms) {
  return nudge::testing::make_config(
      PostgresConfig::schema(),
      {{"url", std::string("postgresql://nudge:s3cret@127.0.0.1:1/nudge")}, {"wait_for_database_ms", wait_ms}});
}

TEST(StartTest, FailsFastWithAClearMessageWhenUnreachable) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.postgres");
  PostgresSink sink(unreachable_config(0), context);
  const auto status = sink.start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("postgresql://nudge@127.0.0.1:1/nudge"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("scripts/services/postgres start"), std::string::npos) << status.message();
  EXPECT_EQ(status.message().find("s3cret"), std::string::npos) << status.message();
  EXPECT_EQ(context.metrics().gauge_value("connected"), 0);
}

TEST(StartTest, WaitsForTheDatabaseBeforeGivingUp) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.postgres");
  PostgresSink sink(unreachable_config(1200), context);
  const auto begin = std::chrono::steady_clock::now();
  const auto status = sink.start();
  const auto waited = std::chrono::steady_clock::now() - begin;
  ASSERT_FALSE(status.ok());
  EXPECT_GE(waited, std::chrono::milliseconds(1200));
  EXPECT_LT(waited, std::chrono::milliseconds(5000));
  EXPECT_NE(status.message().find("within 1200 ms"), std::string::npos) << status.message();
  EXPECT_GE(context.metrics().value("db_errors"), 3u);
}

TEST(StartTest, WriteBeforeStartFails) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.postgres");
  PostgresSink sink(unreachable_config(0), context);
  const auto status = nudge::testing::write_and_wait(io, sink, std::make_shared<const Batch>());
  EXPECT_EQ(status.code(), StatusCode::internal);
}

}  // namespace
}  // namespace nudge::plugins::postgres
