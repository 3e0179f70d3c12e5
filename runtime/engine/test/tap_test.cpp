#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include <rapidjson/document.h>

#include "engine/tap.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;

MessagePtr message(std::string room, std::string text = "hello", std::string sender = "alice") {
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = std::move(room);
  m->sender = std::move(sender);
  m->payload = std::move(text);
  m->timestamp_ms = 1;
  return m;
}

/// The lines of a take(), each parsed.
std::vector<rapidjson::Document> parse_lines(const std::string& taken) {
  std::vector<rapidjson::Document> out;
  std::size_t start = 0;
  while (start < taken.size()) {
    const auto end = taken.find('\n', start);
    EXPECT_NE(end, std::string::npos) << "every line ends with a newline";
    rapidjson::Document d;
    d.Parse(taken.data() + start, end - start);
    EXPECT_FALSE(d.HasParseError()) << taken.substr(start, end - start);
    out.push_back(std::move(d));
    start = end + 1;
  }
  return out;
}

std::string str(const rapidjson::Value& v, const char* key) {
  return v.HasMember(key) && v[key].IsString() ? v[key].GetString() : "";
}

class TapRegistryTest : public ::testing::Test {
 protected:
  MetricsRegistry metrics_;
  TapRegistry taps_{metrics_};
  int wakes_ = 0;

  std::shared_ptr<Tap> attach(TapFilter filter) {
    std::string refusal;
    auto tap = taps_.attach(
        std::move(filter), [this] { ++wakes_; }, refusal);
    EXPECT_TRUE(tap) << refusal;
    return tap;
  }
  std::int64_t metric(const std::string& key) { return metrics_.snapshot()[key]; }
};

TEST_F(TapRegistryTest, NothingAttachedIsInactiveAndAttachingAndDetachingTurnItOnAndOff) {
  EXPECT_FALSE(taps_.active());
  auto tap = attach({});
  EXPECT_TRUE(taps_.active());
  EXPECT_EQ(metric("nudge_admin_taps"), 1);
  taps_.detach(tap);
  EXPECT_FALSE(taps_.active());
  EXPECT_EQ(metric("nudge_admin_taps"), 0);
  // A detached tap is offered nothing more.
  taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  EXPECT_EQ(tap->events(), 0u);
}

TEST_F(TapRegistryTest, OnlyTheStagesAndRoomsAskedForAreQueuedWithEveryField) {
  TapFilter filter;
  filter.stages = (1u << unsigned(TapStage::source)) | (1u << unsigned(TapStage::sink));
  filter.rooms = {"r1"};
  auto tap = attach(filter);
  const auto in_r1 = message("r1", "hi \"there\"", "bob");
  const auto in_r2 = message("r2");
  for (const auto& m : {in_r1, in_r2}) {
    taps_.record(TapPoint::source_accepted, "source.websocket", *m);
    taps_.record(TapPoint::transform_passed, "transform.filter", *m);
    taps_.record(TapPoint::log_appended, "log.kafka", *m);
    taps_.record(TapPoint::fanout_published, "fanout.redis", *m);
    taps_.record(TapPoint::sink_written, "sink.postgres", *m);
  }
  const auto lines = parse_lines(tap->take(1 << 20));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(str(lines[0], "stage"), "source");
  EXPECT_EQ(str(lines[0], "point"), "accepted");
  EXPECT_EQ(str(lines[0], "at"), "source.websocket");
  EXPECT_EQ(str(lines[1], "stage"), "sink");
  EXPECT_EQ(str(lines[1], "point"), "written");
  for (const auto& line : lines) {
    EXPECT_EQ(str(line, "room"), "r1");
    EXPECT_EQ(str(line, "id"), in_r1->id.to_string());
    EXPECT_EQ(str(line, "sender"), "bob");
    EXPECT_EQ(str(line, "text"), "hi \"there\"");
    EXPECT_EQ(line["size"].GetUint64(), in_r1->payload.size());
    EXPECT_EQ(str(line, "time").size(), 24u) << "2026-12-06T14:40:49.123Z";
  }
  EXPECT_EQ(metric("nudge_admin_tap_events"), 2);
}

TEST_F(TapRegistryTest, ARejectionCarriesItsReason) {
  auto tap = attach({});
  taps_.record(TapPoint::transform_rejected, "transform.filter", *message("r1"), "too long");
  const auto lines = parse_lines(tap->take(1 << 20));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(str(lines[0], "point"), "rejected");
  EXPECT_EQ(str(lines[0], "reason"), "too long");
}

TEST_F(TapRegistryTest, SamplingChoosesByIdSoASampledMessageIsSeenAtEveryStage) {
  TapLimits limits;
  limits.events_per_second = 1000000;
  taps_.set_limits(limits);
  TapFilter filter;
  filter.sample = 0.1;
  auto tap = attach(filter);
  std::set<std::string> at_source, at_sink;
  constexpr int kMessages = 5000;
  for (int i = 0; i < kMessages; ++i) {
    const auto m = message("r1");
    taps_.record(TapPoint::source_accepted, "source.websocket", *m);
    taps_.record(TapPoint::sink_written, "sink.sqlite", *m);
    // Drained as it goes: neither the queue nor the rate is the bound here.
    if (i % 50 == 0) {
      for (const auto& line : parse_lines(tap->take(1 << 20)))
        (str(line, "stage") == "source" ? at_source : at_sink).insert(str(line, "id"));
    }
  }
  for (const auto& line : parse_lines(tap->take(1 << 20)))
    (str(line, "stage") == "source" ? at_source : at_sink).insert(str(line, "id"));
  EXPECT_EQ(tap->missed(), 0u);
  // 10% of 5000 = 500; the binomial's standard deviation is about 21.
  EXPECT_GT(at_source.size(), 400u);
  EXPECT_LT(at_source.size(), 600u);
  EXPECT_EQ(at_source, at_sink);
}

TEST_F(TapRegistryTest, AFullQueueMissesEventsCountsThemAndTellsTheTapperWhereTheGapIs) {
  TapLimits limits;
  limits.queue_bytes = 4096;
  limits.events_per_second = 1000000;
  taps_.set_limits(limits);
  auto tap = attach({});
  const std::string text(200, 'x');
  constexpr int kEvents = 100;
  for (int i = 0; i < kEvents; ++i) taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1", text));
  EXPECT_LE(tap->queued_bytes(), 4096u);
  EXPECT_GT(tap->events(), 0u);
  EXPECT_GT(tap->missed_queue_full(), 0u);
  EXPECT_EQ(tap->events() + tap->missed_queue_full(), static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(metric("nudge_admin_tap_missed{reason=\"queue_full\"}"),
            static_cast<std::int64_t>(tap->missed_queue_full()));

  auto lines = parse_lines(tap->take(1 << 20));
  ASSERT_EQ(lines.size(), tap->events() + 1);
  EXPECT_EQ(str(lines[0], "notice"), "missed");
  EXPECT_EQ(lines[0]["missed"].GetUint64(), tap->missed_queue_full());
  EXPECT_EQ(lines[0]["queue_full"].GetUint64(), tap->missed_queue_full());
  EXPECT_EQ(tap->queued_bytes(), 0u);
  // Drained, it takes events again; the notice is not repeated without a new miss.
  taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1", text));
  lines = parse_lines(tap->take(1 << 20));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(str(lines[0], "stage"), "source");
}

TEST_F(TapRegistryTest, EventsPastTheRateAreMissedAndTheBucketRefillsWithTime) {
  TapLimits limits;
  limits.events_per_second = 10;
  Tap tap({}, limits, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  int admitted = 0;
  for (int i = 0; i < 50; ++i) admitted += tap.admit(t0) == Tap::Admit::yes;
  EXPECT_EQ(admitted, 10);
  EXPECT_EQ(tap.missed_over_rate(), 40u);
  // Half a second later, half the bucket is back.
  admitted = 0;
  for (int i = 0; i < 50; ++i) admitted += tap.admit(t0 + std::chrono::milliseconds(500)) == Tap::Admit::yes;
  EXPECT_EQ(admitted, 5);

  // Through the registry: counted in the metric too.
  taps_.set_limits(limits);
  auto registered = attach({});
  for (int i = 0; i < 50; ++i) taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  EXPECT_LE(registered->events(), 11u);  // the bucket may refill by one while the loop runs
  EXPECT_GE(registered->missed_over_rate(), 39u);
  EXPECT_EQ(metric("nudge_admin_tap_missed{reason=\"over_rate\"}"),
            static_cast<std::int64_t>(registered->missed_over_rate()));
}

TEST_F(TapRegistryTest, TapsPastMaxTapsAreRefusedUntilOneDetaches) {
  TapLimits limits;
  limits.max_taps = 2;
  taps_.set_limits(limits);
  auto first = attach({});
  auto second = attach({});
  std::string refusal;
  EXPECT_FALSE(taps_.attach({}, nullptr, refusal));
  EXPECT_THAT(refusal, HasSubstr("2 taps are attached already (admin.max_taps = 2)"));
  taps_.detach(first);
  EXPECT_TRUE(taps_.attach({}, nullptr, refusal));

  limits.max_taps = 0;
  taps_.set_limits(limits);
  EXPECT_FALSE(taps_.attach({}, nullptr, refusal));
  EXPECT_THAT(refusal, HasSubstr("turned off"));
}

TEST_F(TapRegistryTest, ALimitEndsTheTapOnceItsEventsAreTaken) {
  TapFilter filter;
  filter.limit = 3;
  auto tap = attach(filter);
  for (int i = 0; i < 5; ++i) taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  EXPECT_EQ(tap->events(), 3u);
  EXPECT_EQ(tap->missed(), 0u) << "events past the limit are not missed: the tap has ended";
  EXPECT_FALSE(tap->finished());
  EXPECT_EQ(parse_lines(tap->take(1 << 20)).size(), 3u);
  EXPECT_TRUE(tap->finished());
}

TEST_F(TapRegistryTest, TheTapperIsWokenOnceUntilItTakes) {
  auto tap = attach({});
  for (int i = 0; i < 10; ++i) taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  EXPECT_EQ(wakes_, 1);
  tap->take(1 << 20);
  taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  EXPECT_EQ(wakes_, 2);
}

TEST_F(TapRegistryTest, ATakeIsBoundedInBytesButAlwaysMovesOneLine) {
  auto tap = attach({});
  for (int i = 0; i < 10; ++i) taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  const auto first = tap->take(1);
  EXPECT_EQ(parse_lines(first).size(), 1u);
  const auto rest = tap->take(first.size() * 3);
  EXPECT_EQ(parse_lines(rest).size(), 3u);
}

TEST(TapEventJson, TextIsCutAtACharacterBoundaryAndInvalidUtf8AndControlsAreEscaped) {
  Message m;
  m.room = "r\x01";
  m.sender = "bad\xff";
  m.payload =
      "ab\xc3\xa9"
      "cd";  // "abécd": é is two bytes
  const auto line =
      tap_event_json(TapPoint::source_accepted, "source.websocket", m, {}, 3, std::chrono::system_clock::time_point{});
  ASSERT_TRUE(line.ends_with("}\n"));
  rapidjson::Document d;
  d.Parse(line.data(), line.size() - 1);
  ASSERT_FALSE(d.HasParseError()) << line;
  EXPECT_EQ(str(d, "text"), "ab") << "é does not fit in 3 bytes whole";
  EXPECT_TRUE(d["truncated"].GetBool());
  EXPECT_EQ(d["size"].GetUint64(), 6u);
  EXPECT_EQ(str(d, "room"), "r\x01");
  EXPECT_EQ(str(d, "sender"), "bad\xef\xbf\xbd");
  EXPECT_EQ(str(d, "time"), "1970-01-01T00:00:00.000Z");
  EXPECT_THAT(line, HasSubstr("\"room\":\"r\\u0001\""));

  const auto whole = tap_event_json(TapPoint::source_accepted, "s", m, {}, 0, {});
  EXPECT_THAT(whole, HasSubstr("\"text\":\"ab\xc3\xa9"
                               "cd\""));
  EXPECT_THAT(whole, ::testing::Not(HasSubstr("truncated")));
}

TEST(TapQuery, ParsesStagesRoomsSampleLimitAndMaxTextAndRefusesTheRest) {
  std::string error;
  auto filter = parse_tap_query("/tap?stage=source,sink&room=r1&room=a%20b,c&sample=0.25&limit=10&max_text=0", error);
  ASSERT_TRUE(filter) << error;
  EXPECT_TRUE(filter->watches(TapStage::source));
  EXPECT_TRUE(filter->watches(TapStage::sink));
  EXPECT_FALSE(filter->watches(TapStage::log));
  EXPECT_EQ(filter->rooms, (std::vector<std::string>{"r1", "a b", "c"}));
  EXPECT_DOUBLE_EQ(filter->sample, 0.25);
  EXPECT_EQ(filter->limit, 10u);
  EXPECT_EQ(filter->max_text, 0u);
  EXPECT_EQ(describe(*filter), "stages source,sink; rooms r1,a b,c; sample 0.25; limit 10");

  filter = parse_tap_query("/tap", error);
  ASSERT_TRUE(filter);
  EXPECT_TRUE(filter->watches(TapStage::fanout));
  EXPECT_EQ(filter->max_text, 1024u);

  EXPECT_FALSE(parse_tap_query("/tap?stage=sauce", error));
  EXPECT_THAT(error, HasSubstr("stage: 'sauce' is not one of source, transform, log, fanout, sink"));
  EXPECT_FALSE(parse_tap_query("/tap?sample=0", error));
  EXPECT_THAT(error, HasSubstr("sample: must be a number in (0, 1], got '0'"));
  EXPECT_FALSE(parse_tap_query("/tap?sample=1.5", error));
  EXPECT_FALSE(parse_tap_query("/tap?limit=-1", error));
  EXPECT_THAT(error, HasSubstr("limit:"));
  EXPECT_FALSE(parse_tap_query("/tap?rooms=r1", error));
  EXPECT_THAT(error, HasSubstr("unknown parameter 'rooms'"));
}

TEST_F(TapRegistryTest, AnEventIsSerialisedOnceForEveryTapperAskingTheSameTextSize) {
  auto a = attach({});
  auto b = attach({});
  taps_.record(TapPoint::source_accepted, "source.websocket", *message("r1"));
  EXPECT_EQ(taps_.serialised(), 1u);
  EXPECT_EQ(a->take(1 << 20), b->take(1 << 20));
}

}  // namespace
}  // namespace nudge::runtime
