#include "cli/scaffold/scaffold.hpp"

#include <fstream>
#include <map>
#include <regex>
#include <stdexcept>

namespace nudge::runtime {

namespace {

// Templates: @name@ the plugin's name, @kind@ its kind, @Kind@ the SDK's
// interface (Sink), @Class@ the class (JsonlSink), @NAME@ the name in capitals.

constexpr const char* kCMakeLists = R"T(# The @name@ @kind@ plugin for Nudge, built against an installed Nudge:
#
#   cmake -S . -B build -DCMAKE_PREFIX_PATH=<nudge prefix, e.g. /usr>
#   cmake --build build && ctest --test-dir build
#   nudge run pipeline.toml --plugin-dir build/plugins
cmake_minimum_required(VERSION 3.25)
project(nudge_@name@_@kind@ LANGUAGES CXX)

find_package(Nudge 0.1 REQUIRED)
nudge_add_plugin(NAME @name@ KIND @kind@ SOURCES src/@name@_@kind@.cpp src/plugin.cpp)

enable_testing()
find_package(GTest REQUIRED)
include(GoogleTest)
add_executable(@name@_@kind@_test test/@name@_@kind@_test.cpp src/@name@_@kind@.cpp)
target_compile_features(@name@_@kind@_test PRIVATE cxx_std_20)
target_include_directories(@name@_@kind@_test PRIVATE src)
target_link_libraries(@name@_@kind@_test PRIVATE Nudge::sdk GTest::gtest_main)
gtest_discover_tests(@name@_@kind@_test)
)T";

constexpr const char* kPluginCpp = R"T(// The plugin's registration: the descriptor the runtime reads (name, kind,
// SDK ABI version) and the factory it creates instances with.
#include "@name@_@kind@.hpp"

NUDGE_PLUGIN(@name@_plugin::@Class@, "@name@", "0.1.0", "The @name@ @kind@ (describe it here)")
)T";

constexpr const char* kReadme = R"T(# `@name@` @kind@

Describe what this @kind@ does, and for whom.

## Configuration

```toml
[@kind@.@name@]
@example@
```

| key | type | default | description |
|---|---|---|---|
@keys@

Unknown keys are errors; `nudge describe @kind@.@name@` prints this table from
the plugin's own schema.

## Build and test

```sh
cmake -S . -B build -DCMAKE_PREFIX_PATH=/usr   # where Nudge is installed
cmake --build build && ctest --test-dir build
nudge plugins --plugin-dir build/plugins       # lists @kind@ @name@
```
)T";

// ---------------------------------------------------------------- per kind

struct KindTemplates {
  const char* header;
  const char* source;
  const char* test;
  const char* example;  ///< the README's TOML table
  const char* keys;     ///< the README's rows of the config reference
};

constexpr const char* kSinkHpp = R"T(#pragma once

#include <nudge/sdk.hpp>

namespace @name@_plugin {

/// The final store, written in batches by the log's consumer. This one keeps
/// a count; replace write() with the store's batch insert (on a
/// nudge::BlockingWorker if its client blocks), idempotent by message id.
class @Class@ final : public nudge::Sink {
 public:
  @Class@(const nudge::Config& config, nudge::Context& context);
  /// The config keys (`nudge describe sink.@name@` prints them).
  static nudge::ConfigSchema schema();

  nudge::Status start() override;
  void write(nudge::BatchPtr batch, nudge::Completion done) override;
  void stop(std::function<void()> done) override;

  std::size_t messages_written() const noexcept { return written_; }

 private:
  nudge::Context& context_;
  std::string label_;
  nudge::Counter& written_metric_;
  std::size_t written_ = 0;
};

}  // namespace @name@_plugin
)T";

constexpr const char* kSinkCpp = R"T(#include "@name@_sink.hpp"

#include <boost/asio/post.hpp>

namespace @name@_plugin {

using namespace nudge;

@Class@::@Class@(const Config& config, Context& context)
    : context_(context),
      label_(config.get_string("label")),
      written_metric_(context.metrics().counter("messages_written", "Messages written")) {}

ConfigSchema @Class@::schema() {
  ConfigSchema s;
  s.string("label", "@name@", "Shown in this plugin's log lines");
  return s;
}

Status @Class@::start() {
  // Connect and create tables here; a failure stops the startup with its message.
  context_.logger().info("sink '", label_, "' started");
  return Status::success();
}

void @Class@::write(BatchPtr batch, Completion done) {
  written_ += batch->size();
  written_metric_.add(batch->size());
  context_.logger().debug("sink '", label_, "' wrote ", batch->size(), " messages (", written_, " in all)");
  // Completions run on the executor, never inside the call.
  boost::asio::post(context_.executor(), [done = std::move(done)] { done(Status::success()); });
}

void @Class@::stop(std::function<void()> done) { done(); }

}  // namespace @name@_plugin
)T";

constexpr const char* kSinkTest = R"T(#include "@name@_sink.hpp"

#include <gtest/gtest.h>

#include <nudge/sdk/testing.hpp>

namespace @name@_plugin {
namespace {

nudge::MessagePtr message(const std::string& text) {
  auto m = std::make_shared<nudge::Message>();
  m->id = nudge::MessageId::generate();
  m->room = "general";
  m->sender = "test";
  m->payload = text;
  return m;
}

TEST(@Class@, WritesABatchAndCompletes) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io);
  @Class@ sink(nudge::testing::make_config(@Class@::schema()), context);
  ASSERT_TRUE(sink.start().ok());
  auto batch = std::make_shared<nudge::Batch>(nudge::Batch{message("a"), message("b"), message("c")});
  EXPECT_TRUE(nudge::testing::write_and_wait(io, sink, batch).ok());
  EXPECT_EQ(sink.messages_written(), 3u);
  EXPECT_TRUE(nudge::testing::stop_and_wait(io, sink));
}

TEST(@Class@, RefusesUnknownKeys) {
  EXPECT_FALSE(nudge::testing::config_errors(@Class@::schema(), {{"lable", std::string("x")}}).empty());
}

}  // namespace
}  // namespace @name@_plugin
)T";

constexpr const char* kSourceHpp = R"T(#pragma once

#include <boost/asio/steady_timer.hpp>

#include <nudge/sdk.hpp>

namespace @name@_plugin {

/// Takes messages in from the outside world. This one publishes a message to
/// `room` every `interval_ms` (a heartbeat); replace the timer with the
/// listener or client your source reads from.
class @Class@ final : public nudge::Source {
 public:
  @Class@(const nudge::Config& config, nudge::Context& context);
  static nudge::ConfigSchema schema();

  nudge::Status start(nudge::Ingress& ingress) override;
  void deliver(const nudge::MessagePtr& message) override;
  void stop_intake() override;
  void stop(std::function<void()> done) override;

  std::size_t messages_acked() const noexcept { return acked_; }
  std::size_t messages_delivered() const noexcept { return delivered_; }

 private:
  void tick();

  nudge::Context& context_;
  std::string room_;
  std::chrono::milliseconds interval_;
  boost::asio::steady_timer timer_;
  nudge::Ingress* ingress_ = nullptr;
  bool open_ = true;
  std::size_t acked_ = 0;
  std::size_t delivered_ = 0;
};

}  // namespace @name@_plugin
)T";

constexpr const char* kSourceCpp = R"T(#include "@name@_source.hpp"

namespace @name@_plugin {

using namespace nudge;

@Class@::@Class@(const Config& config, Context& context)
    : context_(context),
      room_(config.get_string("room")),
      interval_(config.get_int("interval_ms")),
      timer_(context.executor()) {}

ConfigSchema @Class@::schema() {
  ConfigSchema s;
  s.string("room", "general", "Room the messages are published to");
  s.integer("interval_ms", 1000, "Time between two messages").range(1, 3600000);
  return s;
}

Status @Class@::start(Ingress& ingress) {
  ingress_ = &ingress;
  tick();
  return Status::success();
}

void @Class@::tick() {
  timer_.expires_after(interval_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !open_ || !ingress_) return;
    // Backpressure: take the next message in only when the pipeline has room.
    ingress_->when_ready([this] {
      if (!open_ || !ingress_) return;
      auto message = std::make_shared<Message>();
      message->id = MessageId::generate();
      message->room = room_;
      message->sender = "@name@";
      message->payload = "tick";
      message->timestamp_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count();
      message->origin = std::string(context_.instance_id());
      ingress_->publish(std::move(message), [this](Status status) {
        if (status.ok()) ++acked_;
        else context_.logger().warn("a message was not stored: ", status.message());
      });
      tick();
    });
  });
}

void @Class@::deliver(const MessagePtr&) { ++delivered_; }

void @Class@::stop_intake() {
  open_ = false;
  timer_.cancel();
}

void @Class@::stop(std::function<void()> done) {
  stop_intake();
  ingress_ = nullptr;
  done();
}

}  // namespace @name@_plugin
)T";

constexpr const char* kSourceTest = R"T(#include "@name@_source.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>

#include <nudge/sdk/testing.hpp>

namespace @name@_plugin {
namespace {

/// The pipeline as the source sees it: takes every message and acks it.
struct RecordingIngress final : nudge::Ingress {
  explicit RecordingIngress(boost::asio::io_context& io) : io(io) {}
  void publish(nudge::MessagePtr message, nudge::Completion on_durable) override {
    published.push_back(std::move(message));
    boost::asio::post(io, [on_durable = std::move(on_durable)] { on_durable(nudge::Status::success()); });
  }
  void when_ready(std::function<void()> resume) override { boost::asio::post(io, std::move(resume)); }
  void set_room_interest(std::string_view, bool) override {}
  bool has_history() const override { return false; }
  void read_history(nudge::HistoryQuery, nudge::HistoryHandler done) override {
    done(nudge::Status::error(nudge::StatusCode::invalid_argument, "no history"), {});
  }
  boost::asio::io_context& io;
  std::vector<nudge::MessagePtr> published;
};

TEST(@Class@, PublishesMessagesThatGetAcked) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io);
  @Class@ source(nudge::testing::make_config(@Class@::schema(), {{"interval_ms", std::int64_t{5}}}), context);
  RecordingIngress ingress(io);
  ASSERT_TRUE(source.start(ingress).ok());
  ASSERT_TRUE(nudge::testing::run_until(io, [&] { return source.messages_acked() >= 3; }, std::chrono::seconds(10)));
  EXPECT_EQ(ingress.published.front()->room, "general");
  source.stop_intake();
  bool stopped = false;
  source.stop([&] { stopped = true; });
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace @name@_plugin
)T";

constexpr const char* kFanoutHpp = R"T(#pragma once

#include <nudge/sdk.hpp>

namespace @name@_plugin {

/// The real-time bus between instances. This one hands every message back to
/// this instance only (like the `memory` fanout); replace publish() and the
/// receiving side with your bus's client.
class @Class@ final : public nudge::Fanout {
 public:
  @Class@(const nudge::Config& config, nudge::Context& context);
  static nudge::ConfigSchema schema();

  nudge::Status start(nudge::FanoutReceiver& receiver) override;
  void publish(const nudge::MessagePtr& message) override;
  void set_room_interest(std::string_view room, bool interested) override;
  void stop(std::function<void()> done) override;

 private:
  nudge::Context& context_;
  std::string channel_;
  nudge::FanoutReceiver* receiver_ = nullptr;
};

}  // namespace @name@_plugin
)T";

constexpr const char* kFanoutCpp = R"T(#include "@name@_fanout.hpp"

#include <boost/asio/post.hpp>

namespace @name@_plugin {

using namespace nudge;

@Class@::@Class@(const Config& config, Context& context)
    : context_(context), channel_(config.get_string("channel")) {}

ConfigSchema @Class@::schema() {
  ConfigSchema s;
  s.string("channel", "nudge", "Channel of the bus the instances share");
  return s;
}

Status @Class@::start(FanoutReceiver& receiver) {
  receiver_ = &receiver;
  return Status::success();
}

void @Class@::publish(const MessagePtr& message) {
  // Delivered asynchronously, as a real bus would: never inside publish().
  boost::asio::post(context_.executor(), [this, message] {
    if (receiver_) receiver_->on_fanout_message(message);
  });
}

void @Class@::set_room_interest(std::string_view, bool) {}

void @Class@::stop(std::function<void()> done) {
  receiver_ = nullptr;
  done();
}

}  // namespace @name@_plugin
)T";

constexpr const char* kFanoutTest = R"T(#include "@name@_fanout.hpp"

#include <gtest/gtest.h>

#include <nudge/sdk/testing.hpp>

namespace @name@_plugin {
namespace {

struct Received final : nudge::FanoutReceiver {
  void on_fanout_message(nudge::MessagePtr message) override { messages.push_back(std::move(message)); }
  std::vector<nudge::MessagePtr> messages;
};

TEST(@Class@, HandsBackWhatIsPublishedInOrder) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io);
  @Class@ fanout(nudge::testing::make_config(@Class@::schema()), context);
  Received received;
  ASSERT_TRUE(fanout.start(received).ok());
  std::vector<nudge::MessageId> sent;
  for (int i = 0; i < 3; ++i) {
    auto m = std::make_shared<nudge::Message>();
    m->id = nudge::MessageId::generate();
    m->room = "general";
    sent.push_back(m->id);
    fanout.publish(m);
  }
  EXPECT_TRUE(received.messages.empty()) << "delivered inside publish()";
  ASSERT_TRUE(nudge::testing::run_until(io, [&] { return received.messages.size() == 3; }, std::chrono::seconds(5)));
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(received.messages[i]->id, sent[i]);
  bool stopped = false;
  fanout.stop([&] { stopped = true; });
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace @name@_plugin
)T";

constexpr const char* kLogHpp = R"T(#pragma once

#include <deque>

#include <nudge/sdk.hpp>

namespace @name@_plugin {

/// The durable, replayable buffer between ingestion and storage. This one
/// keeps messages in memory (not durable!) and hands them to the consumer in
/// batches, again after a failed batch; replace it with your log's client.
class @Class@ final : public nudge::Log {
 public:
  @Class@(const nudge::Config& config, nudge::Context& context);
  static nudge::ConfigSchema schema();

  nudge::Status start(const nudge::LogStartOptions& options) override;
  void append(const nudge::MessagePtr& message, nudge::Completion done) override;
  void stop(std::function<void()> done) override;

 private:
  /// Hands the oldest messages to the consumer when it is not busy.
  void feed();

  nudge::Context& context_;
  std::size_t max_batch_ = 500;
  nudge::LogConsumer* consumer_ = nullptr;
  std::deque<nudge::MessagePtr> unconsumed_;
  bool batch_in_flight_ = false;
  bool stopping_ = false;
};

}  // namespace @name@_plugin
)T";

constexpr const char* kLogCpp = R"T(#include "@name@_log.hpp"

#include <boost/asio/post.hpp>

namespace @name@_plugin {

using namespace nudge;

@Class@::@Class@(const Config& config, Context& context)
    : context_(context), max_batch_(static_cast<std::size_t>(config.get_int("max_batch"))) {}

ConfigSchema @Class@::schema() {
  ConfigSchema s;
  s.integer("max_batch", 500, "Most messages handed to the consumer at once").range(1, 100000);
  return s;
}

Status @Class@::start(const LogStartOptions& options) {
  consumer_ = options.consumer;
  max_batch_ = std::min(max_batch_, options.max_batch_messages);
  return Status::success();
}

void @Class@::append(const MessagePtr& message, Completion done) {
  unconsumed_.push_back(message);
  // "Stored": ack on the executor, never inside the call.
  boost::asio::post(context_.executor(), [done = std::move(done)] { done(Status::success()); });
  boost::asio::post(context_.executor(), [this] { feed(); });
}

void @Class@::feed() {
  if (!consumer_ || batch_in_flight_ || stopping_ || unconsumed_.empty()) return;
  const std::size_t n = std::min(max_batch_, unconsumed_.size());
  auto batch = std::make_shared<Batch>(unconsumed_.begin(), unconsumed_.begin() + static_cast<std::ptrdiff_t>(n));
  batch_in_flight_ = true;
  consumer_->on_batch(batch, [this, n](Status status) {
    batch_in_flight_ = false;
    // Committed only once the consumer confirmed; a failed batch comes again.
    if (status.ok()) unconsumed_.erase(unconsumed_.begin(), unconsumed_.begin() + static_cast<std::ptrdiff_t>(n));
    boost::asio::post(context_.executor(), [this] { feed(); });
  });
}

void @Class@::stop(std::function<void()> done) {
  stopping_ = true;
  done();
}

}  // namespace @name@_plugin
)T";

constexpr const char* kLogTest = R"T(#include "@name@_log.hpp"

#include <gtest/gtest.h>

#include <nudge/sdk/testing.hpp>

namespace @name@_plugin {
namespace {

/// Fails the first batch, then takes everything.
struct Consumer final : nudge::LogConsumer {
  void on_batch(nudge::BatchPtr batch, nudge::Completion done) override {
    if (failures_left > 0) {
      --failures_left;
      return done(nudge::Status::error(nudge::StatusCode::unavailable, "store down"));
    }
    for (const auto& m : *batch) taken.push_back(m);
    done(nudge::Status::success());
  }
  int failures_left = 1;
  std::vector<nudge::MessagePtr> taken;
};

TEST(@Class@, AcksAppendsAndDeliversEveryMessageAfterAFailedBatch) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io);
  @Class@ log(nudge::testing::make_config(@Class@::schema()), context);
  Consumer consumer;
  nudge::LogStartOptions options;
  options.produce = true;
  options.consumer = &consumer;
  ASSERT_TRUE(log.start(options).ok());
  int acked = 0;
  for (int i = 0; i < 5; ++i) {
    auto m = std::make_shared<nudge::Message>();
    m->id = nudge::MessageId::generate();
    log.append(m, [&](nudge::Status s) { acked += s.ok(); });
  }
  ASSERT_TRUE(nudge::testing::run_until(io, [&] { return acked == 5 && consumer.taken.size() == 5; },
                                        std::chrono::seconds(5)));
  bool stopped = false;
  log.stop([&] { stopped = true; });
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace @name@_plugin
)T";

constexpr const char* kTransformHpp = R"T(#pragma once

#include <nudge/sdk.hpp>

namespace @name@_plugin {

/// Sits between the source and the fanout/log; may change, drop or reject
/// each message. This one rejects messages shorter than `min_length`
/// characters and passes the rest; replace process() with your rule.
class @Class@ final : public nudge::Transform {
 public:
  @Class@(const nudge::Config& config, nudge::Context& context);
  static nudge::ConfigSchema schema();

  void process(nudge::MessagePtr message, nudge::VerdictHandler done) override;
  void stop(std::function<void()> done) override { done(); }

 private:
  std::int64_t min_length_;
  nudge::Counter& rejected_;
};

}  // namespace @name@_plugin
)T";

constexpr const char* kTransformCpp = R"T(#include "@name@_transform.hpp"

namespace @name@_plugin {

using namespace nudge;

@Class@::@Class@(const Config& config, Context& context)
    : min_length_(config.get_int("min_length")),
      rejected_(context.metrics().counter("rejected", "Messages refused for being too short")) {}

ConfigSchema @Class@::schema() {
  ConfigSchema s;
  s.integer("min_length", 1, "Shortest text accepted, in bytes").range(0, 1 << 20);
  return s;
}

void @Class@::process(MessagePtr message, VerdictHandler done) {
  if (static_cast<std::int64_t>(message->payload.size()) < min_length_) {
    rejected_.add();
    // The reason is what the sender reads.
    return done(Verdict::reject("messages need at least " + std::to_string(min_length_) + " characters"));
  }
  done(Verdict::pass(std::move(message)));
}

}  // namespace @name@_plugin
)T";

constexpr const char* kTransformTest = R"T(#include "@name@_transform.hpp"

#include <gtest/gtest.h>

#include <nudge/sdk/testing.hpp>

namespace @name@_plugin {
namespace {

nudge::Verdict decide(@Class@& transform, const std::string& text) {
  auto m = std::make_shared<nudge::Message>();
  m->id = nudge::MessageId::generate();
  m->payload = text;
  std::optional<nudge::Verdict> verdict;
  transform.process(m, [&](nudge::Verdict v) { verdict = std::move(v); });
  EXPECT_TRUE(verdict);
  return verdict.value_or(nudge::Verdict::drop());
}

TEST(@Class@, PassesLongEnoughMessagesAndRejectsOthersWithAReason) {
  boost::asio::io_context io;
  nudge::testing::TestContext context(io);
  @Class@ transform(nudge::testing::make_config(@Class@::schema(), {{"min_length", std::int64_t{3}}}), context);
  EXPECT_EQ(decide(transform, "hello").action, nudge::Verdict::Action::pass);
  const auto refused = decide(transform, "hi");
  EXPECT_EQ(refused.action, nudge::Verdict::Action::reject);
  EXPECT_EQ(refused.reason, "messages need at least 3 characters");
}

}  // namespace
}  // namespace @name@_plugin
)T";

const std::map<std::string, KindTemplates>& kinds() {
  static const std::map<std::string, KindTemplates> k{
      {"sink", {kSinkHpp, kSinkCpp, kSinkTest, "label = \"@name@\"",
                "| `label` | string | `\"@name@\"` | Shown in this plugin's log lines |"}},
      {"source", {kSourceHpp, kSourceCpp, kSourceTest, "room = \"general\"\ninterval_ms = 1000",
                  "| `room` | string | `\"general\"` | Room the messages are published to |\n"
                  "| `interval_ms` | integer | `1000` | Time between two messages (1..3600000) |"}},
      {"fanout", {kFanoutHpp, kFanoutCpp, kFanoutTest, "channel = \"nudge\"",
                  "| `channel` | string | `\"nudge\"` | Channel of the bus the instances share |"}},
      {"transform", {kTransformHpp, kTransformCpp, kTransformTest, "min_length = 1",
                     "| `min_length` | integer | `1` | Shortest text accepted, in bytes (0..1048576) |"}},
      {"log", {kLogHpp, kLogCpp, kLogTest, "max_batch = 500",
               "| `max_batch` | integer | `500` | Most messages handed to the consumer at once (1..100000) |"}},
  };
  return k;
}

std::string camel(const std::string& text) {
  std::string out;
  bool upper = true;
  for (char c : text) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c);
    upper = false;
  }
  return out;
}

std::string fill(std::string text, const ScaffoldRequest& r) {
  const std::map<std::string, std::string> values{
      {"@name@", r.name}, {"@kind@", r.kind}, {"@Kind@", camel(r.kind)}, {"@Class@", camel(r.name) + camel(r.kind)}};
  for (const auto& [key, value] : values)
    for (std::size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size()))
      text.replace(at, key.size(), value);
  return text;
}

}  // namespace

std::vector<std::string> scaffold_problems(const ScaffoldRequest& r) {
  std::vector<std::string> problems;
  if (!std::regex_match(r.name, std::regex("[a-z][a-z0-9_]{0,39}")))
    problems.push_back("the name '" + r.name + "' must start with a letter and hold only a-z, 0-9 and _ (40 at most)");
  if (!kinds().contains(r.kind))
    problems.push_back("--kind must be source, transform, fanout, log or sink" +
                       (r.kind.empty() ? std::string(" (it is required)") : ", not '" + r.kind + "'"));
  std::error_code ec;
  if (std::filesystem::exists(r.dir, ec) && !std::filesystem::is_empty(r.dir, ec))
    problems.push_back("'" + r.dir.string() + "' exists and is not empty; choose another --dir");
  return problems;
}

std::vector<std::filesystem::path> write_plugin_scaffold(const ScaffoldRequest& r) {
  const auto& t = kinds().at(r.kind);
  const std::string stem = r.name + "_" + r.kind;
  const std::vector<std::pair<std::filesystem::path, const char*>> files{
      {"CMakeLists.txt", kCMakeLists},
      {"README.md", kReadme},
      {std::filesystem::path("src") / (stem + ".hpp"), t.header},
      {std::filesystem::path("src") / (stem + ".cpp"), t.source},
      {std::filesystem::path("src") / "plugin.cpp", kPluginCpp},
      {std::filesystem::path("test") / (stem + "_test.cpp"), t.test},
  };
  std::vector<std::filesystem::path> written;
  for (const auto& [relative, text] : files) {
    const auto path = r.dir / relative;
    std::filesystem::create_directories(path.parent_path());
    std::string content = text;
    if (relative == "README.md") {
      content.replace(content.find("@example@"), 9, t.example);
      content.replace(content.find("@keys@"), 6, t.keys);
    }
    std::ofstream out(path);
    out << fill(content, r);
    if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
    written.push_back(relative);
  }
  return written;
}

}  // namespace nudge::runtime
