// The fanout conformance suite: two instances A and B of the plugin under
// test, each with its own Context on one io_context (as two runtime instances
// sharing a server would be), both interested in the rooms used.
//
// What a fanout promises (sdk/include/nudge/sdk/fanout.hpp, docs/architecture.md):
// a message published on one instance reaches every instance, itself
// included, once; one publisher's messages in a room arrive in the order
// published; every field and payload byte arrives intact; after the server
// comes back, delivery resumes promptly without duplicates; an instance whose
// messages flow reports itself ready; a room declared interesting after
// start() is delivered like the others; a stopped instance receives nothing
// more. A fanout that keeps presence (supports_presence) reports each join
// and leave once to every instance, lists a room's members bounded by
// max_presence_per_room with the total count, drops the members of an
// instance that died (a process SIGKILLed, so nothing of it says goodbye)
// within its presence TTL, and reports the members of an instance that stops
// gracefully as left at once, without waiting for the TTL. With
// --single-instance (an in-process fanout) messages do not cross instances:
// each instance expects exactly its own.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "harness.hpp"

namespace nudge::conformance {
namespace {

constexpr std::string_view kProbeHeader = "conformance-probe";
constexpr int kRooms = 5;

/// Records what a fanout hands back to one instance. Messages of other runs
/// (a shared channel) are counted and ignored; probes only mark who has been
/// heard from in which room.
struct Recorder final : FanoutReceiver {
  std::string tag;
  std::vector<MessagePtr> messages;
  std::set<std::string> probes;
  std::size_t foreign = 0;
  /// Presence events in this case's rooms (the room names carry the tag).
  std::vector<std::pair<std::string, PresenceEvent>> presence;

  void on_presence(std::string_view room, const PresenceEvent& event) override {
    if (room.find(tag) != std::string_view::npos) presence.emplace_back(room, event);
  }

  /// How often `member` was reported with `change` in `room`.
  std::size_t count(const std::string& room, PresenceChange change, const PresenceMember& member) const {
    return static_cast<std::size_t>(std::count_if(presence.begin(), presence.end(), [&](const auto& e) {
      return e.first == room && e.second.change == change && e.second.member == member;
    }));
  }

  void on_fanout_message(MessagePtr message) override {
    const std::string* t = header(*message, kTagHeader);
    if (!t || *t != tag) {
      ++foreign;
      return;
    }
    if (const std::string* probe = header(*message, kProbeHeader)) {
      probes.insert(message->origin + "|" + message->room + "|" + *probe);
      return;
    }
    messages.push_back(std::move(message));
  }
};

struct Instance {
  std::string id;
  nudge::testing::TestContext context;
  Recorder recorder;
  std::unique_ptr<Fanout> fanout;

  Instance(boost::asio::io_context& io, std::string instance_id)
      : id(instance_id), context(io, "fanout." + settings().plugin->name() + "@" + instance_id, instance_id) {}
};

/// The environment variable that turns nudge-conformance into the member
/// process below instead of a test run: "<fd>|<instance id>|<case tag>|<room>".
constexpr const char* kMemberProcessVariable = "NUDGE_CONFORMANCE_PRESENCE_MEMBER";

/// The two members the member process joins.
std::vector<PresenceMember> member_process_members(const std::string& instance_id) {
  return {{"user-c1", "conn-c1", instance_id}, {"user-c2", "conn-c2", instance_id}};
}

/// A third instance of the plugin in a process of its own (this executable run
/// again with the same options), to be SIGKILLed as an instance that dies would
/// be. A process, not an in-process instance: nothing of it (no destructor) may
/// say goodbye. Spawned, not forked: a client library with threads of its own
/// (libnats) cannot be used in a forked child.
class MemberProcess {
 public:
  MemberProcess(const std::string& instance_id, const std::string& tag, const std::string& room) {
    int fds[2];
    if (::pipe(fds) != 0) {
      error_ = std::string("pipe: ") + std::strerror(errno);
      return;
    }
    ready_fd_ = fds[0];
    ::fcntl(ready_fd_, F_SETFD, FD_CLOEXEC);
    ::fcntl(ready_fd_, F_SETFL, O_NONBLOCK);
    const std::string spec = std::to_string(fds[1]) + "|" + instance_id + "|" + tag + "|" + room;
    std::vector<std::string> env_text{std::string(kMemberProcessVariable) + "=" + spec};
    for (char** e = environ; *e; ++e)
      if (!std::string_view(*e).starts_with(kMemberProcessVariable)) env_text.emplace_back(*e);
    std::vector<std::string> arg_text{"/proc/self/exe"};
    arg_text.insert(arg_text.end(), settings().arguments.begin(), settings().arguments.end());
    std::vector<char*> argv, envp;
    for (auto& a : arg_text) argv.push_back(a.data());
    for (auto& e : env_text) envp.push_back(e.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data());
    ::close(fds[1]);
    if (rc != 0) {
      pid_ = -1;
      error_ = std::string("posix_spawn: ") + std::strerror(rc);
    }
  }
  ~MemberProcess() {
    kill();
    if (ready_fd_ >= 0) ::close(ready_fd_);
  }
  MemberProcess(const MemberProcess&) = delete;
  MemberProcess& operator=(const MemberProcess&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  /// True once the process joined its members; false while it is starting.
  bool ready() {
    char byte = 0;
    if (!ready_ && ::read(ready_fd_, &byte, 1) == 1) ready_ = true;
    return ready_;
  }
  /// SIGKILL, and reap; true when it was still running (it did not die early).
  bool kill() {
    if (pid_ <= 0) return false;
    int status = 0;
    const bool running = ::waitpid(pid_, &status, WNOHANG) == 0;
    if (running) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    return running;
  }

 private:
  pid_t pid_ = -1;
  int ready_fd_ = -1;
  bool ready_ = false;
  std::string error_;
};

class FanoutConformance : public ConformanceTest {
 public:
  void EveryMessageReachesEveryInstanceOnce();
  void OnePublishersMessagesArriveInOrder();
  void PayloadsAndFieldsArriveByteForByte();
  void DeliveryResumesAfterTheServerRestarts();
  void ReadyWhileMessagesFlow();
  void ARoomDeclaredAfterStartIsDelivered();
  void AStoppedInstanceReceivesNothingMore();
  void PresenceJoinsAndLeavesReachEveryInstanceOnce();
  void PresenceListIsBoundedAndCountsTheRest();
  void ADeadInstancesMembersLeaveWithinTheTTL();
  void AStoppedInstancesMembersLeaveAtOnce();

 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped()) return;
    tag_ = case_tag();
    for (int r = 0; r < kRooms; ++r) rooms_.push_back("conf-" + tag_ + "-room" + std::to_string(r));
    const Config config = config_for_case(tag_);
    for (const char* name : {"a", "b"}) {
      auto instance = std::make_unique<Instance>(io_, "conf-" + std::string(name) + "-" + tag_);
      instance->recorder.tag = tag_;
      std::string error;
      instance->fanout = create_instance<Fanout>(config, instance->context, error);
      ASSERT_TRUE(instance->fanout) << "create() failed: " << error;
      const Status started = instance->fanout->start(instance->recorder);
      ASSERT_TRUE(started.ok()) << "start() failed: " << started.message();
      for (const auto& room : rooms_) instance->fanout->set_room_interest(room, true);
      instances_.push_back(std::move(instance));
    }
    a_ = instances_[0].get();
    b_ = instances_[1].get();
    warm_up();
  }

  void TearDown() override {
    ticker_.reset();
    auto stopped = std::make_shared<std::size_t>(0);
    std::size_t n = 0;
    for (auto& instance : instances_)
      if (instance->fanout) {
        ++n;
        instance->fanout->stop([stopped] { ++*stopped; });
      }
    const auto t0 = Clock::now();
    run_until([&] { return *stopped == n; }, std::chrono::seconds(10));
    EXPECT_EQ(*stopped, n) << "stop() must call its completion (waited 10 s)";
    if (*stopped == n && n > 0) {
      const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
      EXPECT_LT(ms, 5000) << "stop() took " << ms << " ms";
    }
    for (auto& instance : instances_) instance->fanout.reset();
    run_for(milliseconds(50));  // completions posted by the destructors
    instances_.clear();
    ConformanceTest::TearDown();
  }

  /// Who `receiver` hears from: everyone, or only itself with --single-instance.
  std::vector<Instance*> senders_heard_by(const Instance& receiver) {
    std::vector<Instance*> out;
    for (auto& i : instances_)
      if (!settings().single_instance || i.get() == &receiver) out.push_back(i.get());
    return out;
  }
  std::vector<Instance*> all() {
    std::vector<Instance*> out;
    for (auto& i : instances_) out.push_back(i.get());
    return out;
  }

  MessagePtr make(Instance& from, const std::string& room, std::int64_t seq, std::string payload) {
    auto m = std::make_shared<Message>();
    m->id = MessageId::generate();
    m->room = room;
    m->sender = "sender-of-" + from.id;
    m->payload = std::move(payload);
    m->timestamp_ms = now_ms();
    m->origin = from.id;
    m->headers = {{std::string(kTagHeader), tag_}, {std::string(kSeqHeader), std::to_string(seq)}};
    return m;
  }

  /// Each instance publishes a probe in every room every 100 ms until each has
  /// heard every expected sender in every room: then all subscriptions are live.
  void warm_up() {
    auto heard_all = [&] {
      for (auto& receiver : instances_)
        for (Instance* sender : senders_heard_by(*receiver))
          for (const auto& room : rooms_)
            if (!receiver->recorder.probes.contains(sender->id + "|" + room + "|warm-up")) return false;
      return true;
    };
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::seconds(20);
    while (!heard_all() && Clock::now() < deadline) {
      for (auto& sender : instances_)
        for (const auto& room : rooms_) {
          auto probe = std::const_pointer_cast<Message>(make(*sender, room, -1, ""));
          probe->headers.emplace_back(std::string(kProbeHeader), "warm-up");
          sender->fanout->publish(probe);
        }
      run_until(heard_all, milliseconds(100));
    }
    ASSERT_TRUE(heard_all()) << "within 20 s of start() the instances did not hear each other's probe messages in "
                                "every room they declared interest in (is the server reachable?)";
    run_for(milliseconds(100));  // late probes land before the case starts
    std::cout << "[ WARM-UP  ] subscriptions live after "
              << std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count() << " ms" << std::endl;
  }

  /// Publishes `count` messages from each of `from` (`chunk` per loop turn) in
  /// rooms round-robin; `sent` gets them in publish order per publisher.
  void publish(std::vector<Instance*> from, std::int64_t count, std::int64_t chunk,
               std::map<std::string, std::vector<MessagePtr>>& sent) {
    for (std::int64_t next = 0; next < count;) {
      const std::int64_t end = std::min(count, next + chunk);
      for (; next < end; ++next)
        for (Instance* i : from) {
          auto m = make(*i, rooms_[static_cast<std::size_t>(next % kRooms)], next, "m" + std::to_string(next));
          sent[i->id].push_back(m);
          i->fanout->publish(m);
        }
      run_for(milliseconds(1));  // let the loop breathe, as a runtime would between client reads
    }
  }

  std::size_t expected_count(const Instance& receiver, const std::map<std::string, std::vector<MessagePtr>>& sent) {
    std::size_t n = 0;
    for (Instance* sender : senders_heard_by(receiver))
      if (auto it = sent.find(sender->id); it != sent.end()) n += it->second.size();
    return n;
  }

  bool all_arrived(const std::map<std::string, std::vector<MessagePtr>>& sent) {
    for (auto& i : instances_)
      if (i->recorder.messages.size() < expected_count(*i, sent)) return false;
    return true;
  }

  std::string counts() {
    std::ostringstream out;
    for (auto& i : instances_)
      out << (&i == &instances_.front() ? "" : ", ") << i->id << " received " << i->recorder.messages.size();
    return out.str();
  }

  /// Whether the plugin keeps presence; the cases skip when it does not.
  bool keeps_presence() const { return a_->fanout->supports_presence(); }

  std::optional<PresenceList> read_list(Instance& i, const std::string& room) {
    std::optional<PresenceList> list;
    bool answered = false;
    i.fanout->read_presence(room, [&](Status s, PresenceList l) {
      answered = true;
      EXPECT_TRUE(s.ok()) << i.id << ": read_presence failed: " << s.message();
      if (s.ok()) list = std::move(l);
    });
    EXPECT_FALSE(answered) << "read_presence must answer on the executor, never inline";
    EXPECT_TRUE(run_until([&] { return answered; }, std::chrono::seconds(10))) << "read_presence did not answer";
    return list;
  }

  static bool lists(const PresenceList& list, const PresenceMember& m) {
    return std::find(list.members.begin(), list.members.end(), m) != list.members.end();
  }

  /// An integer key of the plugin's config, when its schema has one.
  std::optional<std::int64_t> config_int(const std::string& key) {
    if (!settings().schema.find(key)) return std::nullopt;
    return config_for_case(tag_).get_int(key);
  }

  std::string tag_;
  std::vector<std::string> rooms_;
  std::vector<std::unique_ptr<Instance>> instances_;
  Instance* a_ = nullptr;
  Instance* b_ = nullptr;
  std::shared_ptr<void> ticker_;
};

void FanoutConformance::EveryMessageReachesEveryInstanceOnce() {
  constexpr std::int64_t kPerPublisher = 500;
  std::map<std::string, std::vector<MessagePtr>> sent;
  const auto t0 = Clock::now();
  publish(all(), kPerPublisher, 50, sent);
  const bool arrived = run_until([&] { return all_arrived(sent); }, std::chrono::seconds(30));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  run_for(milliseconds(500));  // duplicates would show up here
  EXPECT_TRUE(arrived) << "not every message arrived within 30 s: " << counts();

  std::size_t deliveries = 0;
  for (auto& receiver : instances_) {
    SCOPED_TRACE("receiver " + receiver->id);
    std::set<std::string> expected_from;
    for (Instance* s : senders_heard_by(*receiver)) expected_from.insert(s->id);
    std::map<MessageId, int> seen;
    std::size_t unexpected = 0;
    for (const auto& m : receiver->recorder.messages) {
      if (!expected_from.contains(m->origin)) ++unexpected;
      ++seen[m->id];
    }
    EXPECT_EQ(unexpected, 0u) << "messages arrived from an instance they must not reach"
                              << (settings().single_instance ? " (--single-instance: messages do not cross instances)"
                                                             : "");
    std::size_t missing = 0, duplicated = 0;
    for (const auto& origin : expected_from)
      for (const auto& m : sent[origin]) {
        const auto it = seen.find(m->id);
        if (it == seen.end()) ++missing;
        else if (it->second > 1) ++duplicated;
      }
    EXPECT_EQ(missing, 0u) << "messages never delivered (expected " << expected_count(*receiver, sent) << ")";
    EXPECT_EQ(duplicated, 0u) << "messages delivered more than once";
    EXPECT_EQ(receiver->recorder.messages.size(), expected_count(*receiver, sent));
    deliveries += receiver->recorder.messages.size();
  }
  measured("deliveries_ms", ms,
           std::to_string(2 * kPerPublisher) + " messages published, " + std::to_string(deliveries) +
               " deliveries in " + std::to_string(ms) + " ms");
}

void FanoutConformance::OnePublishersMessagesArriveInOrder() {
  constexpr std::int64_t kPerPublisher = 1000;
  std::map<std::string, std::vector<MessagePtr>> sent;
  publish(all(), kPerPublisher, 200, sent);  // bursts of 200 per publisher
  EXPECT_TRUE(run_until([&] { return all_arrived(sent); }, std::chrono::seconds(30)))
      << "not every message arrived within 30 s: " << counts();
  run_for(milliseconds(300));
  for (auto& receiver : instances_) {
    SCOPED_TRACE("receiver " + receiver->id);
    // Per publisher and room: the order published (the promise clients rely on).
    std::map<std::pair<std::string, std::string>, std::int64_t> last;
    std::size_t out_of_order = 0;
    std::string first_problem;
    for (const auto& m : receiver->recorder.messages) {
      const std::int64_t seq = seq_of(*m);
      auto [it, fresh] = last.try_emplace({m->origin, m->room}, seq);
      if (!fresh) {
        if (seq <= it->second) {
          if (first_problem.empty())
            first_problem = "from " + m->origin + " in " + m->room + ": #" + std::to_string(seq) + " after #" +
                            std::to_string(it->second);
          ++out_of_order;
        }
        it->second = std::max(it->second, seq);
      }
    }
    EXPECT_EQ(out_of_order, 0u) << "messages of one publisher in one room arrived out of order; first: "
                                << first_problem;
    EXPECT_EQ(receiver->recorder.messages.size(), expected_count(*receiver, sent));
  }
}

void FanoutConformance::PayloadsAndFieldsArriveByteForByte() {
  std::vector<std::string> payloads;
  for (int byte = 0; byte < 256; ++byte) payloads.emplace_back(1, static_cast<char>(byte));  // every byte alone
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{255}, std::size_t{256}, std::size_t{1000},
                           std::size_t{4096}, std::size_t{16384}, settings().max_payload - 1, settings().max_payload})
    if (size <= settings().max_payload) payloads.push_back(pattern(size, size));
  payloads.push_back(std::string("\0\0\0", 3));
  payloads.push_back(std::string(1000, '\xff'));
  payloads.push_back("\xc3\x28 not UTF-8 \xa0\xa1 \xf0\x28\x8c\x28");

  std::vector<MessagePtr> sent;
  std::int64_t seq = 0;
  for (const auto& payload : payloads) {
    auto m = std::make_shared<Message>();
    m->id = MessageId::generate();
    m->room = rooms_[static_cast<std::size_t>(seq % kRooms)];
    m->sender = "s\xc3\xa9nder \xf0\x9f\x98\x80 'q' \"dq\" \\ %_ #" + std::to_string(seq);
    m->payload = payload;
    m->timestamp_ms = 1700000000000 + seq;  // distinct, not "now": a fanout must not restamp
    m->origin = a_->id;
    m->headers = {{std::string(kTagHeader), tag_},
                  {std::string(kSeqHeader), std::to_string(seq)},
                  {"empty", ""},
                  {"", "empty key"},
                  {"utf-8 \xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "\xf0\x9f\x8e\x89 value"},
                  {"binary", std::string("\0\x01\xff\x80", 4)},
                  {"repeated", "1"},
                  {"repeated", "2"}};
    sent.push_back(m);
    a_->fanout->publish(m);
    ++seq;
    if (seq % 20 == 0) run_for(milliseconds(1));
  }
  std::vector<Instance*> receivers;
  for (auto& i : instances_)
    if (!settings().single_instance || i.get() == a_) receivers.push_back(i.get());
  EXPECT_TRUE(run_until(
      [&] {
        return std::all_of(receivers.begin(), receivers.end(),
                           [&](Instance* r) { return r->recorder.messages.size() >= sent.size(); });
      },
      std::chrono::seconds(30)))
      << "not every message arrived within 30 s: " << counts() << " of " << sent.size();
  run_for(milliseconds(300));

  std::size_t bytes = 0;
  for (Instance* receiver : receivers) {
    SCOPED_TRACE("receiver " + receiver->id);
    std::map<MessageId, MessagePtr> got;
    for (const auto& m : receiver->recorder.messages) got.emplace(m->id, m);
    EXPECT_EQ(receiver->recorder.messages.size(), sent.size());
    for (const auto& want : sent) {
      const auto it = got.find(want->id);
      if (it == got.end()) {
        ADD_FAILURE() << "message #" << seq_of(*want) << " (payload of " << want->payload.size()
                      << " bytes) never arrived";
        continue;
      }
      const Message& m = *it->second;
      EXPECT_EQ(m.room, want->room);
      EXPECT_EQ(m.sender, want->sender);
      EXPECT_EQ(m.origin, want->origin);
      EXPECT_EQ(m.timestamp_ms, want->timestamp_ms) << "the timestamp must travel as it is";
      EXPECT_EQ(m.headers, want->headers) << "headers (order, empty keys and values, binary values) must travel as "
                                             "they are";
      EXPECT_TRUE(m.payload == want->payload)
          << "payload of message #" << seq_of(*want) << ": " << describe_difference(m.payload, want->payload);
      bytes += m.payload.size();
    }
  }
  std::cout << "[ CHECKED  ] " << sent.size() << " messages per receiver, " << bytes
            << " payload bytes compared, largest payload " << settings().max_payload << " bytes" << std::endl;
}

/// Publishes from every instance every 20 ms in one room, numbering each
/// instance's messages.
struct Ticker {
  boost::asio::steady_timer timer;
  std::vector<Instance*> from;
  std::function<MessagePtr(Instance&, std::int64_t)> make;
  std::int64_t seq = 0;
  bool running = true;

  Ticker(boost::asio::io_context& io, std::vector<Instance*> instances,
         std::function<MessagePtr(Instance&, std::int64_t)> maker)
      : timer(io), from(std::move(instances)), make(std::move(maker)) {
    tick();
  }
  ~Ticker() {
    running = false;
    timer.cancel();
  }
  void tick() {
    for (Instance* i : from) i->fanout->publish(make(*i, seq));
    ++seq;
    timer.expires_after(milliseconds(20));
    timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec && running) tick();
    });
  }
};

void FanoutConformance::DeliveryResumesAfterTheServerRestarts() {
  if (!settings().has_outage()) GTEST_SKIP() << no_outage_commands();
  auto ticker = std::make_shared<Ticker>(io_, all(), [this](Instance& i, std::int64_t seq) {
    return make(i, rooms_[0], seq, "tick " + std::to_string(seq));
  });
  ticker_ = ticker;
  // Every receiver hears every expected sender above `seq`.
  auto delivered_after = [&](std::int64_t seq) {
    for (auto& receiver : instances_)
      for (Instance* sender : senders_heard_by(*receiver)) {
        const auto& ms = receiver->recorder.messages;
        if (std::none_of(ms.rbegin(), ms.rend(),
                         [&](const MessagePtr& m) { return m->origin == sender->id && seq_of(*m) > seq; }))
          return false;
      }
    return true;
  };
  ASSERT_TRUE(run_until([&] { return delivered_after(5); }, std::chrono::seconds(10)))
      << "messages did not flow before the outage: " << counts();

  begin_outage();
  if (HasFatalFailure()) return;
  const std::int64_t seq_at_outage = ticker->seq;
  run_for(milliseconds(1000));  // the instances notice and keep publishing
  ASSERT_TRUE(end_outage()) << "--outage-end '" << settings().outage_end << "' failed";
  const std::int64_t seq_at_back = ticker->seq;
  const auto t0 = Clock::now();
  const bool resumed = run_until([&] { return delivered_after(seq_at_back); }, std::chrono::seconds(30));
  const auto resumed_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  ASSERT_TRUE(resumed) << "delivery did not resume within 30 s of --outage-end: " << counts();
  measured("resumed_after_restart_ms", resumed_ms,
           "delivery resumed " + std::to_string(resumed_ms) + " ms after the server was back (--outage-end returned)");
  EXPECT_LE(resumed_ms, 5000) << "messages published after the server came back must arrive within 5 s";

  run_for(milliseconds(500));
  ticker->running = false;
  ticker_.reset();
  run_for(milliseconds(500));  // the last ticks land; duplicates would show up here

  for (auto& receiver : instances_) {
    SCOPED_TRACE("receiver " + receiver->id);
    std::map<std::string, std::set<std::int64_t>> seen;
    std::map<std::string, std::int64_t> last;
    std::size_t duplicates = 0, reordered = 0, lost_in_outage = 0;
    for (const auto& m : receiver->recorder.messages) {
      const std::int64_t seq = seq_of(*m);
      if (!seen[m->origin].insert(seq).second) ++duplicates;
      auto [it, fresh] = last.try_emplace(m->origin, seq);
      if (!fresh) {
        if (seq < it->second) ++reordered;
        it->second = std::max(it->second, seq);
      }
    }
    EXPECT_EQ(duplicates, 0u) << "messages were delivered twice across the restart";
    EXPECT_EQ(reordered, 0u) << "one publisher's messages arrived out of order across the restart";
    for (Instance* sender : senders_heard_by(*receiver))
      for (std::int64_t s = seq_at_outage; s < seq_at_back; ++s)
        if (!seen[sender->id].contains(s)) ++lost_in_outage;
    std::cout << "[ OUTAGE   ] " << receiver->id << ": " << lost_in_outage << " of "
              << (seq_at_back - seq_at_outage) * static_cast<std::int64_t>(senders_heard_by(*receiver).size())
              << " messages published during the outage were lost (allowed: the fanout is best-effort)" << std::endl;
  }
}

void FanoutConformance::ReadyWhileMessagesFlow() {
  // SetUp's warm-up proved every subscription works: /readyz must agree.
  for (auto& i : instances_) {
    const Readiness r = i->fanout->readiness();
    EXPECT_TRUE(r.ready) << i->id << " is not ready although its messages flow: " << r.reason;
  }
  std::map<std::string, std::vector<MessagePtr>> sent;
  publish(all(), 20, 20, sent);
  EXPECT_TRUE(run_until([&] { return all_arrived(sent); }, std::chrono::seconds(10))) << counts();
  for (auto& i : instances_)
    EXPECT_TRUE(i->fanout->readiness().ready) << i->id << ": " << i->fanout->readiness().reason;
}

void FanoutConformance::ARoomDeclaredAfterStartIsDelivered() {
  // As a client joining a room no one on its instance was in yet.
  const std::string late = "conf-" + tag_ + "-late";
  for (auto& i : instances_) i->fanout->set_room_interest(late, true);
  auto heard_all = [&] {
    for (auto& receiver : instances_)
      for (Instance* sender : senders_heard_by(*receiver))
        if (!receiver->recorder.probes.contains(sender->id + "|" + late + "|late")) return false;
    return true;
  };
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!heard_all() && Clock::now() < deadline) {
    for (auto& sender : instances_) {
      auto probe = std::const_pointer_cast<Message>(make(*sender, late, -1, ""));
      probe->headers.emplace_back(std::string(kProbeHeader), "late");
      sender->fanout->publish(probe);
    }
    run_until(heard_all, milliseconds(100));
  }
  ASSERT_TRUE(heard_all()) << "a room declared with set_room_interest() after start() was not delivered within 20 s";

  std::map<std::string, std::vector<MessagePtr>> sent;
  for (std::int64_t seq = 0; seq < 50; ++seq)
    for (auto& i : instances_) {
      auto m = make(*i, late, seq, "late " + std::to_string(seq));
      sent[i->id].push_back(m);
      i->fanout->publish(m);
    }
  EXPECT_TRUE(run_until([&] { return all_arrived(sent); }, std::chrono::seconds(10))) << counts();
  run_for(milliseconds(200));  // duplicates would show up here
  for (auto& i : instances_)
    EXPECT_EQ(i->recorder.messages.size(), expected_count(*i, sent)) << i->id << ": each message once";
}

void FanoutConformance::AStoppedInstanceReceivesNothingMore() {
  auto stopped = std::make_shared<bool>(false);
  a_->fanout->stop([stopped] { *stopped = true; });
  ASSERT_TRUE(run_until([&] { return *stopped; }, std::chrono::seconds(10))) << "stop() must call its completion";
  run_for(milliseconds(100));  // what was already on its way
  const std::size_t a_had = a_->recorder.messages.size();

  std::map<std::string, std::vector<MessagePtr>> sent;
  publish({b_}, 50, 50, sent);
  EXPECT_TRUE(
      run_until([&] { return b_->recorder.messages.size() >= expected_count(*b_, sent); }, std::chrono::seconds(10)))
      << "the instance still running stopped receiving: " << counts();
  run_for(milliseconds(300));
  EXPECT_EQ(a_->recorder.messages.size(), a_had) << "a stopped instance must not deliver";
  a_->fanout.reset();  // stopped already: TearDown leaves it alone
  run_for(milliseconds(20));
}

void FanoutConformance::PresenceJoinsAndLeavesReachEveryInstanceOnce() {
  if (!keeps_presence()) GTEST_SKIP() << "the plugin keeps no presence (supports_presence() is false)";
  const std::string& room = rooms_[0];
  const PresenceMember ma{"user-a", "conn-a", a_->id}, mb{"user-b", "conn-b", b_->id};
  a_->fanout->presence_join(room, ma);
  b_->fanout->presence_join(room, mb);
  a_->fanout->presence_join(room, ma);  // known already: not reported again
  auto joined = [&](Instance& receiver, const PresenceMember& m) {
    return receiver.recorder.count(room, PresenceChange::join, m) > 0;
  };
  // Who hears what: every instance hears both, or each only itself.
  auto all_heard = [&] {
    for (auto& r : instances_)
      for (Instance* s : senders_heard_by(*r))
        if (!joined(*r, s == a_ ? ma : mb)) return false;
    return true;
  };
  const auto t0 = Clock::now();
  ASSERT_TRUE(run_until(all_heard, std::chrono::seconds(10))) << "joins did not reach every instance within 10 s";
  const auto join_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  measured("presence_join_ms", join_ms, "joins reported to every instance in " + std::to_string(join_ms) + " ms");
  run_for(milliseconds(300));  // duplicates would show up here
  for (auto& r : instances_)
    for (Instance* s : senders_heard_by(*r))
      EXPECT_EQ(r->recorder.count(room, PresenceChange::join, s == a_ ? ma : mb), 1u)
          << r->id << ": each join is reported once";

  for (auto& r : instances_) {
    auto list = read_list(*r, room);
    ASSERT_TRUE(list);
    const std::size_t expected = senders_heard_by(*r).size();
    EXPECT_EQ(list->total, expected) << r->id << "'s list of " << room;
    EXPECT_EQ(list->members.size(), expected);
    for (Instance* s : senders_heard_by(*r)) EXPECT_TRUE(lists(*list, s == a_ ? ma : mb)) << r->id;
  }

  a_->fanout->presence_leave(room, ma);
  a_->fanout->presence_leave(room, PresenceMember{"nobody", "never-joined", a_->id});  // not reported
  auto left = [&] {
    for (auto& r : instances_)
      if (!settings().single_instance || r.get() == a_)
        if (r->recorder.count(room, PresenceChange::leave, ma) == 0) return false;
    return true;
  };
  ASSERT_TRUE(run_until(left, std::chrono::seconds(10))) << "a leave did not reach every instance within 10 s";
  run_for(milliseconds(300));
  for (auto& r : instances_) {
    EXPECT_LE(r->recorder.count(room, PresenceChange::leave, ma), 1u) << r->id << ": each leave is reported once";
    for (const auto& [rm, e] : r->recorder.presence)
      EXPECT_NE(e.member.connection, "never-joined") << "a leave of a member never joined must not be reported";
  }
  auto list = read_list(*b_, room);
  ASSERT_TRUE(list);
  EXPECT_FALSE(lists(*list, ma)) << "a member that left is still listed";
  EXPECT_EQ(list->total, 1u) << "only b's member is left";
  b_->fanout->presence_leave(room, mb);
}

void FanoutConformance::PresenceListIsBoundedAndCountsTheRest() {
  if (!keeps_presence()) GTEST_SKIP() << "the plugin keeps no presence (supports_presence() is false)";
  const std::size_t bound = static_cast<std::size_t>(config_int("max_presence_per_room").value_or(20));
  const std::size_t joins = bound + 7;
  if (joins > 20000) GTEST_SKIP() << "max_presence_per_room is " << bound << ": too many members to join in a test";
  const std::string& room = rooms_[1];
  for (std::size_t i = 0; i < joins; ++i) {
    a_->fanout->presence_join(room, {"u" + std::to_string(i), "c" + std::to_string(i), a_->id});
    if (i % 200 == 0) run_for(milliseconds(1));
  }
  for (auto& r : instances_) {
    if (settings().single_instance && r.get() != a_) continue;
    ASSERT_TRUE(run_until(
        [&] {
          return std::count_if(r->recorder.presence.begin(), r->recorder.presence.end(), [&](const auto& e) {
                   return e.first == room && e.second.change == PresenceChange::join;
                 }) == static_cast<std::ptrdiff_t>(joins);
        },
        std::chrono::seconds(20)))
        << r->id << " did not hear all " << joins << " joins within 20 s";
    auto list = read_list(*r, room);
    ASSERT_TRUE(list);
    EXPECT_EQ(list->total, joins) << r->id << ": the count includes the members beyond the bound";
    EXPECT_LE(list->members.size(), bound) << r->id << ": the list names at most max_presence_per_room";
    EXPECT_EQ(list->members.size(), std::min(joins, bound));
  }
  for (std::size_t i = 0; i < joins; ++i)
    a_->fanout->presence_leave(room, {"u" + std::to_string(i), "c" + std::to_string(i), a_->id});
  run_for(milliseconds(200));
}

void FanoutConformance::ADeadInstancesMembersLeaveWithinTheTTL() {
  if (!keeps_presence()) GTEST_SKIP() << "the plugin keeps no presence (supports_presence() is false)";
  if (settings().single_instance) GTEST_SKIP() << "--single-instance: no other instance to outlive";
  const auto ttl = milliseconds(config_int("presence_ttl_ms").value_or(15000));
  if (ttl > std::chrono::seconds(20))
    GTEST_SKIP() << "presence TTL of " << ttl.count() << " ms: too long to wait for in a test (set presence_ttl_ms)";
  const std::string& room = rooms_[2];
  const PresenceMember ma{"user-a", "conn-a2", a_->id};
  a_->fanout->presence_join(room, ma);
  const std::string c_id = "conf-c-" + tag_;
  const auto mc = member_process_members(c_id);
  MemberProcess c(c_id, tag_, room);
  ASSERT_TRUE(c.started()) << "the member process did not start: " << c.error();
  ASSERT_TRUE(run_until([&] { return c.ready(); }, std::chrono::seconds(15)))
      << "the member process did not join its members within 15 s (its output is above)";
  auto heard = [&](PresenceChange change) {
    for (Instance* r : {a_, b_})
      for (const auto& m : mc)
        if (r->recorder.count(room, change, m) == 0) return false;
    return true;
  };
  ASSERT_TRUE(run_until([&] { return heard(PresenceChange::join); }, std::chrono::seconds(10)))
      << "the joins of the instance about to die did not reach the others";
  for (Instance* r : {a_, b_}) {
    auto list = read_list(*r, room);
    ASSERT_TRUE(list);
    EXPECT_EQ(list->total, 3u) << r->id << " lists a's member and the other process's two";
  }

  ASSERT_TRUE(c.kill()) << "the member process died before it was killed";
  const auto t0 = Clock::now();
  const bool gone = run_until([&] { return heard(PresenceChange::leave); }, ttl * 2 + std::chrono::seconds(5));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  ASSERT_TRUE(gone) << "the killed instance's members did not leave within " << (ttl * 2).count() << " ms + 5 s";
  measured("presence_expired_after_kill_ms", ms,
           "a SIGKILLed instance's members left every list " + std::to_string(ms) + " ms after it died (presence TTL " +
               std::to_string(ttl.count()) + " ms)");
  EXPECT_LE(ms, (ttl + ttl / 2).count()) << "members of a dead instance must leave within about the TTL";
  run_for(milliseconds(300));  // duplicates would show up here
  for (Instance* r : {a_, b_}) {
    for (const auto& m : mc)
      EXPECT_EQ(r->recorder.count(room, PresenceChange::leave, m), 1u)
          << r->id << ": one expiry, reported once, however many instances notice it";
    auto list = read_list(*r, room);
    ASSERT_TRUE(list);
    for (const auto& m : mc) EXPECT_FALSE(lists(*list, m)) << r->id << " still lists the dead instance's member";
    EXPECT_TRUE(lists(*list, ma)) << r->id << ": a live instance's member must stay (its refreshes keep it)";
    EXPECT_EQ(list->total, 1u) << r->id;
    EXPECT_EQ(r->recorder.count(room, PresenceChange::leave, ma), 0u) << "a live member must not expire";
  }
  a_->fanout->presence_leave(room, ma);
}

void FanoutConformance::AStoppedInstancesMembersLeaveAtOnce() {
  if (!keeps_presence()) GTEST_SKIP() << "the plugin keeps no presence (supports_presence() is false)";
  if (settings().single_instance) GTEST_SKIP() << "--single-instance: no other instance to tell";
  const std::string& room = rooms_[3];
  const PresenceMember ma{"user-a", "conn-a3", a_->id};
  a_->fanout->presence_join(room, ma);
  ASSERT_TRUE(
      run_until([&] { return b_->recorder.count(room, PresenceChange::join, ma) == 1; }, std::chrono::seconds(10)))
      << "b did not hear a's member join";

  auto stopped = std::make_shared<bool>(false);
  const auto t0 = Clock::now();
  a_->fanout->stop([stopped] { *stopped = true; });
  ASSERT_TRUE(run_until([&] { return *stopped && b_->recorder.count(room, PresenceChange::leave, ma) == 1; },
                        std::chrono::seconds(5)))
      << "a stopping instance did not say within 5 s that its members left";
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  measured("presence_left_on_stop_ms", ms,
           "a stopping instance's member left the other's list " + std::to_string(ms) + " ms after stop()");
  if (const auto ttl = config_int("presence_ttl_ms")) {
    EXPECT_LT(ms, *ttl / 2) << "the members of a stopping instance must be reported left at once, not expire";
  }
  auto list = read_list(*b_, room);
  ASSERT_TRUE(list);
  EXPECT_FALSE(lists(*list, ma)) << "b still lists the stopped instance's member";
  a_->fanout.reset();  // stopped already: TearDown leaves it alone
  run_for(milliseconds(20));
}

}  // namespace

int run_fanout_member_process(const std::string& spec) {
  // "<fd>|<instance id>|<case tag>|<room>" (MemberProcess).
  std::vector<std::string> parts;
  std::size_t from = 0;
  for (std::size_t bar; (bar = spec.find('|', from)) != std::string::npos; from = bar + 1)
    parts.push_back(spec.substr(from, bar - from));
  parts.push_back(spec.substr(from));
  if (parts.size() != 4) return 2;
  const int ready_fd = std::atoi(parts[0].c_str());
  const std::string &id = parts[1], &tag = parts[2], &room = parts[3];
  boost::asio::io_context io;
  Instance c(io, id);
  c.recorder.tag = tag;
  std::string error;
  c.fanout = create_instance<Fanout>(config_for_case(tag), c.context, error);
  if (!c.fanout) {
    std::cerr << "member process: create() failed: " << error << std::endl;
    return 3;
  }
  if (const Status started = c.fanout->start(c.recorder); !started.ok()) {
    std::cerr << "member process: start() failed: " << started.message() << std::endl;
    return 4;
  }
  c.fanout->set_room_interest(room, true);
  if (!nudge::testing::run_until(
          io, [&] { return c.fanout->readiness().ready; }, std::chrono::seconds(10))) {
    std::cerr << "member process: not ready within 10 s: " << c.fanout->readiness().reason << std::endl;
    return 5;
  }
  for (const auto& m : member_process_members(id)) c.fanout->presence_join(room, m);
  nudge::testing::run_for(io, milliseconds(100));
  if (::write(ready_fd, "r", 1) != 1) return 6;
  for (;;) io.run_for(std::chrono::seconds(1));  // until SIGKILLed
}

void register_fanout_cases() {
  const char* suite = "FanoutConformance";
  register_case<FanoutConformance>(suite, "EveryMessageReachesEveryInstanceOnce",
                                   &FanoutConformance::EveryMessageReachesEveryInstanceOnce, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "OnePublishersMessagesArriveInOrder",
                                   &FanoutConformance::OnePublishersMessagesArriveInOrder, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "PayloadsAndFieldsArriveByteForByte",
                                   &FanoutConformance::PayloadsAndFieldsArriveByteForByte, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "ReadyWhileMessagesFlow", &FanoutConformance::ReadyWhileMessagesFlow,
                                   __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "ARoomDeclaredAfterStartIsDelivered",
                                   &FanoutConformance::ARoomDeclaredAfterStartIsDelivered, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "AStoppedInstanceReceivesNothingMore",
                                   &FanoutConformance::AStoppedInstanceReceivesNothingMore, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "PresenceJoinsAndLeavesReachEveryInstanceOnce",
                                   &FanoutConformance::PresenceJoinsAndLeavesReachEveryInstanceOnce, __FILE__,
                                   __LINE__);
  register_case<FanoutConformance>(suite, "PresenceListIsBoundedAndCountsTheRest",
                                   &FanoutConformance::PresenceListIsBoundedAndCountsTheRest, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "ADeadInstancesMembersLeaveWithinTheTTL",
                                   &FanoutConformance::ADeadInstancesMembersLeaveWithinTheTTL, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "AStoppedInstancesMembersLeaveAtOnce",
                                   &FanoutConformance::AStoppedInstancesMembersLeaveAtOnce, __FILE__, __LINE__);
  register_case<FanoutConformance>(suite, "DeliveryResumesAfterTheServerRestarts",
                                   &FanoutConformance::DeliveryResumesAfterTheServerRestarts, __FILE__, __LINE__);
}

}  // namespace nudge::conformance
