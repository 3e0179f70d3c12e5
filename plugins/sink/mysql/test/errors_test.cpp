#include <chrono>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "errors.hpp"
#include "mysql_sink.hpp"
#include "nudge/sdk/testing.hpp"
#include "server.hpp"

namespace nudge::plugins::mysql {
namespace {

struct Case {
  unsigned code;
  bool reconnect;
  const char* what;
};

TEST(ClassifyTest, RetryableErrors) {
  for (auto flavour : {ServerFlavour::mariadb, ServerFlavour::mysql, ServerFlavour::unknown}) {
    for (auto c : {Case{2006, true, "CR_SERVER_GONE_ERROR"},
                   Case{2013, true, "CR_SERVER_LOST"},
                   Case{2003, true, "CR_CONN_HOST_ERROR"},
                   Case{2002, true, "CR_CONNECTION_ERROR"},
                   Case{2005, true, "CR_UNKNOWN_HOST"},
                   Case{2055, true, "CR_SERVER_LOST_EXTENDED"},
                   Case{5013, true, "CR_ERR_NET_READ"},
                   Case{1053, true, "ER_SERVER_SHUTDOWN"},
                   Case{1927, true, "ER_CONNECTION_KILLED"},
                   Case{1158, true, "ER_NET_READ_ERROR"},
                   Case{1161, true, "ER_NET_WRITE_INTERRUPTED"},
                   Case{1184, true, "ER_NEW_ABORTING_CONNECTION"},
                   Case{1290, true, "--read-only"},
                   Case{1792, true, "read-only transaction"},
                   Case{1836, true, "ER_READ_ONLY_MODE"},
                   Case{1047, true, "Galera node not ready"},
                   Case{1205, false, "lock wait timeout"},
                   Case{1213, false, "deadlock"},
                   Case{1317, false, "KILL QUERY"},
                   Case{1969, false, "max_statement_time (MariaDB)"},
                   Case{3024, false, "max_execution_time (MySQL)"},
                   Case{1040, false, "too many connections"},
                   Case{1203, false, "max_user_connections"},
                   Case{1021, false, "disk full"},
                   Case{1114, false, "table full"},
                   Case{1041, false, "out of resources"}}) {
      const auto got = classify_error(c.code, flavour);
      EXPECT_EQ(got.code, StatusCode::unavailable) << c.code << " " << c.what;
      EXPECT_EQ(got.reconnect, c.reconnect) << c.code << " " << c.what;
      EXPECT_TRUE(Status::error(got.code, "").retryable()) << c.code;
    }
  }
}

TEST(ClassifyTest, PermanentErrors) {
  for (auto c : {Case{1366, false, "incorrect string value"}, Case{1406, false, "data too long"},
                 Case{1292, false, "incorrect datetime"}, Case{1146, false, "no such table"},
                 Case{1054, false, "unknown column"}, Case{1142, false, "command denied"},
                 Case{1062, false, "duplicate entry (another unique key)"}, Case{1064, false, "syntax"},
                 Case{1045, false, "access denied"}, Case{1049, false, "unknown database"}, Case{0, false, "none"},
                 Case{1153, true, "packet too large: the server hangs up"}, Case{2014, true, "commands out of sync"},
                 Case{2027, true, "malformed packet"}}) {
    const auto got = classify_error(c.code, ServerFlavour::mariadb);
    EXPECT_EQ(got.code, StatusCode::internal) << c.code << " " << c.what;
    EXPECT_EQ(got.reconnect, c.reconnect) << c.code << " " << c.what;
  }
}

TEST(ClassifyTest, ErrorNumbersThatDependOnTheFlavour) {
  // MySQL 8: the server closed an idle session; MariaDB: a trigger error.
  EXPECT_EQ(classify_error(4031, ServerFlavour::mysql).code, StatusCode::unavailable);
  EXPECT_TRUE(classify_error(4031, ServerFlavour::mysql).reconnect);
  EXPECT_EQ(classify_error(4031, ServerFlavour::mariadb).code, StatusCode::internal);
}

TEST(ClassifyTest, CredentialsErrors) {
  for (unsigned code : {1044u, 1045u, 1049u, 1130u, 1251u, 1698u, 2059u})
    EXPECT_TRUE(is_credentials_error(code)) << code;
  for (unsigned code : {2002u, 2003u, 2013u, 1040u, 1053u, 1205u}) EXPECT_FALSE(is_credentials_error(code)) << code;
}

TEST(ClassifyTest, DescribeAndOneLine) {
  const auto e =
      make_error(1205, "HY000", "Lock wait timeout exceeded;\n\ttry restarting transaction", ServerFlavour::mariadb);
  EXPECT_EQ(e.describe(), "Lock wait timeout exceeded; try restarting transaction (error 1205, SQLSTATE HY000)");
  EXPECT_EQ(e.what.code, StatusCode::unavailable);
  EXPECT_EQ(make_error(2013, "HY000", "Lost connection", ServerFlavour::unknown).describe(),
            "Lost connection (error 2013, SQLSTATE HY000)");
  const DatabaseError own{{}, 0, "", "found by the sink"};
  EXPECT_EQ(own.describe(), "found by the sink");
}

TEST(ServerInfoTest, TellsMariadbFromMysql) {
  auto s = parse_server_info("10.11.19-MariaDB-0+deb12u1", true);
  EXPECT_EQ(s.flavour, ServerFlavour::mariadb);
  EXPECT_EQ(s.describe(), "MariaDB 10.11.19");
  s = parse_server_info("5.5.5-10.3.39-MariaDB-log", false);  // the prefix old MariaDB servers send
  EXPECT_EQ(s.flavour, ServerFlavour::mariadb);
  EXPECT_EQ(s.describe(), "MariaDB 10.3.39");
  s = parse_server_info("8.0.36", false);
  EXPECT_EQ(s.flavour, ServerFlavour::mysql);
  EXPECT_EQ(s.describe(), "MySQL 8.0.36");
  EXPECT_TRUE(s.at_least(5, 7, 8));
  EXPECT_TRUE(s.at_least(8, 0, 36));
  EXPECT_FALSE(s.at_least(8, 0, 37));
  s = parse_server_info("5.7.44-log", false);
  EXPECT_EQ(s.describe(), "MySQL 5.7.44");
  EXPECT_FALSE(s.at_least(8, 0));
  s = parse_server_info("11.4.2-MariaDB", false);  // the version string decides
  EXPECT_EQ(s.flavour, ServerFlavour::mariadb);
  EXPECT_EQ(parse_server_info("garbage", false).describe(), "MySQL 0.0.0");
}

TEST(ServerInfoTest, SessionSetupPerFlavour) {
  const std::string common =
      "SET SESSION time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', autocommit = 1";
  const auto mariadb = parse_server_info("10.11.19-MariaDB", true);
  EXPECT_EQ(session_setup_sql(mariadb, 30000), common + ", max_statement_time = 30.000");
  EXPECT_EQ(session_setup_sql(mariadb, 1500), common + ", max_statement_time = 1.500");
  EXPECT_EQ(session_setup_sql(mariadb, 1050), common + ", max_statement_time = 1.050");
  EXPECT_EQ(session_setup_sql(mariadb, 7), common + ", max_statement_time = 0.007");
  EXPECT_EQ(session_setup_sql(mariadb, 0), common + ", max_statement_time = 0.000");
  EXPECT_EQ(session_setup_sql(parse_server_info("10.0.38-MariaDB", true), 30000), common);

  const auto mysql = parse_server_info("8.0.36", false);
  EXPECT_EQ(session_setup_sql(mysql, 30000), common + ", max_execution_time = 30000, innodb_lock_wait_timeout = 30");
  EXPECT_EQ(session_setup_sql(mysql, 1500), common + ", max_execution_time = 1500, innodb_lock_wait_timeout = 2");
  EXPECT_EQ(session_setup_sql(mysql, 0), common + ", max_execution_time = 0");
  EXPECT_EQ(session_setup_sql(parse_server_info("5.6.51", false), 30000), common + ", innodb_lock_wait_timeout = 30");
}

// No server needed: nothing listens on port 1.
Config unreachable_config(std::int64_t wait_ms) {
  return nudge::testing::make_config(MysqlConfig::schema(),
                                     {{"url", std::string("mysql://nudge:s3cret@127.0.0.1:1/nudge")},
                                      {"connect_timeout_ms", std::int64_t{1000}},
                                      {"wait_for_database_ms", wait_ms}});
}

TEST(StartTest, FailsFastWithAClearMessageWhenUnreachable) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.mysql");
  MysqlSink sink(unreachable_config(0), context);
  const auto status = sink.start();
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(status.retryable());
  EXPECT_NE(status.message().find("mysql://nudge@127.0.0.1:1/nudge"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("scripts/services/mariadb start"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("error 2002"), std::string::npos) << status.message();
  EXPECT_EQ(status.message().find("s3cret"), std::string::npos) << status.message();
  EXPECT_EQ(context.metrics().gauge_value("connected"), 0);
}

TEST(StartTest, WaitsForTheDatabaseBeforeGivingUp) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.mysql");
  MysqlSink sink(unreachable_config(1200), context);
  const auto begin = std::chrono::steady_clock::now();
  const auto status = sink.start();
  const auto waited = std::chrono::steady_clock::now() - begin;
  ASSERT_FALSE(status.ok());
  EXPECT_GE(waited, std::chrono::milliseconds(1200));
  EXPECT_LT(waited, std::chrono::milliseconds(5000));
  EXPECT_NE(status.message().find("within 1200 ms"), std::string::npos) << status.message();
  EXPECT_GE(context.metrics().value("db_errors"), 3u);
  EXPECT_EQ(context.logger().count(LogLevel::warn, "retrying for up to 1200 ms"), 1u);
}

TEST(StartTest, WriteBeforeStartFails) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.mysql");
  MysqlSink sink(unreachable_config(0), context);
  const auto status = nudge::testing::write_and_wait(io, sink, std::make_shared<const Batch>());
  EXPECT_EQ(status.code(), StatusCode::internal);
}

TEST(StartTest, StopAfterAFailedStartCompletes) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io, "sink.mysql");
  MysqlSink sink(unreachable_config(0), context);
  ASSERT_FALSE(sink.start().ok());
  EXPECT_TRUE(nudge::testing::stop_and_wait(io, sink));
}

}  // namespace
}  // namespace nudge::plugins::mysql
