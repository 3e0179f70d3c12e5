// `nudge top`: the Prometheus text parser, rates, quantiles, the rendered
// frame, and what it shows when the endpoint cannot be reached.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cmath>
#include <limits>

#include "cli/top/prometheus_text.hpp"
#include "cli/top/top.hpp"

namespace nudge::runtime {
namespace {

using namespace std::chrono_literals;

TEST(PrometheusText, ReadsSamplesLabelsAndSkipsComments) {
  const auto text = parse_prometheus_text(
      "# HELP nudge_stage_messages_in_total Messages the stage received\n"
      "# TYPE nudge_stage_messages_in_total counter\n"
      "\n"
      "nudge_stage_messages_in_total{pipeline=\"chat\",instance=\"a1\",stage=\"source.websocket\",kind=\"source\"} 42\n"
      "nudge_process_start_time_seconds 1.7e9\n"
      "   # an indented comment\n"
      "nudge_build_info{version=\"1.2.0\",abi=\"5\",} 1 1700000000000\r\n");
  EXPECT_TRUE(text.errors.empty());
  ASSERT_EQ(text.samples.size(), 3u);
  const auto& in = text.samples[0];
  EXPECT_EQ(in.name, "nudge_stage_messages_in_total");
  ASSERT_EQ(in.labels.size(), 4u);
  EXPECT_EQ(in.labels[2].first, "stage");
  EXPECT_EQ(*in.label("kind"), "source");
  EXPECT_EQ(in.label("missing"), nullptr);
  EXPECT_EQ(in.value, 42);
  EXPECT_TRUE(text.samples[1].labels.empty());
  EXPECT_DOUBLE_EQ(text.samples[1].value, 1.7e9);
  EXPECT_EQ(*text.samples[2].label("abi"), "5") << "a trailing comma and a timestamp are allowed";
  EXPECT_EQ(text.samples[2].value, 1);
}

TEST(PrometheusText, UnescapesLabelValues) {
  const auto text =
      parse_prometheus_text(R"(m{path="C:\\dir\\file",quote="say \"hi\"",lines="a\nb",brace="}{,=",odd="\x"} 1)"
                            "\n");
  ASSERT_TRUE(text.errors.empty()) << text.errors.front();
  ASSERT_EQ(text.samples.size(), 1u);
  const auto& s = text.samples[0];
  EXPECT_EQ(*s.label("path"), "C:\\dir\\file");
  EXPECT_EQ(*s.label("quote"), "say \"hi\"");
  EXPECT_EQ(*s.label("lines"), "a\nb");
  EXPECT_EQ(*s.label("brace"), "}{,=");
  EXPECT_EQ(*s.label("odd"), "\\x") << "an undefined escape is kept as written";
}

TEST(PrometheusText, ReadsHistogramsAndSpecialValues) {
  const auto text = parse_prometheus_text(
      "# TYPE nudge_ingest_to_ack_seconds histogram\n"
      "nudge_ingest_to_ack_seconds_bucket{le=\"0.001\"} 3\n"
      "nudge_ingest_to_ack_seconds_bucket{le=\"0.5\"} 7\n"
      "nudge_ingest_to_ack_seconds_bucket{le=\"+Inf\"} 9\n"
      "nudge_ingest_to_ack_seconds_sum 1.25\n"
      "nudge_ingest_to_ack_seconds_count 9\n"
      "g{a=\"1\"} -Inf\n"
      "g{a=\"2\"} NaN\n"
      "g{a=\"3\"} +Inf\n"
      "g{a=\"4\"} -3.5e-2\n");
  ASSERT_TRUE(text.errors.empty());
  ASSERT_EQ(text.samples.size(), 9u);
  EXPECT_EQ(*text.samples[2].label("le"), "+Inf");
  EXPECT_TRUE(std::isinf(*parse_prometheus_value(*text.samples[2].label("le"))));
  EXPECT_EQ(text.samples[3].name, "nudge_ingest_to_ack_seconds_sum");
  EXPECT_DOUBLE_EQ(text.samples[3].value, 1.25);
  EXPECT_TRUE(std::isinf(text.samples[5].value) && text.samples[5].value < 0);
  EXPECT_TRUE(std::isnan(text.samples[6].value));
  EXPECT_TRUE(std::isinf(text.samples[7].value) && text.samples[7].value > 0);
  EXPECT_DOUBLE_EQ(text.samples[8].value, -0.035);
}

TEST(PrometheusText, ReportsBadLinesAndReadsTheRest) {
  const auto text = parse_prometheus_text(
      "good 1\n"
      "9bad 1\n"
      "unterminated{a=\"x} 1\n"
      "novalue{a=\"x\"}\n"
      "notanumber 12abc\n"
      "also_good{a=\"b\"} 2\n");
  ASSERT_EQ(text.samples.size(), 2u);
  EXPECT_EQ(text.samples[1].name, "also_good");
  ASSERT_EQ(text.errors.size(), 4u);
  EXPECT_EQ(text.errors[0].rfind("line 2:", 0), 0u) << text.errors[0];
  EXPECT_NE(text.errors[3].find("12abc"), std::string::npos) << text.errors[3];
}

// ---------------------------------------------------------------- rates and quantiles

TEST(TopRates, CounterRateOverTheInterval) {
  EXPECT_DOUBLE_EQ(*top::counter_rate(100, 350, 0.5), 500);
  EXPECT_DOUBLE_EQ(*top::counter_rate(100, 100, 1), 0);
  EXPECT_DOUBLE_EQ(*top::counter_rate(1000, 30, 1), 30) << "a counter that went down restarted from 0";
  EXPECT_FALSE(top::counter_rate(1, 2, 0));
}

TEST(TopQuantiles, InterpolatesWithinTheBucketLikePrometheus) {
  // 100 observations: 50 at or below 0.01, 40 more up to 0.1, 10 more up to 1.
  const std::vector<std::pair<double, double>> buckets = {
      {0.01, 50}, {0.1, 90}, {1, 100}, {std::numeric_limits<double>::infinity(), 100}};
  EXPECT_DOUBLE_EQ(*top::histogram_quantile(0.5, buckets), 0.01);
  EXPECT_NEAR(*top::histogram_quantile(0.7, buckets), 0.01 + 0.09 * 0.5, 1e-12);
  EXPECT_NEAR(*top::histogram_quantile(0.99, buckets), 0.1 + 0.9 * 0.9, 1e-12);
  EXPECT_NEAR(*top::histogram_quantile(0.25, buckets), 0.005, 1e-12) << "from 0 in the first bucket";
}

TEST(TopQuantiles, EmptyAndOverflowingHistograms) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(top::histogram_quantile(0.5, {{0.1, 0}, {inf, 0}})) << "no observations";
  EXPECT_FALSE(top::histogram_quantile(0.5, {})) << "no buckets";
  EXPECT_FALSE(top::histogram_quantile(0.5, {{0.1, 4}})) << "no +Inf bucket";
  EXPECT_DOUBLE_EQ(*top::histogram_quantile(0.99, {{0.1, 1}, {0.5, 2}, {inf, 10}}), 0.5)
      << "a rank in the +Inf bucket gives the highest finite bound";
  EXPECT_DOUBLE_EQ(*top::histogram_quantile(0.5, {{inf, 3}, {0.5, 3}, {0.1, 1}}), 0.1 + 0.4 * 0.25)
      << "buckets in any order";
}

TEST(TopFormat, HumanNumbers) {
  EXPECT_EQ(top::human_number(0), "0");
  EXPECT_EQ(top::human_number(7), "7");
  EXPECT_EQ(top::human_number(0.26), "0.3");
  EXPECT_EQ(top::human_number(1000), "1.00k");
  EXPECT_EQ(top::human_number(312.4), "312");
  EXPECT_EQ(top::human_number(999), "999");
  EXPECT_EQ(top::human_number(1234), "1.23k");
  EXPECT_EQ(top::human_number(12345), "12.3k");
  EXPECT_EQ(top::human_number(123456), "123k");
  EXPECT_EQ(top::human_number(999999), "1.00M");
  EXPECT_EQ(top::human_number(4.56e6), "4.56M");
  EXPECT_EQ(top::human_number(7.1e9), "7.10G");
  EXPECT_EQ(top::human_seconds(0.0005), "500us");
  EXPECT_EQ(top::human_seconds(0.0032), "3.2ms");
  EXPECT_EQ(top::human_seconds(0.12), "120ms");
  EXPECT_EQ(top::human_seconds(1.5), "1.50s");
  EXPECT_EQ(top::human_duration(42), "42s");
  EXPECT_EQ(top::human_duration(307), "5m07s");
  EXPECT_EQ(top::human_duration(3 * 3600 + 12 * 60 + 5), "3h12m");
  EXPECT_EQ(top::human_duration(2 * 86400 + 4 * 3600), "2d04h");
}

// ---------------------------------------------------------------- the view

/// What the admin endpoint of a chat instance exposes, with the counters at
/// `n` times their base values and `acks` observations in the latency histogram.
std::string exposition(double n, double acks) {
  auto stage = [](const char* stage, const char* kind) {
    return std::string("pipeline=\"chat\",instance=\"i-1\",stage=\"") + stage + "\",kind=\"" + kind + "\",plugin=\"x\"";
  };
  std::string out;
  auto line = [&](const std::string& name, const std::string& labels, double value) {
    char v[64];
    std::snprintf(v, sizeof v, "%.17g", value);
    out += name + "{" + labels + "} " + v + "\n";
  };
  // Deliberately not in pipeline order.
  const std::pair<const char*, const char*> stages[] = {{"sink.postgres", "sink"},
                                                        {"log.kafka", "log"},
                                                        {"fanout.redis", "fanout"},
                                                        {"transform.filter", "transform"},
                                                        {"source.websocket", "source"}};
  for (const auto& [name, kind] : stages) {
    line("nudge_stage_messages_in_total", stage(name, kind), 1000 * n);
    line("nudge_stage_messages_out_total", stage(name, kind), 900 * n);
    line("nudge_stage_errors_total", stage(name, kind), std::string_view(kind) == "sink" ? 2 * n : 0);
    line("nudge_stage_retries_total", stage(name, kind), std::string_view(kind) == "sink" ? 3 * n : 0);
    line("nudge_stage_queue_depth", stage(name, kind), std::string_view(kind) == "sink" ? 17 : 0);
    line("nudge_stage_ready", stage(name, kind), std::string_view(kind) == "sink" ? 0 : 1);
  }
  line("nudge_source_websocket_connections_open", "pipeline=\"chat\",instance=\"i-1\",stage=\"source.websocket\"", 21);
  line("nudge_source_websocket_rooms", "pipeline=\"chat\",instance=\"i-1\",stage=\"source.websocket\"", 3);
  line("nudge_log_consumer_lag", "pipeline=\"chat\",instance=\"i-1\",stage=\"log.kafka\"", 14);
  for (int p = 0; p < 3; ++p)
    line("nudge_log_kafka_partition_lag",
         "pipeline=\"chat\",instance=\"i-1\",stage=\"log.kafka\",topic=\"t\",partition=\"" + std::to_string(2 - p) +
             "\"",
         p == 0   ? 12
         : p == 1 ? 2
                  : 0);
  line("nudge_process_start_time_seconds", "pipeline=\"chat\",instance=\"i-1\"", 1'000'000);
  // All of `acks` between 2.5 and 5 ms.
  const std::pair<const char*, double> buckets[] = {{"0.001", 0}, {"0.0025", 0}, {"0.005", acks}, {"+Inf", acks}};
  for (const auto& [le, count] : buckets)
    line("nudge_ingest_to_ack_seconds_bucket", std::string("pipeline=\"chat\",instance=\"i-1\",le=\"") + le + "\"",
         count);
  for (const auto& [le, count] : buckets)
    line("nudge_ingest_to_persisted_seconds_bucket",
         std::string("pipeline=\"chat\",instance=\"i-1\",le=\"") + le + "\"", 0 * count);
  return out;
}

top::Snapshot snapshot(const std::string& text, std::chrono::steady_clock::time_point at, double wall) {
  top::Snapshot s;
  s.samples = parse_prometheus_text(text).samples;
  s.taken = at;
  s.wall_seconds = wall;
  return s;
}

TEST(TopView, StagesInPipelineOrderWithRatesFromTwoSnapshots) {
  const auto t0 = std::chrono::steady_clock::time_point(100s);
  const auto before = snapshot(exposition(1, 100), t0, 1'000'300);
  const auto now = snapshot(exposition(3, 500), t0 + 2s, 1'000'302);
  const auto view = top::build_view(now, &before);
  EXPECT_EQ(view.pipeline, "chat");
  EXPECT_EQ(view.instance, "i-1");
  ASSERT_TRUE(view.uptime_seconds);
  EXPECT_DOUBLE_EQ(*view.uptime_seconds, 302);
  ASSERT_EQ(view.stages.size(), 5u);
  const char* order[] = {"source.websocket", "transform.filter", "fanout.redis", "log.kafka", "sink.postgres"};
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(view.stages[i].stage, order[i]);
  const auto& sink = view.stages[4];
  EXPECT_DOUBLE_EQ(*sink.in_rate, 1000);  // (3000 - 1000) / 2 s
  EXPECT_DOUBLE_EQ(*sink.out_rate, 900);
  EXPECT_DOUBLE_EQ(*sink.error_rate, 2);
  EXPECT_DOUBLE_EQ(*sink.retry_rate, 3);
  EXPECT_DOUBLE_EQ(sink.queue, 17);
  EXPECT_DOUBLE_EQ(sink.in_total, 3000);
  EXPECT_EQ(view.not_ready, std::vector<std::string>{"sink.postgres"});
  EXPECT_EQ(view.connections, 21);
  EXPECT_EQ(view.rooms, 3);
  EXPECT_EQ(view.consumer_lag, 14);
  ASSERT_EQ(view.partition_lags.size(), 3u);
  EXPECT_EQ(view.partition_lags[0], (std::pair<std::string, double>("p0", 0)));
  EXPECT_EQ(view.partition_lags[2], (std::pair<std::string, double>("p2", 12)));
  // 400 acks in the interval, all in (2.5 ms, 5 ms].
  ASSERT_TRUE(view.ingest_to_ack.p50 && view.ingest_to_ack.p99);
  EXPECT_NEAR(*view.ingest_to_ack.p50, 0.0025 + 0.0025 * 0.5, 1e-12);
  EXPECT_NEAR(*view.ingest_to_ack.p99, 0.0025 + 0.0025 * 0.99, 1e-12);
  EXPECT_FALSE(view.ingest_to_persisted.p50) << "no observations: no quantile";
}

TEST(TopView, FirstSnapshotOrAnotherInstanceHasNoRates) {
  const auto t0 = std::chrono::steady_clock::time_point(100s);
  const auto first = top::build_view(snapshot(exposition(1, 10), t0, 0), nullptr);
  EXPECT_FALSE(first.has_rates);
  EXPECT_FALSE(first.stages[0].in_rate);
  EXPECT_DOUBLE_EQ(first.stages[0].in_total, 1000);
  EXPECT_FALSE(first.ingest_to_ack.p50);

  auto other = exposition(1, 10);
  for (auto at = other.find("i-1"); at != std::string::npos; at = other.find("i-1")) other.replace(at, 3, "i-2");
  const auto other_instance = snapshot(other, t0, 0);
  const auto restarted = top::build_view(snapshot(exposition(2, 20), t0 + 1s, 0), &other_instance);
  EXPECT_FALSE(restarted.has_rates) << "a new instance id: the old counters mean nothing";
}

TEST(TopRender, FrameShowsEveryStageWithItsRates) {
  const auto t0 = std::chrono::steady_clock::time_point(100s);
  const auto before = snapshot(exposition(1, 100), t0, 1'000'300);
  const auto now = snapshot(exposition(3, 500), t0 + 2s, 1'000'302);
  const auto view = top::build_view(now, &before);
  top::FrameInfo info;
  info.url = "http://127.0.0.1:9100";
  const auto frame = top::render(&view, info);
  SCOPED_TRACE(frame);
  EXPECT_NE(frame.find("pipeline chat   instance i-1   uptime 5m02s   NOT READY: sink.postgres"), std::string::npos);
  EXPECT_NE(frame.find("STAGE"), std::string::npos);
  for (const char* header : {"IN/s", "OUT/s", "ERR/s", "RETRY/s", "QUEUE"})
    EXPECT_NE(frame.find(header), std::string::npos) << header;
  // Each stage row: name, in/s, out/s, err/s, retry/s, queue, in, out.
  EXPECT_NE(frame.find("\nsource.websocket     1.00k     900       0        0       0    3.00k    2.70k\n"),
            std::string::npos);
  EXPECT_NE(frame.find("\ntransform.filter     1.00k     900       0        0       0"), std::string::npos);
  EXPECT_NE(frame.find("\nfanout.redis         1.00k     900       0        0       0"), std::string::npos);
  EXPECT_NE(frame.find("\nlog.kafka            1.00k     900       0        0       0"), std::string::npos);
  EXPECT_NE(frame.find("\nsink.postgres        1.00k     900       2        3      17    3.00k    2.70k\n"),
            std::string::npos);
  EXPECT_LT(frame.find("\nsource.websocket"), frame.find("\ntransform.filter"));
  EXPECT_LT(frame.find("\nlog.kafka"), frame.find("\nsink.postgres"));
  EXPECT_NE(frame.find("connections 21   rooms 3   consumer lag 14 (p0=0 p1=2 p2=12)"), std::string::npos);
  EXPECT_NE(frame.find("ingest→ack p50 3.8ms  p99 5.0ms   ingest→persisted -"), std::string::npos);
  EXPECT_EQ(frame.find("cannot reach"), std::string::npos);
  EXPECT_EQ(frame.find('\x1b'), std::string::npos) << "no terminal codes in a frame";
}

TEST(TopRender, FirstFrameShowsTotalsAndDashes) {
  const auto view = top::build_view(snapshot(exposition(1, 10), std::chrono::steady_clock::time_point(1s), 0), nullptr);
  top::FrameInfo info;
  info.url = "http://127.0.0.1:9100";
  const auto frame = top::render(&view, info);
  EXPECT_NE(frame.find("\nsource.websocket         -       -       -        -       0    1.00k      900\n"),
            std::string::npos)
      << frame;
  EXPECT_NE(frame.find("(rates from the next frame on)"), std::string::npos) << frame;
}

TEST(TopRender, LongPartitionListsAreCutToTheWidth) {
  std::string text = "nudge_log_consumer_lag{stage=\"log.kafka\"} 64\n";
  for (int p = 0; p < 64; ++p)
    text += "nudge_log_kafka_partition_lag{stage=\"log.kafka\",partition=\"" + std::to_string(p) + "\"} 1\n";
  const auto view = top::build_view(snapshot(text, std::chrono::steady_clock::time_point(1s), 0), nullptr);
  top::FrameInfo info;
  info.url = "http://x:1";
  info.width = 80;
  const auto frame = top::render(&view, info);
  const auto at = frame.find("consumer lag 64 (p0=1 p1=1");
  ASSERT_NE(at, std::string::npos) << frame;
  const auto line = frame.substr(frame.rfind('\n', at) + 1, frame.find('\n', at) - frame.rfind('\n', at) - 1);
  EXPECT_LE(line.size(), 80u) << line;
  EXPECT_NE(line.find(" more)"), std::string::npos) << line;
}

// ---------------------------------------------------------------- the endpoint

TEST(AdminUrl, ParsesAdminUrls) {
  std::string error;
  auto url = parse_admin_url("http://127.0.0.1:9100", error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, "9100");
  EXPECT_EQ(url->prefix, "");
  EXPECT_EQ(url->base, "http://127.0.0.1:9100");
  url = parse_admin_url("http://[::1]:9200/metrics", error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->base, "http://[::1]:9200");
  EXPECT_EQ(url->prefix, "");
  url = parse_admin_url("localhost:9100/", error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->base, "http://localhost:9100");
  EXPECT_FALSE(parse_admin_url("https://x:1", error));
  EXPECT_NE(error.find("https"), std::string::npos);
  EXPECT_FALSE(parse_admin_url("http://x:99999", error));
  EXPECT_FALSE(parse_admin_url("ftp://x:1", error));
}

TEST(TopEndpoint, UnreachableUrlSaysSoAndRetries) {
  // A port that was just free: nothing listens there.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  acceptor.close();
  std::string error;
  const auto url = parse_admin_url("http://127.0.0.1:" + std::to_string(port), error);
  ASSERT_TRUE(url) << error;
  const auto fetched = top::fetch(*url, 2s);
  EXPECT_TRUE(fetched.body.empty());
  EXPECT_EQ(fetched.error, "connection refused");

  top::FrameInfo info;
  info.url = url->base;
  info.error = fetched.error;
  const auto frame = top::render(nullptr, info);
  EXPECT_NE(frame.find("cannot reach " + url->base + ": connection refused — retrying"), std::string::npos) << frame;
  EXPECT_EQ(frame.find("STAGE"), std::string::npos) << "no table without data";
}

TEST(TopEndpoint, ASilentPeerTimesOut) {
  // Listening but never answering: the request is sent, the answer never comes.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  std::string error;
  const auto url = parse_admin_url("http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()), error);
  const auto started = std::chrono::steady_clock::now();
  const auto fetched = top::fetch(*url, 300ms);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(fetched.error, "timed out after 0.3 s");
  EXPECT_LT(took, 2s);
}

}  // namespace
}  // namespace nudge::runtime
