// Presence and ephemeral messages as clients see them (docs/protocol.md,
// docs/socketio.md), driven through the session harness: the FakeIngress
// keeps presence as a fanout does and reports joins and leaves back.
#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include <algorithm>
#include <chrono>
#include <list>
#include <set>
#include <string>

#include "session_harness.hpp"

namespace nudge::plugins::websocket::testing {
namespace {

using namespace std::chrono_literals;

std::map<std::string, ConfigValue> with(std::map<std::string, ConfigValue> overrides) { return overrides; }

std::size_t native_client(SessionHarness& h, const std::string& peer = "192.0.2.1") {
  const auto c = h.connect(peer);
  EXPECT_TRUE(c);
  h.send(*c, SessionHarness::upgrade_request("/ws"));
  h.read(*c);
  EXPECT_TRUE(h.client(*c).received.starts_with("HTTP/1.1 101")) << h.client(*c).received;
  return *c;
}

void say(SessionHarness& h, std::size_t c, const std::string& json) {
  h.send(c, SessionHarness::client_frame(Opcode::text, json));
  h.run();
}

/// The JSON text frames the client received since the last call, parsed;
/// kept until the process ends, so what of_type points into stays valid.
const std::vector<rapidjson::Document>& frames(SessionHarness& h, std::size_t c) {
  static std::list<std::vector<rapidjson::Document>> kept;
  h.run();
  h.read(c);
  auto& out = kept.emplace_back();
  for (auto& [opcode, payload] : h.take_frames(c)) {
    if (opcode != Opcode::text) continue;
    rapidjson::Document d;
    d.Parse(payload.c_str());
    EXPECT_FALSE(d.HasParseError()) << payload;
    if (!d.HasParseError() && d.IsObject()) out.push_back(std::move(d));
  }
  return out;
}

std::string str(const rapidjson::Value& v, const char* key) {
  const auto it = v.FindMember(key);
  return it != v.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString()) : std::string();
}

std::vector<const rapidjson::Document*> of_type(const std::vector<rapidjson::Document>& all, std::string_view type) {
  std::vector<const rapidjson::Document*> out;
  for (const auto& d : all)
    if (str(d, "type") == type) out.push_back(&d);
  return out;
}

/// A client named `name` in `room`, its frames so far taken.
std::size_t member(SessionHarness& h, const std::string& name, const std::string& room,
                   const std::string& peer = "192.0.2.1") {
  const auto c = native_client(h, peer);
  say(h, c, R"({"type":"hello","name":")" + name + R"("})");
  say(h, c, R"({"type":"join","room":")" + room + R"("})");
  return c;
}

SessionHarness& presence_on(SessionHarness& h) {
  h.ingress().presence = true;
  return h;
}

// ---------------------------------------------------------------- presence

TEST(Presence, AJoinIsAnnouncedToEveryMemberOfTheRoomTheJoinerIncluded) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  const auto& first = frames(h, alice);
  auto own = of_type(first, "presence_join");
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(str(*own[0], "user"), "alice");
  EXPECT_EQ(str(*own[0], "room"), "r");
  const std::string alice_id = str(*own[0], "client");
  const auto bob = member(h, "bob", "r", "192.0.2.2");
  auto seen_by_alice = of_type(frames(h, alice), "presence_join");
  auto seen_by_bob = of_type(frames(h, bob), "presence_join");
  ASSERT_EQ(seen_by_alice.size(), 1u);
  ASSERT_EQ(seen_by_bob.size(), 1u);
  EXPECT_EQ(str(*seen_by_alice[0], "user"), "bob");
  EXPECT_EQ(str(*seen_by_bob[0], "client"), str(*seen_by_alice[0], "client"));
  EXPECT_NE(str(*seen_by_bob[0], "client"), alice_id) << "each connection has its own id";
  // Opaque: 16 hex digits, nothing of the address or the instance in it.
  EXPECT_EQ(alice_id.size(), 16u);
  EXPECT_EQ(alice_id.find_first_not_of("0123456789abcdef"), std::string::npos) << alice_id;
  EXPECT_EQ(h.ingress().members["r"].size(), 2u);
  EXPECT_EQ(h.ingress().members["r"][0].user, "alice");
}

TEST(Presence, ClientIdsDifferBetweenInstancesForTheSameConnectionNumber) {
  SessionHarness one;
  SessionHarness two;
  EXPECT_NE(one.hub().client_id(1), two.hub().client_id(1)) << "another instance's first connection";
  EXPECT_NE(one.hub().client_id(1), one.hub().client_id(2));
}

TEST(Presence, LeavingClosingAndDroppingTheSocketEachAnnounceALeave) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  const auto bob = member(h, "bob", "r", "192.0.2.2");
  const auto carol = member(h, "carol", "r", "192.0.2.3");
  const auto dave = member(h, "dave", "r", "192.0.2.4");
  frames(h, alice);
  say(h, bob, R"({"type":"leave","room":"r"})");
  h.send(carol, SessionHarness::client_frame(Opcode::close, std::string("\x03\xe8", 2)));  // clean close
  h.run();
  h.close(dave);  // the TCP connection dropped without a close frame
  h.run();
  const auto leaves = of_type(frames(h, alice), "presence_leave");
  std::set<std::string> who;
  for (const auto* d : leaves) who.insert(str(*d, "user"));
  EXPECT_EQ(who, (std::set<std::string>{"bob", "carol", "dave"}));
  EXPECT_EQ(leaves.size(), 3u) << "one leave each";
  ASSERT_EQ(h.ingress().members["r"].size(), 1u);
  EXPECT_EQ(h.ingress().members["r"][0].user, "alice");
  h.check_invariants();
}

TEST(Presence, AnIdleTimeoutAndASlowConsumerKickLeaveThePresence) {
  SessionHarness h(with({{"idle_timeout_ms", std::int64_t{1000}}, {"max_send_queue", std::int64_t{8}}}));
  presence_on(h);
  member(h, "idle", "r");
  member(h, "slow", "s", "192.0.2.3");
  h.run();
  // Twenty messages for `slow` in one turn of the loop: more than its queue holds.
  auto m = std::make_shared<Message>();
  m->id = MessageId::generate();
  m->room = "s";
  m->sender = "x";
  m->payload = "m";
  Outbound out(m);
  for (int i = 0; i < 20; ++i) {
    const auto room = h.hub().rooms.find("s");
    if (room == h.hub().rooms.end()) break;  // its only member was dropped
    for (WsSession* s : std::vector<WsSession*>(room->second.begin(), room->second.end())) s->deliver(out);
  }
  h.run();
  EXPECT_EQ(h.hub().slow_clients_dropped.value(), 1u);
  EXPECT_TRUE(h.ingress().members["s"].empty()) << "the kicked client left";
  ASSERT_EQ(h.ingress().members["r"].size(), 1u);
  h.sweep(std::chrono::steady_clock::now() + 1500ms);
  EXPECT_TRUE(h.ingress().members["r"].empty()) << "the idle client left";
  h.check_invariants();
}

TEST(Presence, ShuttingDownLeavesEveryPresence) {
  SessionHarness h;
  presence_on(h);
  member(h, "alice", "r");
  member(h, "bob", "s", "192.0.2.2");
  h.run();
  for (WsSession* s : std::vector<WsSession*>(h.hub().sessions.begin(), h.hub().sessions.end())) s->shutdown();
  h.run();
  EXPECT_TRUE(h.ingress().members["r"].empty());
  EXPECT_TRUE(h.ingress().members["s"].empty());
}

TEST(Presence, ARequestIsAnsweredWithTheMembersAndTheirTotal) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  member(h, "bob", "r", "192.0.2.2");
  frames(h, alice);
  say(h, alice, R"({"type":"presence","room":"r","ref":"p-1"})");
  const auto replies = of_type(frames(h, alice), "presence");
  ASSERT_EQ(replies.size(), 1u);
  const auto& reply = *replies[0];
  EXPECT_EQ(str(reply, "ref"), "p-1");
  EXPECT_EQ(str(reply, "room"), "r");
  ASSERT_TRUE(reply["members"].IsArray());
  ASSERT_EQ(reply["members"].Size(), 2u);
  EXPECT_EQ(str(reply["members"][1], "user"), "bob");
  EXPECT_EQ(str(reply["members"][1], "client").size(), 16u);
  EXPECT_EQ(reply["total"].GetUint64(), 2u);
}

TEST(Presence, AReplyNamesAtMostMaxPresenceMembersAndCountsTheRest) {
  SessionHarness h(with({{"max_presence_members", std::int64_t{2}}}));
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  for (int i = 0; i < 4; ++i) member(h, "m" + std::to_string(i), "r", "192.0.2." + std::to_string(10 + i));
  frames(h, alice);
  say(h, alice, R"({"type":"presence","room":"r"})");
  const auto replies = of_type(frames(h, alice), "presence");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ((*replies[0])["members"].Size(), 2u);
  EXPECT_EQ((*replies[0])["total"].GetUint64(), 5u);
  EXPECT_FALSE(replies[0]->HasMember("ref"));
}

TEST(Presence, OneRequestAtATimeASecondIsRefusedBusy) {
  SessionHarness h;
  presence_on(h);
  h.ingress().hold_presence = true;
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  for (int i = 0; i < 50; ++i) say(h, alice, R"({"type":"presence","room":"r","ref":"p-)" + std::to_string(i) + "\"}");
  EXPECT_EQ(h.ingress().held_presence_reads(), 1u) << "the server holds one read for the client, not 50";
  const auto& all = frames(h, alice);
  const auto errors = of_type(all, "error");
  ASSERT_EQ(errors.size(), 49u);
  EXPECT_EQ(str(*errors[0], "code"), "busy");
  EXPECT_EQ(str(*errors[0], "ref"), "p-1");
  h.ingress().answer_presence();
  const auto replies = of_type(frames(h, alice), "presence");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(str(*replies[0], "ref"), "p-0");
  say(h, alice, R"({"type":"presence","room":"r"})");
  EXPECT_EQ(h.ingress().held_presence_reads(), 1u) << "answered: the next may go";
}

TEST(Presence, AtMostMaxPresenceReadsAreUnansweredOverAllClientsMoreAreRefusedBusy) {
  SessionHarness h(with({{"max_presence_reads", std::int64_t{3}}}));
  presence_on(h);
  h.ingress().hold_presence = true;
  std::vector<std::size_t> clients;
  for (int i = 0; i < 8; ++i)
    clients.push_back(member(h, "m" + std::to_string(i), "r", "192.0.2." + std::to_string(10 + i)));
  for (const auto c : clients) frames(h, c);
  for (const auto c : clients) say(h, c, R"({"type":"presence","room":"r","ref":"p"})");
  EXPECT_EQ(h.ingress().held_presence_reads(), 3u) << "the fanout is asked for 3 reads, not 8";
  EXPECT_EQ(h.hub().presence_reads_refused.value(), 5u);
  std::size_t busy = 0;
  for (std::size_t i = 3; i < clients.size(); ++i) {
    const auto errors = of_type(frames(h, clients[i]), "error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(str(*errors[0], "ref"), "p");
    busy += str(*errors[0], "code") == "busy";
  }
  EXPECT_EQ(busy, 5u);
  h.ingress().answer_presence();
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(of_type(frames(h, clients[i]), "presence").size(), 1u);
  // Answered: their share is free again.
  say(h, clients[7], R"({"type":"presence","room":"r"})");
  EXPECT_EQ(h.ingress().held_presence_reads(), 1u);
  h.check_invariants();
}

TEST(Presence, AReadTheFanoutNeverAnswersTimesOutUnavailableAndFreesTheClient) {
  SessionHarness h(with({{"presence_read_timeout_ms", std::int64_t{1000}}, {"max_presence_reads", std::int64_t{1}}}));
  presence_on(h);
  h.ingress().hold_presence = true;  // a hung fanout
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  say(h, alice, R"({"type":"presence","room":"r","ref":"p-1"})");
  h.sweep(std::chrono::steady_clock::now() + 500ms);
  EXPECT_TRUE(of_type(frames(h, alice), "error").empty()) << "not yet due";
  h.sweep(std::chrono::steady_clock::now() + 1500ms);
  const auto errors = of_type(frames(h, alice), "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(str(*errors[0], "code"), "unavailable");
  EXPECT_EQ(str(*errors[0], "ref"), "p-1");
  EXPECT_EQ(h.hub().presence_read_timeouts.value(), 1u);
  // Both the client's slot and the instance's are free: the next is read.
  say(h, alice, R"({"type":"presence","room":"r","ref":"p-2"})");
  EXPECT_EQ(h.ingress().held_presence_reads(), 2u);
  EXPECT_TRUE(of_type(frames(h, alice), "error").empty()) << "not busy";
  // The fanout recovers: the late answer to p-1 is dropped, p-2 is answered.
  h.ingress().answer_presence();
  const auto replies = of_type(frames(h, alice), "presence");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(str(*replies[0], "ref"), "p-2");
  h.check_invariants();
}

TEST(Presence, AClientGoneBeforeItsAnswerIsForgotten) {
  SessionHarness h;
  presence_on(h);
  h.ingress().hold_presence = true;
  const auto alice = member(h, "alice", "r");
  say(h, alice, R"({"type":"presence","room":"r"})");
  h.close(alice);
  h.run();
  h.ingress().answer_presence();
  h.run();
  h.check_invariants();
}

TEST(Presence, RequestsSpendTheRateLimitLikeAnyFrame) {
  SessionHarness h(with({{"rate_limit_per_second", 1.0},
                         {"rate_limit_burst", std::int64_t{5}},
                         {"rate_limit_strikes", std::int64_t{1000}}}));
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  const auto before = h.ingress().presence_reads;
  for (int i = 0; i < 40; ++i) say(h, alice, R"({"type":"presence","room":"r"})");
  const auto& all = frames(h, alice);
  std::size_t limited = 0;
  for (const auto* e : of_type(all, "error")) limited += str(*e, "code") == "rate_limited";
  EXPECT_GE(limited, 35u);
  EXPECT_LE(h.ingress().presence_reads - before, 5u);
}

TEST(Presence, HostileRequestsGetClearErrors) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type":"presence"})", "bad_request"},
      {R"({"type":"presence","room":5})", "bad_request"},
      {R"({"type":"presence","room":null,"ref":"x"})", "bad_request"},
      {R"({"type":"presence","room":")" + std::string(60000, 'a') + R"("})", "bad_request"},
      {R"({"type":"presence","room":"elsewhere","ref":"p-9"})", "not_joined"},
      {R"({"type":"presence","room":["r"]})", "bad_request"},
      {R"({"type":"send","room":"r","text":"t","ephemeral":"yes"})", "bad_request"},
      {R"({"type":"send","room":"r","text":"t","ephemeral":1})", "bad_request"},
      {R"({"type":"send","room":"r","ephemeral":true})", "bad_request"},
  };
  for (const auto& [json, code] : cases) {
    say(h, alice, json);
    const auto errors = of_type(frames(h, alice), "error");
    ASSERT_EQ(errors.size(), 1u) << json.substr(0, 80);
    EXPECT_EQ(str(*errors[0], "code"), code) << json.substr(0, 80);
    EXPECT_LT(str(*errors[0], "message").size(), 300u) << "nothing of a huge room is sent back";
  }
  EXPECT_EQ(h.ingress().presence_reads, 0u);
  EXPECT_TRUE(h.ingress().published.empty());
  h.check_invariants();
}

TEST(Presence, APipelineWithoutPresenceAnswersUnsupportedAndHearsNoJoins) {
  SessionHarness h;
  const auto alice = member(h, "alice", "r");
  say(h, alice, R"({"type":"presence","room":"r","ref":"p-1"})");
  const auto& all = frames(h, alice);
  EXPECT_TRUE(of_type(all, "presence_join").empty());
  const auto errors = of_type(all, "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(str(*errors[0], "code"), "unsupported");
  EXPECT_EQ(str(*errors[0], "ref"), "p-1");
  EXPECT_TRUE(h.ingress().members.empty());
}

TEST(Presence, EventsCanBeTurnedOffRequestsStillAnswer) {
  SessionHarness h(with({{"presence_events", false}}));
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  member(h, "bob", "r", "192.0.2.2");
  say(h, alice, R"({"type":"presence","room":"r"})");
  const auto& all = frames(h, alice);
  EXPECT_TRUE(of_type(all, "presence_join").empty());
  ASSERT_EQ(of_type(all, "presence").size(), 1u);
  EXPECT_EQ((*of_type(all, "presence")[0])["total"].GetUint64(), 2u);
  EXPECT_EQ(h.hub().presence_events_sent.value(), 0u);
}

TEST(Presence, RoomsOverPresenceEventsMaxRoomGetNoEvents) {
  SessionHarness h(with({{"presence_events_max_room", std::int64_t{2}}}));
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  member(h, "bob", "r", "192.0.2.2");
  EXPECT_EQ(of_type(frames(h, alice), "presence_join").size(), 2u) << "two members: events";
  member(h, "carol", "r", "192.0.2.3");
  EXPECT_TRUE(of_type(frames(h, alice), "presence_join").empty()) << "three: none, not three frames a join";
  say(h, alice, R"({"type":"presence","room":"r"})");
  const auto& all = frames(h, alice);
  ASSERT_EQ(of_type(all, "presence").size(), 1u);
  EXPECT_EQ((*of_type(all, "presence")[0])["total"].GetUint64(), 3u) << "requests still answer";
}

TEST(Presence, ARenameInARoomIsALeaveOfTheOldNameAndAJoinOfTheNew) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  say(h, alice, R"({"type":"hello","name":"alicia"})");
  const auto& all = frames(h, alice);
  ASSERT_EQ(of_type(all, "presence_leave").size(), 1u);
  EXPECT_EQ(str(*of_type(all, "presence_leave")[0], "user"), "alice");
  ASSERT_EQ(of_type(all, "presence_join").size(), 1u);
  EXPECT_EQ(str(*of_type(all, "presence_join")[0], "user"), "alicia");
  h.close(alice);
  h.run();
  EXPECT_TRUE(h.ingress().members["r"].empty()) << "the leave names who joined";
}

TEST(Presence, RenamingInManyRoomsSpendsATokenPerRoom) {
  SessionHarness h(with({{"rate_limit_per_second", 0.001},
                         {"rate_limit_burst", std::int64_t{30}},
                         {"rate_limit_strikes", std::int64_t{1000}}}));
  presence_on(h);
  const auto c = native_client(h);
  say(h, c, R"({"type":"hello","name":"a"})");
  for (int i = 0; i < 10; ++i) say(h, c, R"({"type":"join","room":"r)" + std::to_string(i) + "\"}");
  frames(h, c);
  // 11 tokens spent: 19 left, enough for one rename in 10 rooms (1 + 10), not two.
  say(h, c, R"({"type":"hello","name":"b"})");
  say(h, c, R"({"type":"hello","name":"c"})");
  const auto& all = frames(h, c);
  const auto errors = of_type(all, "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(str(*errors[0], "code"), "rate_limited");
  EXPECT_EQ(h.hub().sessions.size(), 1u);
  for (int i = 0; i < 10; ++i) {
    const auto& members = h.ingress().members["r" + std::to_string(i)];
    ASSERT_EQ(members.size(), 1u);
    EXPECT_EQ(members[0].user, "b") << "the refused rename changed nothing";
  }
}

TEST(Presence, EventsGoThroughTheBoundedSendQueue) {
  SessionHarness h(with({{"max_send_queue", std::int64_t{16}}}));
  presence_on(h);
  member(h, "deaf", "r");
  h.run();
  // A storm of joins in one turn of the loop: nothing is written meanwhile,
  // so they queue, and the queue's bound holds.
  for (int i = 0; i < 100; ++i)
    h.hub().deliver_presence(
        "r", PresenceEvent{PresenceChange::join, PresenceMember{"m" + std::to_string(i), std::to_string(i), "other"}});
  h.check_invariants();
  h.run();
  EXPECT_EQ(h.hub().slow_clients_dropped.value(), 1u) << "dropped, not queued for without end";
  EXPECT_LE(h.hub().presence_events_sent.value(), 20u);
  EXPECT_TRUE(h.ingress().members["r"].empty());
}

TEST(Presence, EventsWithNamesThatAreNotUtf8AreDropped) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  h.deliver_presence("r", PresenceEvent{PresenceChange::join, PresenceMember{"\xff\xfe", "c", "other"}});
  EXPECT_TRUE(of_type(frames(h, alice), "presence_join").empty());
  h.deliver_presence("nobody-here", PresenceEvent{PresenceChange::join, PresenceMember{"x", "c", "other"}});
  h.check_invariants();
}

// --------------------------------------------------------------- ephemeral

TEST(Ephemeral, ASendMarkedEphemeralCarriesTheHeaderAndComesBackAsEphemeral) {
  SessionHarness h;
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  say(h, alice, R"({"type":"send","room":"r","text":"typing","ref":"c-9","ephemeral":true})");
  ASSERT_EQ(h.ingress().published.size(), 1u);
  const auto& m = h.ingress().published[0];
  EXPECT_TRUE(is_ephemeral(*m));
  EXPECT_EQ(m->payload, "typing");
  const auto acks = of_type(frames(h, alice), "ack");
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(str(*acks[0], "ref"), "c-9");
  EXPECT_EQ(str(*acks[0], "id"), m->id.to_string());
  h.deliver(m);
  const auto& all = frames(h, alice);
  EXPECT_TRUE(of_type(all, "message").empty()) << "never as a message";
  const auto eph = of_type(all, "ephemeral");
  ASSERT_EQ(eph.size(), 1u);
  EXPECT_EQ(str(*eph[0], "text"), "typing");
  EXPECT_EQ(str(*eph[0], "sender"), "alice");
  EXPECT_EQ(str(*eph[0], "id"), m->id.to_string());
  EXPECT_TRUE((*eph[0])["ts"].IsInt64());
  EXPECT_FALSE(eph[0]->HasMember("history"));
}

TEST(Ephemeral, AnEphemeralFalseSendIsAnOrdinaryMessage) {
  SessionHarness h;
  const auto alice = member(h, "alice", "r");
  say(h, alice, R"({"type":"send","room":"r","text":"hi","ephemeral":false})");
  ASSERT_EQ(h.ingress().published.size(), 1u);
  EXPECT_FALSE(is_ephemeral(*h.ingress().published[0]));
}

TEST(Ephemeral, ARefusalOfThePipelineReachesTheSenderAndARefMayBeReused) {
  SessionHarness h;
  h.ingress().auto_ack = false;
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  say(h, alice, R"({"type":"send","room":"r","text":"typing","ref":"t","ephemeral":true})");
  h.ingress().complete_all(Status::error(StatusCode::rejected, "ephemeral messages are off in this pipeline"));
  const auto errors = of_type(frames(h, alice), "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(str(*errors[0], "code"), "rejected");
  EXPECT_EQ(str(*errors[0], "ref"), "t");
  // Nothing of an ephemeral send is remembered: the same ref is another send.
  h.ingress().auto_ack = true;
  say(h, alice, R"({"type":"send","room":"r","text":"typing","ref":"t","ephemeral":true})");
  EXPECT_EQ(h.ingress().published.size(), 2u);
  EXPECT_EQ(of_type(frames(h, alice), "ack").size(), 1u);
}

TEST(Ephemeral, ARefRememberedFromADurableSendIsARefConflictNotANewMessage) {
  SessionHarness h;
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  say(h, alice, R"({"type":"send","room":"r","text":"norm1","ref":"nn"})");
  ASSERT_EQ(h.ingress().published.size(), 1u);
  ASSERT_EQ(of_type(frames(h, alice), "ack").size(), 1u);
  say(h, alice, R"({"type":"send","room":"r","text":"norm1","ref":"nn","ephemeral":true})");
  EXPECT_EQ(h.ingress().published.size(), 1u) << "nothing published again";
  const auto errors = of_type(frames(h, alice), "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(str(*errors[0], "code"), "ref_conflict");
  EXPECT_EQ(str(*errors[0], "ref"), "nn");
  // An ephemeral's own ref is not remembered: resent, it is sent again, and
  // a durable send with it is a new message.
  say(h, alice, R"({"type":"send","room":"r","text":"typing","ref":"e","ephemeral":true})");
  say(h, alice, R"({"type":"send","room":"r","text":"typing","ref":"e","ephemeral":true})");
  say(h, alice, R"({"type":"send","room":"r","text":"typing","ref":"e"})");
  EXPECT_EQ(h.ingress().published.size(), 4u);
  EXPECT_FALSE(is_ephemeral(*h.ingress().published[3]));
  EXPECT_EQ(of_type(frames(h, alice), "ack").size(), 3u);
}

TEST(Ephemeral, EphemeralSendsAreRateAndSizeLimitedLikeAnySend) {
  SessionHarness h(with({{"rate_limit_per_second", 1.0},
                         {"rate_limit_burst", std::int64_t{5}},
                         {"rate_limit_strikes", std::int64_t{1000}},
                         {"max_message_bytes", std::int64_t{1024}}}));
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  for (int i = 0; i < 30; ++i) say(h, alice, R"({"type":"send","room":"r","text":"typing","ephemeral":true})");
  EXPECT_LE(h.ingress().published.size(), 5u);
  say(h, alice, R"({"type":"send","room":"r","text":")" + std::string(4000, 'x') + R"(","ephemeral":true})");
  h.run();
  EXPECT_LE(h.ingress().published.size(), 5u);
}

// --------------------------------------------------------------- Socket.IO

/// A long-polling Socket.IO session (each request on a fresh connection).
struct Polling {
  explicit Polling(SessionHarness& harness) : h(harness) {}
  SessionHarness& h;
  std::string peer = "192.0.2.50";
  std::string sid;

  std::string request(const std::string& method, const std::string& body = {}) {
    const auto c = h.connect(peer);
    if (!c) return "refused at accept";
    std::string req = "GET /socket.io/?EIO=4&transport=polling" + (sid.empty() ? "" : "&sid=" + sid) +
                      " HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: text/plain\r\n";
    if (method == "POST") req.replace(0, 3, "POST");
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    h.send(*c, req);
    h.run();
    h.read(*c);
    const auto& got = h.client(*c).received;
    const auto at = got.find("\r\n\r\n");
    return at == std::string::npos ? got : got.substr(at + 4);
  }
  void open(const std::string& connect) {
    const auto answer = request("GET");
    const auto at = answer.find("\"sid\":\"");
    ASSERT_NE(at, std::string::npos) << answer;
    sid = answer.substr(at + 7, 20);
    request("POST", connect);
    request("GET");
  }
  std::string post_and_poll(const std::string& packet) {
    request("POST", packet);
    h.run();
    return request("GET");
  }
};

TEST(PresenceSocketIo, JoinsAreEventsAndAPresenceAckListsTheRoom) {
  SessionHarness h;
  presence_on(h);
  const auto alice = member(h, "alice", "r");
  frames(h, alice);
  Polling p(h);
  p.open(R"(40{"room":"r","name":"bob"})");
  const auto joins = of_type(frames(h, alice), "presence_join");
  ASSERT_EQ(joins.size(), 1u);
  EXPECT_EQ(str(*joins[0], "user"), "bob");
  const std::string bob_id = str(*joins[0], "client");
  // Its own join, and alice's presence as an event with one object argument.
  const auto own = p.post_and_poll(R"(421["presence"])");
  EXPECT_NE(own.find(R"(431[{"ok":true,"room":"r","members":[{"user":"alice","client":")"), std::string::npos) << own;
  EXPECT_NE(own.find(R"({"user":"bob","client":")" + bob_id + R"("}],"total":2}])"), std::string::npos) << own;
  const auto named = p.post_and_poll(R"(422["presence",{"room":"r"}])");
  EXPECT_NE(named.find(R"(432[{"ok":true,"room":"r")"), std::string::npos) << named;
  say(h, alice, R"({"type":"leave","room":"r"})");
  const auto left = p.request("GET");
  EXPECT_NE(left.find(R"(42["presence_leave",{"room":"r","user":"alice","client":")"), std::string::npos) << left;
}

TEST(PresenceSocketIo, HostilePresenceRequestsAreRefusedInTheirAck) {
  SessionHarness h;
  presence_on(h);
  Polling p(h);
  p.open(R"(40{"room":"r","name":"bob"})");
  EXPECT_NE(p.post_and_poll(R"(421["presence",5])").find(R"(431[{"ok":false,"error":{"code":"bad_request")"),
            std::string::npos);
  EXPECT_NE(p.post_and_poll(R"(422["presence",{"room":7}])").find(R"(432[{"ok":false,"error":{"code":"bad_request")"),
            std::string::npos);
  EXPECT_NE(p.post_and_poll(R"(423["presence","elsewhere"])").find(R"(433[{"ok":false,"error":{"code":"not_joined")"),
            std::string::npos);
  const auto huge = p.post_and_poll(R"(424["presence",")" + std::string(50000, 'a') + R"("])");
  EXPECT_NE(huge.find(R"(434[{"ok":false,"error":{"code":"bad_request")"), std::string::npos);
  EXPECT_LT(huge.size(), 1000u);
  EXPECT_NE(p.post_and_poll(R"(42["presence"])").find(R"(42["error",{"code":"bad_request")"), std::string::npos)
      << "without an ack there is nowhere to answer";
  h.ingress().hold_presence = true;
  const auto busy = p.post_and_poll(std::string(R"(425["presence"])") + "\x1e" + R"(426["presence"])");
  EXPECT_NE(busy.find(R"(436[{"ok":false,"error":{"code":"busy")"), std::string::npos) << busy;
  EXPECT_EQ(h.ingress().held_presence_reads(), 1u);
  EXPECT_EQ(p.post_and_poll(R"(427["event:message",{"message":"t","ephemeral":"yes"}])")
                .find(R"(437[{"ok":false,"error":{"code":"bad_request")"),
            0u);
  EXPECT_TRUE(h.ingress().published.empty());
}

TEST(PresenceSocketIo, AReadTheFanoutNeverAnswersTimesOutUnavailableInTheAck) {
  SessionHarness h(with({{"presence_read_timeout_ms", std::int64_t{1000}}}));
  presence_on(h);
  h.ingress().hold_presence = true;  // a hung fanout
  Polling p(h);
  p.open(R"(40{"room":"r","name":"bob"})");
  p.request("POST", R"(421["presence"])");
  h.sweep(std::chrono::steady_clock::now() + 1500ms);
  const auto got = p.request("GET");
  EXPECT_NE(got.find(R"(431[{"ok":false,"error":{"code":"unavailable")"), std::string::npos) << got;
  EXPECT_EQ(h.hub().presence_read_timeouts.value(), 1u);
  const auto next = p.post_and_poll(R"(422["presence"])");
  EXPECT_EQ(next.find("busy"), std::string::npos) << "the session's request is free again: " << next;
  EXPECT_EQ(h.ingress().held_presence_reads(), 2u);
}

TEST(PresenceSocketIo, APipelineWithoutPresenceAnswersUnsupported) {
  SessionHarness h;
  Polling p(h);
  p.open(R"(40{"room":"r","name":"bob"})");
  EXPECT_NE(p.post_and_poll(R"(421["presence"])").find(R"(431[{"ok":false,"error":{"code":"unsupported")"),
            std::string::npos);
}

TEST(PresenceSocketIo, AnEphemeralMessageIsAnEphemeralEventWithOneObject) {
  SessionHarness h;
  Polling p(h);
  p.open(R"(40{"room":"r","name":"bob"})");
  const auto ack = p.post_and_poll(R"(421["event:message",{"message":"typing","ephemeral":true}])");
  ASSERT_EQ(h.ingress().published.size(), 1u);
  const auto m = h.ingress().published[0];
  EXPECT_TRUE(is_ephemeral(*m));
  EXPECT_NE(ack.find(R"(431[{"ok":true,"id":")" + m->id.to_string()), std::string::npos) << ack;
  h.deliver(m);
  const auto got = p.request("GET");
  EXPECT_EQ(got, R"(42["ephemeral",{"message":"typing","id":")" + m->id.to_string() +
                     R"(","room":"r","sender":"bob","ts":)" + std::to_string(m->timestamp_ms) + "}]");
}

TEST(PresenceSocketIo, ClosingTheSessionLeavesThePresence) {
  SessionHarness h;
  presence_on(h);
  Polling p(h);
  p.open(R"(40{"room":"r","name":"bob"})");
  EXPECT_EQ(h.ingress().members["r"].size(), 1u);
  p.request("POST", "41");
  h.run();
  EXPECT_TRUE(h.ingress().members["r"].empty());
}

}  // namespace
}  // namespace nudge::plugins::websocket::testing
