// Operating a running pipeline: the Prometheus exposition, structured and
// rate-limited logs, readiness, the admin endpoint and reloads.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "cli/admin_client.hpp"
#include "cli/cli.hpp"
#include "engine/admin_server.hpp"
#include "engine/logging.hpp"
#include "engine/metrics.hpp"
#include "engine/pipeline.hpp"
#include "engine/pipeline_config.hpp"

namespace nudge::runtime {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(MetricsExposition, CountersGaugesAndHistogramsInThePrometheusTextFormat) {
  MetricsRegistry registry;
  registry.set_common_labels({{"pipeline", "chat"}, {"instance", "a"}});
  registry.counter("nudge_stage_messages_in", "Messages in", {{"stage", "sink.postgres"}}).add(42);
  registry.counter("nudge_stage_messages_in", "Messages in", {{"stage", "log.kafka"}}).add(7);
  registry.gauge("nudge_log_kafka_partition_lag", "Lag", {{"partition", "3"}, {"topic", "a\"b\\c\nd"}}).set(-5);
  auto& h = registry.histogram("nudge_ingest_to_ack_seconds", "Ack latency", {0.01, 0.1, 1});
  h.observe(0.005);
  h.observe(0.05);
  h.observe(0.05);
  h.observe(30);
  const std::string text = registry.prometheus();

  EXPECT_TRUE(contains(
      text, "# HELP nudge_stage_messages_in_total Messages in\n# TYPE nudge_stage_messages_in_total counter\n"));
  EXPECT_EQ(text.find("# TYPE nudge_stage_messages_in_total"), text.rfind("# TYPE nudge_stage_messages_in_total"))
      << "one HELP/TYPE per family";
  EXPECT_TRUE(
      contains(text, "nudge_stage_messages_in_total{pipeline=\"chat\",instance=\"a\",stage=\"sink.postgres\"} 42\n"));
  EXPECT_TRUE(
      contains(text, "nudge_stage_messages_in_total{pipeline=\"chat\",instance=\"a\",stage=\"log.kafka\"} 7\n"));
  EXPECT_TRUE(contains(text, "# TYPE nudge_log_kafka_partition_lag gauge\n"));
  EXPECT_TRUE(contains(text, "topic=\"a\\\"b\\\\c\\nd\"} -5\n")) << text;
  EXPECT_TRUE(contains(text, "# TYPE nudge_ingest_to_ack_seconds histogram\n"));
  EXPECT_TRUE(contains(text, "nudge_ingest_to_ack_seconds_bucket{pipeline=\"chat\",instance=\"a\",le=\"0.01\"} 1\n"));
  EXPECT_TRUE(
      contains(text,
               "nudge_ingest_to_ack_seconds_bucket{pipeline=\"chat\",instance=\"a\",le=\"0.10000000000000001\"} 3\n") ||
      contains(text, "nudge_ingest_to_ack_seconds_bucket{pipeline=\"chat\",instance=\"a\",le=\"0.1\"} 3\n"))
      << text;
  EXPECT_TRUE(contains(text, "nudge_ingest_to_ack_seconds_bucket{pipeline=\"chat\",instance=\"a\",le=\"1\"} 3\n"));
  EXPECT_TRUE(contains(text, "nudge_ingest_to_ack_seconds_bucket{pipeline=\"chat\",instance=\"a\",le=\"+Inf\"} 4\n"));
  EXPECT_TRUE(contains(text, "nudge_ingest_to_ack_seconds_count{pipeline=\"chat\",instance=\"a\"} 4\n"));
  EXPECT_TRUE(contains(text, "nudge_ingest_to_ack_seconds_sum{pipeline=\"chat\",instance=\"a\"} 30.10"));
  EXPECT_THROW(registry.gauge("nudge_stage_messages_in"), std::logic_error) << "one name, one type";
}

TEST(MetricsExposition, StageMetricsNameAPluginsSeriesAfterItsStage) {
  MetricsRegistry registry;
  StageMetrics metrics(registry, "transform.rate-limit");
  metrics.counter("limited", "Messages limited").add(3);
  metrics.gauge("buckets", "Buckets", {{"shard", "1"}}).set(9);
  const std::string text = registry.prometheus();
  EXPECT_TRUE(contains(text, "nudge_transform_rate_limit_limited_total{stage=\"transform.rate-limit\"} 3\n")) << text;
  EXPECT_TRUE(contains(text, "nudge_transform_rate_limit_buckets{stage=\"transform.rate-limit\",shard=\"1\"} 9\n"));
}

class LogOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = std::tmpfile();
    output_.set_sink(file_);
    output_.set_identity("chat", "inst-1");
  }
  void TearDown() override {
    output_.set_sink(nullptr);
    output_.set_format(LogFormat::text);
    output_.set_repeat_window(std::chrono::seconds(10));
    output_.set_identity("", "");
    std::fclose(file_);
  }
  std::vector<std::string> lines() {
    std::fflush(file_);
    std::rewind(file_);
    std::vector<std::string> out;
    char buffer[4096];
    while (std::fgets(buffer, sizeof buffer, file_)) out.emplace_back(buffer);
    return out;
  }

  LogOutput& output_ = LogOutput::instance();
  std::FILE* file_ = nullptr;
};

TEST_F(LogOutputTest, LogfmtAndJsonLinesCarryPipelineInstanceStageAndPlugin) {
  output_.set_format(LogFormat::logfmt);
  const auto logfmt = output_.format_line(LogLevel::warn, "sink.postgres", "write failed: \"x\" = y", 0);
  EXPECT_TRUE(contains(logfmt,
                       " level=warn pipeline=chat instance=inst-1 stage=sink.postgres plugin=postgres "
                       "msg=\"write failed: \\\"x\\\" = y\""))
      << logfmt;
  EXPECT_TRUE(logfmt.starts_with("ts=20"));
  output_.set_format(LogFormat::json);
  const auto json = output_.format_line(LogLevel::info, "runtime", "line\nbreak", 3);
  EXPECT_TRUE(contains(json,
                       "\"level\":\"info\",\"pipeline\":\"chat\",\"instance\":\"inst-1\",\"stage\":\"runtime\","
                       "\"msg\":\"line\\nbreak\",\"repeated\":3}"))
      << json;
  EXPECT_FALSE(contains(json, "\"plugin\"")) << "the runtime's own lines name no plugin";
}

TEST_F(LogOutputTest, ARepeatedErrorIsWrittenOncePerWindowAndTheNextSaysHowManyWereHeldBack) {
  output_.set_format(LogFormat::logfmt);
  output_.set_repeat_window(std::chrono::milliseconds(300));
  for (int i = 0; i < 50; ++i) output_.write(LogLevel::error, "log.kafka", "append failed, retry " + std::to_string(i));
  output_.write(LogLevel::error, "log.kafka", "another fault entirely");
  output_.write(LogLevel::info, "log.kafka", "info lines are never held back");
  output_.write(LogLevel::info, "log.kafka", "info lines are never held back");
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  output_.write(LogLevel::error, "log.kafka", "append failed, retry 99");
  const auto written = lines();
  ASSERT_EQ(written.size(), 5u);
  EXPECT_TRUE(contains(written[0], "msg=\"append failed, retry 0\""));
  EXPECT_TRUE(contains(written[1], "another fault entirely"));
  EXPECT_TRUE(contains(written[4], "msg=\"append failed, retry 99\" repeated=49")) << written[4];
}

class ReloadTest : public ::testing::Test {
 protected:
  std::optional<PipelineSpec> load(const std::string& text) {
    diags_ = {};
    return load_pipeline_text(text, "test.toml", ::testing::TempDir(), registry_, {}, diags_);
  }
  static std::string pipeline(const std::string& pipeline_keys, const std::string& sink_keys,
                              const std::string& extra = "") {
    return "[pipeline]\nname = \"t\"\n" + pipeline_keys + "\n[source.websocket]\nlisten = \"127.0.0.1:0\"\n" + extra +
           "[fanout.memory]\n[sink.testsink]\npath = \"x\"\n" + sink_keys + "\n";
  }

  PluginRegistry registry_{{NUDGE_TEST_PLUGIN_DIR, NUDGE_BUILD_PLUGIN_DIR}};
  Diagnostics diags_;
  boost::asio::io_context io_;
  MetricsRegistry metrics_;
};

TEST_F(ReloadTest, LiveKeysApplyAndRestartOnlyKeysRefuseTheWholeReloadNamingEachKey) {
  auto spec = load(pipeline("max_in_flight = 100", "batch_max_messages = 10"));
  ASSERT_TRUE(spec) << diags_.to_string();
  Pipeline p(io_, std::move(*spec), metrics_);
  ASSERT_TRUE(p.create());

  // Refused: deliver and the listener need a restart; the live change beside them is not applied either.
  auto refused = p.reload(*load(pipeline("max_in_flight = 200\ndeliver = \"immediate\"", "batch_max_messages = 10")));
  EXPECT_FALSE(refused.applied);
  ASSERT_EQ(refused.refusals.size(), 1u);
  EXPECT_TRUE(contains(refused.refusals[0], "pipeline.deliver changed (\"durable\" -> \"immediate\")"))
      << refused.refusals[0];
  EXPECT_TRUE(contains(refused.refusals[0], "restart"));
  EXPECT_EQ(p.spec().settings.max_in_flight, 100);

  auto listener =
      p.reload(*load("[pipeline]\nname = \"t\"\nmax_in_flight = 100\n[source.websocket]\nlisten = "
                     "\"127.0.0.1:1\"\n[fanout.memory]\n[sink.testsink]\npath = \"y\"\nbatch_max_messages = 10\n"));
  EXPECT_FALSE(listener.applied);
  ASSERT_EQ(listener.refusals.size(), 2u);
  EXPECT_TRUE(contains(listener.refusals[0], "source.websocket.listen changed")) << listener.refusals[0];
  EXPECT_TRUE(contains(listener.refusals[1], "sink.testsink.path changed")) << listener.refusals[1];

  // Applied: the runtime's own keys and a plugin's live key.
  auto applied = p.reload(
      *load(pipeline("max_in_flight = 300\nmax_in_flight_bytes = 1048576", "batch_max_messages = 50\nverbose = true")));
  EXPECT_TRUE(applied.applied) << (applied.refusals.empty() ? "" : applied.refusals[0]);
  EXPECT_EQ(applied.changes.size(), 4u);
  EXPECT_EQ(p.spec().settings.max_in_flight, 300);
  EXPECT_EQ(p.spec().settings.max_in_flight_bytes, 1048576);
  EXPECT_EQ(p.spec().sink_settings.batch_max_messages, 50);
  EXPECT_TRUE(p.spec().sink->config.get_bool("verbose"));

  // The plugin refuses a live value: nothing changes, and its reason is shown.
  auto plugin_refused = p.reload(*load(pipeline("max_in_flight = 400", "batch_max_messages = 50\nmode = \"safe\"")));
  EXPECT_FALSE(plugin_refused.applied);
  ASSERT_EQ(plugin_refused.refusals.size(), 1u);
  EXPECT_TRUE(contains(plugin_refused.refusals[0], "sink.testsink: mode \"safe\" cannot be taken live"));
  EXPECT_EQ(p.spec().sink->config.get_string("mode"), "fast");

  // Another stage list is a restart.
  auto stages =
      p.reload(*load("[pipeline]\nname = \"t\"\n[source.websocket]\nlisten = \"127.0.0.1:0\"\n"
                     "[sink.testsink]\npath = \"x\"\n"));
  EXPECT_FALSE(stages.applied);
  ASSERT_EQ(stages.refusals.size(), 1u);
  EXPECT_TRUE(contains(stages.refusals[0], "the stages changed")) << stages.refusals[0];
}

TEST_F(ReloadTest, ANewSinkBatchSizeReachesTheLogThatMakesTheBatches) {
  const std::string report = ::testing::TempDir() + "/reload-batch-" + std::to_string(::getpid()) + ".report";
  std::remove(report.c_str());
  auto text = [&](int batch) {
    return "[pipeline]\nname = \"t\"\n[log.scripted]\nreport = \"" + report + "\"\n[sink.testsink]\npath = \"x\"\n" +
           "batch_max_messages = " + std::to_string(batch) + "\n";
  };
  auto spec = load(text(100));
  ASSERT_TRUE(spec) << diags_.to_string();
  Pipeline p(io_, std::move(*spec), metrics_);
  ASSERT_TRUE(p.create());
  auto outcome = p.reload(*load(text(20)));
  ASSERT_TRUE(outcome.applied);
  std::ifstream in(report);
  std::stringstream lines;
  lines << in.rdbuf();
  EXPECT_EQ(lines.str(), "max_batch 20\n");
}

TEST_F(ReloadTest, ReadinessNamesTheStageThatIsNotReady) {
  auto spec = load(
      "[pipeline]\nname = \"t\"\n[source.websocket]\nlisten = \"127.0.0.1:0\"\n"
      "[sink.testsink]\npath = \"unready\"\n");
  ASSERT_TRUE(spec) << diags_.to_string();
  Pipeline p(io_, std::move(*spec), metrics_);
  ASSERT_TRUE(p.create());
  auto before = p.not_ready();
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].stage, "runtime");
  EXPECT_EQ(before[0].reason, "starting");
  ASSERT_TRUE(p.start().ok());
  auto after = p.not_ready();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].stage, "sink.testsink");
  EXPECT_EQ(after[0].reason, "told to be unready");
  EXPECT_TRUE(
      contains(metrics_.prometheus(), "nudge_stage_ready{stage=\"sink.testsink\",kind=\"sink\",plugin=\"testsink\"} 0"))
      << metrics_.prometheus();
  bool stopped = false;
  p.stop([&](bool) { stopped = true; });
  io_.run_for(std::chrono::seconds(5));
  EXPECT_TRUE(stopped);
}

TEST_F(LogOutputTest, ABacklogDrainingIsReportedWithRowsPerSecondLagAndEtaThenItsEnd) {
  const std::string file = ::testing::TempDir() + "/backlog-" + std::to_string(::getpid()) + ".toml";
  std::ofstream(file) << "[pipeline]\nname = \"drain\"\nprogress_interval_ms = 100\nbacklog_threshold = 100\n"
                      << "[log.scripted]\nreport = \"" << file << ".report\"\nbacklog = 3000\n"
                      << "batch_delay_ms = 50\nlinger_ms = 1100\n"
                      << "[sink.testsink]\npath = \"x\"\nbatch_max_messages = 100\n";
  ASSERT_EQ(run_cli({"run", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR}), 0);
  const auto written = lines();
  std::vector<std::string> progress;
  for (const auto& line : written)
    if (contains(line, "backlog")) progress.push_back(line);
  ASSERT_GE(progress.size(), 3u) << "start, at least one progress line, the end";
  EXPECT_TRUE(contains(progress.front(), "draining a backlog of 3000 messages from log.scripted into sink.testsink"))
      << progress.front();
  const auto& middle = progress[1];
  EXPECT_TRUE(contains(middle, "draining backlog: ")) << middle;
  EXPECT_TRUE(contains(middle, " rows/s, lag ")) << middle;
  EXPECT_TRUE(contains(middle, ", ETA ")) << middle;
  EXPECT_FALSE(contains(middle, "ETA unknown")) << middle;
  EXPECT_TRUE(contains(progress.back(), "backlog drained: 3000 messages written in ")) << progress.back();
}

class AdminServerTest : public ::testing::Test {
 protected:
  static constexpr const char* kToken = "s3cret-admin-token-0123456789";

  static AdminAccess with_token() {
    AdminAccess access;
    access.token = kToken;
    return access;
  }
  void start(AdminAccess access) {
    server_ = std::make_unique<AdminServer>(
        io_,
        AdminHandlers{[] { return std::string("nudge_up 1\n"); }, [this] { return problems_; },
                      [this](std::function<void(unsigned, std::string)> answer) {
                        ++reloads_;
                        answer(200, "reloaded: no changes\n");
                      }},
        std::move(access), metrics_);
    ASSERT_TRUE(server_->start("127.0.0.1:0").ok());
    loop_ = std::thread([this] { io_.run(); });
    std::string error;
    url_ = *parse_admin_url("http://127.0.0.1:" + std::to_string(server_->port()), error);
  }
  void TearDown() override {
    if (!loop_.joinable()) return;
    boost::asio::post(io_, [this] { server_->stop(); });
    work_.reset();
    io_.stop();
    loop_.join();
  }
  AdminResponse request(const std::string& method, const std::string& path, const AdminHeaders& headers = {}) {
    return admin_request(method, url_, path, std::chrono::seconds(5), {}, headers);
  }
  std::int64_t refused(const std::string& reason) {
    return metrics_.snapshot()["nudge_admin_refused{reason=\"" + reason + "\"}"];
  }
  boost::asio::ip::tcp::endpoint endpoint() const {
    return {boost::asio::ip::make_address("127.0.0.1"), server_->port()};
  }

  MetricsRegistry metrics_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ = boost::asio::make_work_guard(io_);
  std::unique_ptr<AdminServer> server_;
  std::thread loop_;
  AdminUrl url_;
  std::vector<std::string> problems_{"sink.postgres: no connection"};
  std::atomic<int> reloads_{0};
};

TEST_F(AdminServerTest, AnswersHealthReadinessMetricsAndReload) {
  start(with_token());
  auto health = request("GET", "/healthz");
  ASSERT_TRUE(health.answered()) << health.error;
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.body, "ok\n");
  auto ready = request("GET", "/readyz");
  ASSERT_TRUE(ready.answered()) << ready.error;
  EXPECT_EQ(ready.status, 503u);
  EXPECT_EQ(ready.body, "not ready\nsink.postgres: no connection\n");
  boost::asio::post(io_, [&] { problems_.clear(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(request("GET", "/readyz").status, 200u);
  EXPECT_EQ(request("GET", "/metrics").body, "nudge_up 1\n");
  auto reload = request("POST", "/reload", {{"Authorization", std::string("Bearer ") + kToken}});
  EXPECT_EQ(reload.status, 200u) << reload.body;
  EXPECT_EQ(reloads_, 1);
  EXPECT_EQ(request("GET", "/reload").status, 405u) << "a reload only by POST";
  EXPECT_EQ(request("GET", "/nope").status, 404u);

  boost::asio::post(io_, [&] { server_->stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto gone = admin_request("GET", url_, "/healthz", std::chrono::milliseconds(500));
  EXPECT_FALSE(gone.answered());
  EXPECT_EQ(gone.error, "connection refused");
}

TEST_F(AdminServerTest, ABrowsersRequestIsRefusedOnEveryEndpointAndReloadsNothing) {
  start(with_token());
  const std::string bearer = std::string("Bearer ") + kToken;
  // A page on another site POSTing to the endpoint: refused even with the right token, nothing reloaded.
  auto cross_site = request("POST", "/reload", {{"Origin", "https://evil.example"}, {"Authorization", bearer}});
  EXPECT_EQ(cross_site.status, 403u);
  EXPECT_TRUE(contains(cross_site.body, "does not answer browsers")) << cross_site.body;
  EXPECT_EQ(request("POST", "/reload", {{"Origin", "null"}}).status, 403u) << "a sandboxed page's Origin";
  EXPECT_EQ(request("POST", "/reload", {{"Sec-Fetch-Site", "cross-site"}, {"Authorization", bearer}}).status, 403u);
  EXPECT_EQ(request("GET", "/metrics", {{"Sec-Fetch-Mode", "no-cors"}}).status, 403u);
  EXPECT_EQ(request("GET", "/healthz", {{"sec-fetch-dest", "empty"}}).status, 403u) << "header names in any case";
  EXPECT_EQ(request("GET", "/readyz", {{"Origin", "http://127.0.0.1:9100"}}).status, 403u) << "its own origin too";
  EXPECT_EQ(reloads_, 0);
  EXPECT_EQ(refused("browser"), 6);
  EXPECT_EQ(request("GET", "/healthz").status, 200u) << "programs send none of these";
}

TEST_F(AdminServerTest, AHostHeaderNamingAnotherHostIsRefusedAgainstDnsRebinding) {
  AdminAccess access = with_token();
  access.allowed_hosts = {"Nudge-1.Internal"};
  start(access);
  const std::string bearer = std::string("Bearer ") + kToken;
  auto rebound = request("POST", "/reload", {{"Host", "evil.example:9100"}, {"Authorization", bearer}});
  EXPECT_EQ(rebound.status, 403u);
  EXPECT_TRUE(contains(rebound.body, "Host 'evil.example' is not this endpoint's")) << rebound.body;
  EXPECT_TRUE(contains(rebound.body, "allowed_hosts")) << rebound.body;
  EXPECT_EQ(request("GET", "/metrics", {{"Host", "evil.example"}}).status, 403u);
  EXPECT_EQ(request("GET", "/metrics", {{"Host", "localhost.evil.example"}}).status, 403u);
  EXPECT_EQ(reloads_, 0);
  EXPECT_EQ(refused("host"), 3);
  for (const char* host : {"127.0.0.1:1", "localhost:9100", "LOCALHOST", "[::1]:9100", "10.1.2.3",
                           "nudge-1.internal:9100", "NUDGE-1.internal.:9100"})
    EXPECT_EQ(request("GET", "/healthz", {{"Host", host}}).status, 200u) << host;
}

TEST_F(AdminServerTest, ReloadNeedsTheBearerToken) {
  start(with_token());
  auto none = request("POST", "/reload");
  EXPECT_EQ(none.status, 401u);
  EXPECT_TRUE(contains(none.body, "Authorization: Bearer")) << none.body;
  auto wrong = request("POST", "/reload", {{"Authorization", "Bearer s3cret-admin-token-0123456788"}});
  EXPECT_EQ(wrong.status, 401u);
  EXPECT_TRUE(contains(wrong.body, "does not match")) << wrong.body;
  EXPECT_EQ(request("POST", "/reload", {{"Authorization", std::string("Bearer ") + kToken + "x"}}).status, 401u);
  EXPECT_EQ(request("POST", "/reload", {{"Authorization", std::string("Basic ") + kToken}}).status, 401u);
  EXPECT_EQ(request("POST", "/reload", {{"Authorization", "Bearer "}}).status, 401u);
  EXPECT_EQ(reloads_, 0);
  EXPECT_EQ(refused("unauthorized"), 5);
  auto right = request("POST", "/reload", {{"Authorization", std::string("bearer ") + kToken}});
  EXPECT_EQ(right.status, 200u) << right.body;
  EXPECT_EQ(right.body, "reloaded: no changes\n");
  EXPECT_EQ(reloads_, 1);
  EXPECT_EQ(request("GET", "/metrics").status, 200u) << "reading needs no token";
}

TEST_F(AdminServerTest, WithoutATokenReloadIsTurnedOffAndTheAnswerSaysHowToTurnItOn) {
  start(AdminAccess{});
  auto refused_reload = request("POST", "/reload", {{"Authorization", "Bearer anything-at-all-0123456789"}});
  EXPECT_EQ(refused_reload.status, 403u);
  for (const char* hint : {"no admin token is configured", "[admin] token", "token_file", "SIGHUP"})
    EXPECT_TRUE(contains(refused_reload.body, hint)) << hint << " in " << refused_reload.body;
  EXPECT_EQ(reloads_, 0);
  EXPECT_EQ(refused("reload_disabled"), 1);
  EXPECT_EQ(request("GET", "/healthz").status, 200u);
}

/// Whether the server closed `socket` (non-blocking) within `limit`; what it sent meanwhile goes to `received`.
bool closed_within(boost::asio::ip::tcp::socket& socket, std::chrono::milliseconds limit,
                   std::string* received = nullptr) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    char bytes[512];
    boost::system::error_code ec;
    const std::size_t n = socket.read_some(boost::asio::buffer(bytes), ec);
    if (n > 0 && received) received->append(bytes, n);
    if (ec && ec != boost::asio::error::would_block) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    if (ec) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST_F(AdminServerTest, IdleHoldersOfEveryConnectionCannotKeepHealthzFromAnswering) {
  // The attack: max_connections sockets opened and never written to, each
  // reopened as soon as it is closed. Before, /healthz failed every time.
  start(with_token());
  constexpr std::size_t kHeld = 16;
  std::atomic<bool> done{false};
  std::atomic<int> reopened{0};
  std::thread holder([&] {
    boost::asio::io_context client;
    std::vector<boost::asio::ip::tcp::socket> held;
    auto open = [&](boost::asio::ip::tcp::socket& s) {
      boost::system::error_code ec;
      s.connect(endpoint(), ec);
      s.non_blocking(true, ec);
    };
    for (std::size_t i = 0; i < kHeld; ++i) open(held.emplace_back(client));
    while (!done) {
      for (auto& s : held)
        if (closed_within(s, std::chrono::milliseconds(0))) {
          s = boost::asio::ip::tcp::socket(client);
          open(s);
          ++reopened;
        }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all 16 accepted and waiting
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    const auto health = request("GET", "/healthz");
    EXPECT_EQ(health.status, 200u) << "probe " << i << ": " << health.error;
    answered += health.status == 200u;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  done = true;
  holder.join();
  EXPECT_EQ(answered, 20);
  EXPECT_EQ(refused("max_connections"), 0);
  EXPECT_GE(metrics_.snapshot()["nudge_admin_connections_evicted"], 20) << "each probe took an idle holder's place";
  EXPECT_GE(reopened.load(), 20);
  std::printf("[ figures  ] 20 of 20 /healthz answered 200 against %zu idle holders reopened %d times; %lld evicted\n",
              kHeld, reopened.load(), static_cast<long long>(metrics_.snapshot()["nudge_admin_connections_evicted"]));
}

TEST_F(AdminServerTest, TheConnectionIdleLongestGivesWayNotOneInTheMiddleOfARequest) {
  AdminAccess access = with_token();
  access.max_connections = 3;
  start(access);
  boost::asio::io_context client;
  boost::asio::ip::tcp::socket slow(client), idle_old(client), idle_new(client), idle_newer(client);
  boost::system::error_code ec;
  auto open_idle = [&](boost::asio::ip::tcp::socket& s) {
    s.connect(endpoint());
    s.non_blocking(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // accepted
  };
  slow.connect(endpoint());  // the oldest connection, but in the middle of a request
  boost::asio::write(slow, boost::asio::buffer(std::string("GET /healthz HTTP/1.1\r\n")), ec);
  slow.non_blocking(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  open_idle(idle_old);
  open_idle(idle_new);

  EXPECT_EQ(request("GET", "/healthz").status, 200u) << "a fourth connection takes an idle one's place";
  EXPECT_TRUE(closed_within(idle_old, std::chrono::milliseconds(500))) << "the one idle longest gives way";
  EXPECT_FALSE(closed_within(idle_new, std::chrono::milliseconds(0)));
  EXPECT_FALSE(closed_within(slow, std::chrono::milliseconds(0))) << "a request in progress was cut for a newcomer";
  open_idle(idle_newer);  // full again
  EXPECT_EQ(request("GET", "/healthz").status, 200u);
  EXPECT_TRUE(closed_within(idle_new, std::chrono::milliseconds(500))) << "now the one idle longest";
  EXPECT_FALSE(closed_within(idle_newer, std::chrono::milliseconds(0)));
  EXPECT_FALSE(closed_within(slow, std::chrono::milliseconds(0)));

  // The slow request, finished, is answered.
  slow.non_blocking(false);
  boost::asio::write(slow, boost::asio::buffer(std::string("Host: 127.0.0.1\r\n\r\n")), ec);
  slow.non_blocking(true);
  std::string answer;
  closed_within(slow, std::chrono::milliseconds(300), &answer);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200")) << answer;
  EXPECT_EQ(metrics_.snapshot()["nudge_admin_connections_evicted"], 2);
  EXPECT_EQ(refused("max_connections"), 0);
}

TEST_F(AdminServerTest, WithEveryConnectionInTheMiddleOfARequestANewOneIsClosedUntilOneIsSlowToArrive) {
  AdminAccess access = with_token();
  access.max_connections = 3;
  access.first_byte_timeout = std::chrono::milliseconds(400);
  start(access);
  boost::asio::io_context client;
  std::vector<boost::asio::ip::tcp::socket> trickling;
  boost::system::error_code ec;
  for (int i = 0; i < 3; ++i) {
    auto& s = trickling.emplace_back(client);
    s.connect(endpoint());
    boost::asio::write(s, boost::asio::buffer(std::string("GET /healthz HTTP/1.1\r\n")), ec);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto extra = request("GET", "/healthz");
  EXPECT_FALSE(extra.answered()) << "every connection is in a request begun 100 ms ago; got " << extra.status;
  EXPECT_EQ(refused("max_connections"), 1);
  // A program sends its request at once: one still arriving after first_byte_timeout gives way.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(request("GET", "/healthz").status, 200u);
  EXPECT_EQ(metrics_.snapshot()["nudge_admin_connections_evicted"], 1);
}

TEST_F(AdminServerTest, ANewConnectionThatSendsNothingIsClosedAfterTheFirstByteTimeoutButAKeptAliveOneWaits) {
  AdminAccess access = with_token();
  access.first_byte_timeout = std::chrono::milliseconds(300);
  start(access);
  boost::asio::io_context client;
  boost::asio::ip::tcp::socket silent(client), kept(client);
  silent.connect(endpoint());
  silent.non_blocking(true);
  const auto began = std::chrono::steady_clock::now();
  EXPECT_TRUE(closed_within(silent, std::chrono::seconds(3)));
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::milliseconds(1500));

  // After an answer, a keep-alive connection has the request timeout (30 s) for its next request.
  kept.connect(endpoint());
  const std::string get = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  boost::asio::write(kept, boost::asio::buffer(get));
  kept.non_blocking(true);
  std::string first;
  EXPECT_FALSE(closed_within(kept, std::chrono::milliseconds(700), &first)) << "closed while kept alive";
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200")) << first;
  kept.non_blocking(false);
  boost::asio::write(kept, boost::asio::buffer(get));
  kept.non_blocking(true);
  std::string second;
  closed_within(kept, std::chrono::milliseconds(300), &second);
  EXPECT_TRUE(second.starts_with("HTTP/1.1 200")) << second;
}

TEST_F(AdminServerTest, ASlowRequestIsCutOffAtTheRequestTimeoutAndAnOversizedOneRefused) {
  AdminAccess access = with_token();
  access.request_timeout = std::chrono::milliseconds(300);
  start(access);
  boost::asio::io_context client;
  boost::asio::ip::tcp::socket slow(client);
  slow.connect(endpoint());
  boost::system::error_code ec;
  const auto began = std::chrono::steady_clock::now();
  boost::asio::write(slow, boost::asio::buffer(std::string("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")), ec);
  slow.non_blocking(true);
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - began < std::chrono::seconds(3)) {
    // A header line every 50 ms: never idle, never done.
    boost::asio::write(slow, boost::asio::buffer(std::string("X-Slow: 1\r\n")), ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    char byte;
    slow.read_some(boost::asio::buffer(&byte, 1), ec);
    closed = ec && ec != boost::asio::error::would_block;
  }
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_TRUE(closed) << "a trickling request is still open after 3 s";
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::milliseconds(1500));

  auto big = request("GET", "/healthz", {{"X-Padding", std::string(9000, 'a')}});
  EXPECT_EQ(big.status, 431u) << big.error;
  EXPECT_EQ(request("GET", "/healthz").status, 200u);
}

TEST(AdminSecrets, EqualOnlyForTheSameBytes) {
  EXPECT_TRUE(secrets_equal("s3cret-admin-token", "s3cret-admin-token"));
  EXPECT_FALSE(secrets_equal("s3cret-admin-tokeN", "s3cret-admin-token"));
  EXPECT_FALSE(secrets_equal("s3cret-admin-toke", "s3cret-admin-token"));
  EXPECT_FALSE(secrets_equal("s3cret-admin-token!", "s3cret-admin-token"));
  EXPECT_FALSE(secrets_equal("", "s3cret-admin-token"));
  EXPECT_FALSE(secrets_equal(std::string_view("s3cret-admin-token\0", 19), "s3cret-admin-token"));
}

}  // namespace
}  // namespace nudge::runtime
