#pragma once

// What every conformance suite shares: the plugin under test (loaded once by
// main.cpp through the runtime's plugin loader), its config, the outage
// commands, and helpers to create instances and run shell commands while the
// event loop keeps running.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "engine/plugin_registry.hpp"
#include "nudge/sdk.hpp"
#include "nudge/sdk/testing.hpp"

namespace nudge::conformance {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// The run's settings, filled by main() before any test runs; read-only after.
struct Settings {
  PluginKind kind = PluginKind::fanout;
  std::shared_ptr<runtime::LoadedPlugin> plugin;
  ConfigSchema schema;
  /// Typed values from --set plus the ones the suite generated (table, path).
  std::map<std::string, ConfigValue> overrides;
  /// Keys the suite generates per test case when the user did not set them
  /// (the log's `topic` and `group_id`): key -> base name.
  std::map<std::string, std::string> per_case;
  bool single_instance = false;
  std::size_t max_payload = 65536;
  std::string outage_begin;
  std::string outage_end;
  /// Set when --require-server did not answer: every case skips with this.
  std::string unreachable;
  /// host:port of --require-server, to tell whether an outage took effect.
  std::string server_host;
  std::uint16_t server_port = 0;
  /// How soon a plugin must notice, without traffic, that its server went away or came back.
  milliseconds readiness_within{5000};
  /// A temporary database file the suite made up (removed at exit).
  std::filesystem::path temp_file;
  /// Unique per run: names rooms, topics and tags so runs never cross.
  std::string run_id;
  /// The command line without GoogleTest's flags, to run this executable
  /// again as a helper process (run_fanout_member_process).
  std::vector<std::string> arguments;

  bool has_outage() const { return !outage_begin.empty() && !outage_end.empty(); }
};

Settings& settings();

/// The plugin's Config for one test case (`case_tag` names per-case topics).
/// Fails the test (and returns an empty Config) when the schema refuses it.
Config config_for_case(const std::string& case_tag);

/// As above with `replaced` keys taking the place of the run's overrides.
Config config_for_case(const std::string& case_tag, const std::map<std::string, ConfigValue>& replaced);

/// The run's string overrides that name the server (--require-server's
/// host:port), now naming 127.0.0.1:`port` instead: how a case puts a proxy
/// between the plugin and its server. Empty when no override names it.
std::map<std::string, ConfigValue> overrides_naming_server_at(std::uint16_t port);

/// Creates an instance of the plugin under test through its descriptor, as the
/// runtime does. On failure returns null and sets `error`.
template <class Interface>
std::unique_ptr<Interface> create_instance(const Config& config, Context& context, std::string& error) {
  static_assert(std::is_base_of_v<Plugin, Interface>);
  Plugin* made = settings().plugin->descriptor->create(config, context, &error);
  if (!made) {
    if (error.empty()) error = "create() returned null without saying why";
    return nullptr;
  }
  // The loader checked the descriptor's kind; the export macro guarantees the
  // object derives from that kind's interface.
  return std::unique_ptr<Interface>(static_cast<Interface*>(made));
}

/// True when something accepts a TCP connection at host:port within `timeout`.
bool tcp_reachable(const std::string& host, std::uint16_t port, milliseconds timeout);

/// A shell command (/bin/sh -c) on a thread of its own, so the caller keeps
/// running the event loop meanwhile (a plugin must see its server go away
/// while it is running, not while its loop is frozen).
class BackgroundCommand {
 public:
  BackgroundCommand(std::string label, std::string command);
  ~BackgroundCommand();
  BackgroundCommand(const BackgroundCommand&) = delete;
  BackgroundCommand& operator=(const BackgroundCommand&) = delete;

  bool finished() const { return finished_.load(); }
  /// The command's exit status (-1 if it did not exit normally); valid once finished.
  int exit_code() const { return exit_code_.load(); }
  milliseconds took() const;
  /// When the command exited; valid once finished.
  Clock::time_point finished_at() const { return Clock::time_point(Clock::duration(ended_.load())); }
  void wait();

 private:
  std::string label_;
  std::string command_;
  Clock::time_point started_;
  std::atomic<bool> finished_{false};
  std::atomic<int> exit_code_{-1};
  std::atomic<Clock::rep> ended_{0};
  std::thread thread_;
};

/// Runs `command` in the background while running `io`; returns its exit code
/// (or -2 when it did not finish within `timeout`).
int run_command(boost::asio::io_context& io, const std::string& label, const std::string& command,
                milliseconds timeout = std::chrono::seconds(120));

/// The base of every conformance fixture: skips when the required server does
/// not answer, and brings the server back if a case ended mid-outage.
class ConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Runs --outage-begin (the server goes down) while running io_.
  void begin_outage();
  /// Starts --outage-end in the background; wait with outage_end_finished().
  void start_outage_end();
  bool outage_end_finished() const { return outage_end_ && outage_end_->finished(); }
  /// When --outage-end exited (the server is back); valid once it finished.
  Clock::time_point outage_end_finished_at() const { return outage_end_->finished_at(); }
  /// Runs --outage-end to completion while running io_; true when it exited 0.
  bool end_outage();

  /// A name unique to this run and this test case, for rooms and tags.
  std::string case_tag() const;

  template <class Predicate>
  bool run_until(Predicate done, milliseconds timeout) {
    return nudge::testing::run_until(io_, std::move(done), timeout);
  }
  void run_for(milliseconds duration) { nudge::testing::run_for(io_, duration); }

  boost::asio::io_context io_;

 private:
  bool outage_open_ = false;
  std::unique_ptr<BackgroundCommand> outage_end_;
};

/// Why an outage case skips when no outage commands were given.
std::string no_outage_commands();

/// Registers a test case whose body is `Fixture::*body`, so only the chosen
/// kind's cases exist in a run (gtest filters and listing work as usual).
template <class Fixture>
void register_case(const char* suite, const char* name, void (Fixture::*body)(), const char* file, int line) {
  class Case final : public Fixture {
   public:
    explicit Case(void (Fixture::*b)()) : body_(b) {}
    void TestBody() override { (this->*body_)(); }

   private:
    void (Fixture::*body_)();
  };
  ::testing::RegisterTest(suite, name, nullptr, nullptr, file, line, [body]() -> Fixture* { return new Case(body); });
}

void register_fanout_cases();

/// The body of a helper process of the fanout suite (a third instance that is
/// SIGKILLed), run instead of the tests when main() finds its variable set;
/// returns only on an error (its exit code), else runs until killed.
int run_fanout_member_process(const std::string& spec);
void register_sink_cases();
void register_log_cases();

// Messages ---------------------------------------------------------------

/// Header carrying the tag of the case that made a message; messages of other
/// runs (a shared channel, topic or table) are told apart by it.
inline constexpr std::string_view kTagHeader = "conformance-tag";
inline constexpr std::string_view kSeqHeader = "conformance-seq";

/// The value of header `key`, or null.
const std::string* header(const Message& message, std::string_view key);
/// The integer in header kSeqHeader, or -1.
std::int64_t seq_of(const Message& message);
/// Unix time in milliseconds, now.
std::int64_t now_ms();
/// A deep copy (a new Message object with the same fields).
MessagePtr copy_of(const Message& message);
/// "size N, first difference at byte K (0xAA != 0xBB)" for failure messages.
std::string describe_difference(const std::string& got, const std::string& want);
/// Payload of `size` bytes cycling through all 256 byte values from `salt`.
std::string pattern(std::size_t size, std::size_t salt = 0);
/// Prints a figure ("[ MEASURED ] ...") and records it in the XML report.
void measured(const std::string& key, std::int64_t value, const std::string& sentence);

}  // namespace nudge::conformance
