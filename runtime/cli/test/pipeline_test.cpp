// A whole pipeline run in-process with scripted plugins (scripted_plugins.cpp)
// and the real memory fanout: what the runtime promises about acks and
// deliveries, checked from the order of the events both plugins report.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "engine/in_flight_window.hpp"

namespace nudge::runtime {
namespace {

struct Events {
  // Position of each event in the report, per message id.
  std::map<std::string, std::map<std::string, std::vector<std::size_t>>> by_id;
  std::map<std::string, std::string> error_codes;
};

Events read_report(const std::string& path) {
  Events events;
  std::ifstream in(path);
  std::string line;
  for (std::size_t n = 0; std::getline(in, line); ++n) {
    std::istringstream words(line);
    std::string what, id, code;
    words >> what >> id >> code;
    events.by_id[id][what].push_back(n);
    if (what == "error") events.error_codes[id] = code;
  }
  return events;
}

std::size_t count(const Events& events, const std::string& id, const std::string& what) {
  auto it = events.by_id.at(id).find(what);
  return it == events.by_id.at(id).end() ? 0 : it->second.size();
}

std::size_t first(const Events& events, const std::string& id, const std::string& what) {
  return events.by_id.at(id).at(what).front();
}

class PipelineTest : public ::testing::Test {
 protected:
  int run(const std::string& deliver, int messages, int fail_every, int confirm_delay_ms = 1,
          const std::string& transform = "", const std::string& pipeline_keys = "",
          const std::string& source_keys = "") {
    // Named after the test: ctest runs tests in parallel processes.
    const std::string stem = ::testing::TempDir() + "/pipeline-" +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
                             std::to_string(::getpid());
    report_ = stem + ".report";
    std::remove(report_.c_str());
    const std::string file = stem + ".toml";
    std::ofstream(file) << "[pipeline]\nname = \"scripted\"\ndeliver = \"" << deliver << "\"\n"
                        << "max_in_flight = 64\n"
                        << pipeline_keys << "[source.scripted]\nreport = \"" << report_ << "\"\nmessages = " << messages
                        << "\n"
                        << source_keys
                        << (transform.empty() ? "" : "[transform.scripted]\nreport = \"" + report_ + "\"\n" + transform)
                        << "[fanout.memory]\n"
                        << "[log.scripted]\nreport = \"" << report_ << "\"\nfail_every = " << fail_every
                        << "\nconfirm_delay_ms = " << confirm_delay_ms << "\n";
    return run_cli({"run", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR,
                    "--log-level", "warn"});
  }

  /// A paced source (it publishes each message once when_ready lets it)
  /// into a log that confirms nothing for `hold_ms`, then one append every
  /// 2 ms: how far the in-flight window lets the source get.
  struct Paced {
    int published = 0;
    int acked = 0;
    int published_before_first_confirm = 0;
    int peak_in_flight = 0;
  };
  Paced run_paced(const std::string& pipeline_keys, int messages, int payload_bytes, int hold_ms) {
    const std::string stem = ::testing::TempDir() + "/pipeline-" +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
                             std::to_string(::getpid());
    report_ = stem + ".report";
    std::remove(report_.c_str());
    const std::string file = stem + ".toml";
    std::ofstream(file) << "[pipeline]\nname = \"paced\"\n"
                        << pipeline_keys << "\n"
                        << "[source.scripted]\nreport = \"" << report_ << "\"\nmessages = " << messages
                        << "\npayload_bytes = " << payload_bytes << "\npaced = true\n"
                        << "[log.scripted]\nreport = \"" << report_ << "\"\nhold_ms = " << hold_ms
                        << "\nconfirm_delay_ms = 2\n";
    EXPECT_EQ(run_cli({"run", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--log-level", "warn"}), 0);
    Paced out;
    std::ifstream in(report_);
    int confirmed = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("published ")) {
        ++out.published;
        if (confirmed == 0) ++out.published_before_first_confirm;
        out.peak_in_flight = std::max(out.peak_in_flight, out.published - confirmed);
      } else if (line.starts_with("confirmed ")) {
        ++confirmed;
      } else if (line.starts_with("ack ")) {
        ++out.acked;
      }
    }
    return out;
  }

  /// What in_flight_bytes counts for one message of the scripted source.
  static std::size_t scripted_message_bytes(int payload_bytes) {
    Message m;
    m.room = "room";
    m.sender = "scripted";
    m.payload = std::string(static_cast<std::size_t>(payload_bytes), 'x');
    return in_flight_bytes(m);
  }

  std::string report_;
};

TEST_F(PipelineTest, AnAckFollowsTheLogsConfirmationAndAFailureIsAnErrorNeverAnAck) {
  ASSERT_EQ(run("durable", 300, 7), 0);
  const Events events = read_report(report_);
  ASSERT_EQ(events.by_id.size(), 300u);
  int acked = 0, refused = 0;
  for (const auto& [id, _] : events.by_id) {
    ASSERT_EQ(count(events, id, "ack") + count(events, id, "error"), 1u) << id << ": exactly one completion";
    if (count(events, id, "confirmed")) {
      ++acked;
      EXPECT_EQ(count(events, id, "ack"), 1u) << id;
      EXPECT_LT(first(events, id, "confirmed"), first(events, id, "ack")) << id << ": acked before it was durable";
    } else {
      ++refused;
      ASSERT_EQ(count(events, id, "refused"), 1u) << id;
      EXPECT_EQ(count(events, id, "error"), 1u) << id << ": a refused append must reach its sender as an error";
      EXPECT_EQ(events.error_codes.at(id), "unavailable");
    }
  }
  EXPECT_EQ(refused, 300 / 7);
  EXPECT_EQ(acked, 300 - 300 / 7);
}

TEST_F(PipelineTest, ATransformsRejectReachesTheSenderAndADropIsAckedAndNeitherIsLoggedNorFannedOut) {
  ASSERT_EQ(run("durable", 100, 0, 1, "reject_every = 5\ndrop_every = 7\n"), 0);
  const Events events = read_report(report_);
  ASSERT_EQ(events.by_id.size(), 100u);
  int rejected = 0, dropped = 0, passed = 0;
  for (const auto& [id, _] : events.by_id) {
    ASSERT_EQ(count(events, id, "ack") + count(events, id, "error"), 1u) << id << ": exactly one completion";
    EXPECT_EQ(count(events, id, "rejected") + count(events, id, "dropped") + count(events, id, "passed"), 1u) << id;
    if (count(events, id, "rejected")) {
      ++rejected;
      EXPECT_EQ(events.error_codes.at(id), "rejected") << id;
    } else if (count(events, id, "dropped")) {
      ++dropped;
      EXPECT_EQ(count(events, id, "ack"), 1u) << id << ": a drop is acknowledged";
    } else {
      ++passed;
      EXPECT_EQ(count(events, id, "confirmed"), 1u) << id;
      EXPECT_EQ(count(events, id, "deliver"), 1u) << id;
      EXPECT_LT(first(events, id, "passed"), first(events, id, "confirmed")) << id << ": transformed before the log";
      continue;
    }
    EXPECT_EQ(count(events, id, "confirmed") + count(events, id, "refused"), 0u) << id << ": it reached the log";
    EXPECT_EQ(count(events, id, "deliver"), 0u) << id << ": it was fanned out";
  }
  EXPECT_EQ(rejected, 20);
  EXPECT_EQ(dropped, 100 / 7 - 100 / 35);  // every 7th, less those already rejected as every 5th
  EXPECT_EQ(passed, 100 - rejected - dropped);
}

TEST_F(PipelineTest, TwoSourcesFeedOneLogAndEachDeliversEveryMessageToItsClients) {
  const std::string stem = ::testing::TempDir() + "/pipeline-two-sources-" + std::to_string(::getpid());
  const std::string report_a = stem + ".a.report", report_b = stem + ".b.report", report_log = stem + ".log.report";
  for (const auto& f : {report_a, report_b, report_log}) std::remove(f.c_str());
  const std::string file = stem + ".toml";
  // The second source does not signal: the first stops the run once it has seen both sources' messages.
  std::ofstream(file) << "[pipeline]\nname = \"two\"\n"
                      << "[source.scripted]\nreport = \"" << report_a << "\"\nmessages = 40\nexpect_deliveries = 70\n"
                      << "[source.scripted2]\nreport = \"" << report_b << "\"\nmessages = 30\nsignal = false\n"
                      << "[fanout.memory]\n"
                      << "[log.scripted]\nreport = \"" << report_log << "\"\n";
  ASSERT_EQ(run_cli({"run", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR,
                     "--log-level", "warn"}),
            0);
  const Events a = read_report(report_a), b = read_report(report_b), log = read_report(report_log);
  std::size_t acked_a = 0, acked_b = 0;
  for (const auto& [id, _] : a.by_id) acked_a += count(a, id, "ack");
  for (const auto& [id, _] : b.by_id) acked_b += count(b, id, "ack");
  EXPECT_EQ(acked_a, 40u) << "each source hears its own acks";
  EXPECT_EQ(acked_b, 30u);
  ASSERT_EQ(log.by_id.size(), 70u) << "both sources' messages reach the one log";
  for (const auto& [id, _] : log.by_id) {
    EXPECT_EQ(count(log, id, "confirmed"), 1u) << id;
    EXPECT_EQ(count(a, id, "deliver"), 1u) << id << ": the first source's clients miss it";
    EXPECT_EQ(count(b, id, "deliver"), 1u) << id << ": the second source's clients miss it";
  }
}

TEST_F(PipelineTest, ASourceThatWantsNoRoomPublishesButIsHandedNothing) {
  const std::string stem = ::testing::TempDir() + "/pipeline-no-room-" + std::to_string(::getpid());
  const std::string report_a = stem + ".a.report", report_b = stem + ".b.report";
  for (const auto& f : {report_a, report_b}) std::remove(f.c_str());
  const std::string file = stem + ".toml";
  // Like the http source beside the websocket one: it publishes, and has no clients.
  std::ofstream(file) << "[pipeline]\nname = \"no-room\"\n"
                      << "[source.scripted]\nreport = \"" << report_a << "\"\nmessages = 10\nexpect_deliveries = 20\n"
                      << "[source.scripted2]\nreport = \"" << report_b
                      << "\"\nmessages = 10\nsignal = false\nwants_room = false\n"
                      << "[fanout.memory]\n"
                      << "[log.scripted]\nreport = \"" << stem << ".log.report\"\n";
  ASSERT_EQ(run_cli({"run", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--plugin-dir", NUDGE_BUILD_PLUGIN_DIR,
                     "--log-level", "warn"}),
            0);
  const Events a = read_report(report_a), b = read_report(report_b);
  std::size_t delivered_a = 0, delivered_b = 0, acked_b = 0;
  for (const auto& [id, _] : a.by_id) delivered_a += count(a, id, "deliver");
  for (const auto& [id, _] : b.by_id) delivered_b += count(b, id, "deliver"), acked_b += count(b, id, "ack");
  EXPECT_EQ(delivered_a, 20u) << "the source with clients gets both sources' messages";
  EXPECT_EQ(acked_b, 10u);
  EXPECT_EQ(delivered_b, 0u) << "a source that wants no room was handed messages";
}

TEST_F(PipelineTest, TheFanoutWantsARoomFromTheFirstSourceThatWantsItUntilTheLastOneLetsGo) {
  const std::string stem = ::testing::TempDir() + "/pipeline-interest-" + std::to_string(::getpid());
  const std::string report_a = stem + ".a.report", report_b = stem + ".b.report", report_f = stem + ".f.report";
  for (const auto& f : {report_a, report_b, report_f}) std::remove(f.c_str());
  const std::string file = stem + ".toml";
  // Both sources want "room" from start to stop; only the second wants "other".
  std::ofstream(file) << "[pipeline]\nname = \"interest\"\n"
                      << "[source.scripted]\nreport = \"" << report_a
                      << "\"\nmessages = 5\nexpect_deliveries = 10\nleave_on_stop = true\n"
                      << "[source.scripted2]\nreport = \"" << report_b
                      << "\"\nmessages = 5\nsignal = false\nleave_on_stop = true\nalso_room = \"other\"\n"
                      << "[fanout.scripted]\nreport = \"" << report_f << "\"\n"
                      << "[log.scripted]\nreport = \"" << stem << ".log.report\"\n";
  ASSERT_EQ(run_cli({"run", file, "--plugin-dir", NUDGE_TEST_PLUGIN_DIR, "--log-level", "warn"}), 0);
  std::ifstream in(report_f);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_EQ(lines,
            (std::vector<std::string>{"interest room 1", "interest other 1", "interest room 0", "interest other 0"}))
      << "each room once on, once off, the off only when the last source let it go";
}

TEST_F(PipelineTest, AnEphemeralMessageIsFannedOutAndAckedButNeverReachesTheLog) {
  ASSERT_EQ(run("durable", 120, 0, 1, "", "", "ephemeral_every = 3\n"), 0);
  const Events events = read_report(report_);
  ASSERT_EQ(events.by_id.size(), 120u);
  int ephemeral = 0;
  for (const auto& [id, _] : events.by_id) {
    ASSERT_EQ(count(events, id, "ack"), 1u) << id << ": every message is acknowledged";
    EXPECT_EQ(count(events, id, "deliver"), 1u) << id;
    if (count(events, id, "ephemeral")) {
      ++ephemeral;
      EXPECT_EQ(count(events, id, "confirmed") + count(events, id, "refused"), 0u) << id << ": it reached the log";
    } else {
      EXPECT_EQ(count(events, id, "confirmed"), 1u) << id;
    }
  }
  EXPECT_EQ(ephemeral, 40);
}

TEST_F(PipelineTest, APipelineWithEphemeralOffRefusesThemAndStillTakesTheRest) {
  ASSERT_EQ(run("durable", 60, 0, 1, "", "ephemeral = false\n", "ephemeral_every = 4\n"), 0);
  const Events events = read_report(report_);
  ASSERT_EQ(events.by_id.size(), 60u);
  int refused = 0;
  for (const auto& [id, _] : events.by_id) {
    if (count(events, id, "ephemeral")) {
      ++refused;
      EXPECT_EQ(count(events, id, "error"), 1u) << id;
      EXPECT_EQ(events.error_codes.at(id), "rejected") << id;
      EXPECT_EQ(count(events, id, "deliver") + count(events, id, "confirmed"), 0u) << id;
    } else {
      EXPECT_EQ(count(events, id, "ack"), 1u) << id;
      EXPECT_EQ(count(events, id, "confirmed"), 1u) << id;
      EXPECT_EQ(count(events, id, "deliver"), 1u) << id;
    }
  }
  EXPECT_EQ(refused, 15);
}

TEST_F(PipelineTest, DurableDeliveryFansOutOnlyWhatTheLogConfirmedOnceEachAfterTheConfirmation) {
  ASSERT_EQ(run("durable", 300, 5), 0);
  const Events events = read_report(report_);
  for (const auto& [id, _] : events.by_id) {
    if (count(events, id, "confirmed")) {
      ASSERT_EQ(count(events, id, "deliver"), 1u) << id;
      EXPECT_LT(first(events, id, "confirmed"), first(events, id, "deliver")) << id;
    } else {
      EXPECT_EQ(count(events, id, "deliver"), 0u) << id << ": a message the log refused was delivered";
    }
  }
}

TEST_F(PipelineTest, ImmediateDeliveryFansOutEverythingAtOnce) {
  ASSERT_EQ(run("immediate", 100, 5, 50), 0);
  const Events events = read_report(report_);
  for (const auto& [id, _] : events.by_id) {
    ASSERT_EQ(count(events, id, "deliver"), 1u) << id;
    const std::string outcome = count(events, id, "confirmed") ? "confirmed" : "refused";
    EXPECT_LT(first(events, id, "deliver"), first(events, id, outcome)) << id << ": delivered before durable";
  }
}

TEST_F(PipelineTest, PresenceGoesFromTheSourceToTheFanoutAndItsEventsBackToTheSource) {
  // The memory fanout keeps presence: the source's join comes back to it as
  // an event, and the room's list counts the member.
  ASSERT_EQ(run("immediate", 5, 0, 1, "", "", "presence = true\n"), 0);
  const Events events = read_report(report_);
  ASSERT_TRUE(events.by_id.contains("scripted/conn-1")) << "the join never came back to the source";
  EXPECT_EQ(count(events, "scripted/conn-1", "presence_join"), 1u);
  ASSERT_TRUE(events.by_id.contains("1")) << "no presence list of one member was read";
  EXPECT_EQ(count(events, "1", "presence_list"), 1u);
}

TEST_F(PipelineTest, APipelineWithPresenceOffReportsNoJoinAndAnswersThatItKeepsNone) {
  // The same memory fanout keeps presence, but the pipeline turned it off.
  ASSERT_EQ(run("immediate", 5, 0, 1, "", "presence = false\n", "presence = true\n"), 0);
  const Events events = read_report(report_);
  EXPECT_EQ(count(events, "-", "presence_unavailable"), 1u) << "the source was told the pipeline keeps presence";
  EXPECT_FALSE(events.by_id.contains("scripted/conn-1")) << "a join reached the fanout and came back";
  EXPECT_EQ(count(events, "failed", "presence_list"), 1u) << "a presence read was not refused";
}

TEST_F(PipelineTest, ALogThatNeverAcksStopsLargeMessagesAtTheByteBoundAndAcksFreeRoomOneByOne) {
  // 64 KiB messages against 1 MiB: the count bound (64) is never reached.
  constexpr int kPayload = 64 * 1024;
  constexpr std::size_t kBound = 1024 * 1024;
  const std::size_t each = scripted_message_bytes(kPayload);
  const int fit = static_cast<int>((kBound + each - 1) / each);  // published while the bytes are under the bound
  ASSERT_EQ(fit, 16);
  const auto paced =
      run_paced("max_in_flight = 64\nmax_in_flight_bytes = " + std::to_string(kBound), 60, kPayload, 400);
  EXPECT_EQ(paced.published_before_first_confirm, fit)
      << "for 400 ms nothing is acked: the source must stop once " << fit << " x " << each << " bytes are in flight";
  EXPECT_EQ(paced.peak_in_flight, fit) << "each ack frees room for one message, no more";
  EXPECT_EQ(paced.published, 60) << "acks resume the source";
  EXPECT_EQ(paced.acked, 60);
}

TEST_F(PipelineTest, SmallMessagesStillStopAtTheCountBound) {
  const auto paced = run_paced("max_in_flight = 5", 30, 0, 300);
  EXPECT_EQ(paced.published_before_first_confirm, 5);
  EXPECT_EQ(paced.peak_in_flight, 5);
  EXPECT_EQ(paced.acked, 30);
}

TEST_F(PipelineTest, AMessageLargerThanTheByteBoundGoesThroughAloneAndThePipelineDoesNotStall) {
  const auto paced = run_paced("max_in_flight_bytes = 65536", 5, 100 * 1024, 100);
  EXPECT_EQ(paced.published_before_first_confirm, 1);
  EXPECT_EQ(paced.peak_in_flight, 1);
  EXPECT_EQ(paced.acked, 5);
}

}  // namespace
}  // namespace nudge::runtime
