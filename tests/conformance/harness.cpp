#include "harness.hpp"

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace nudge::conformance {

Settings& settings() {
  static Settings s;
  return s;
}

Config config_for_case(const std::string& case_tag) { return config_for_case(case_tag, {}); }

Config config_for_case(const std::string& case_tag, const std::map<std::string, ConfigValue>& replaced) {
  auto values = settings().overrides;
  for (const auto& [key, value] : replaced) values[key] = value;
  for (const auto& [key, base] : settings().per_case) values[key] = base + "." + case_tag;
  std::string error;
  Config config = nudge::testing::make_config(settings().schema, values, &error);
  EXPECT_EQ(error, "") << "the plugin's schema refuses the config";
  return config;
}

std::map<std::string, ConfigValue> overrides_naming_server_at(std::uint16_t port) {
  std::map<std::string, ConfigValue> named;
  const Settings& s = settings();
  if (s.server_host.empty()) return named;
  const std::string server = s.server_host + ":" + std::to_string(s.server_port);
  const std::string proxy = "127.0.0.1:" + std::to_string(port);
  for (const auto& [key, value] : s.overrides) {
    const auto* text = std::get_if<std::string>(&value);
    if (!text) continue;
    const auto at = text->find(server);
    if (at == std::string::npos) continue;
    std::string through = *text;
    through.replace(at, server.size(), proxy);
    named[key] = std::move(through);
  }
  return named;
}

bool tcp_reachable(const std::string& host, std::uint16_t port, milliseconds timeout) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  bool connected = false;
  bool finished = false;
  boost::asio::ip::tcp::resolver resolver(io);
  boost::system::error_code ec;
  const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return false;
  boost::asio::async_connect(socket, endpoints,
                             [&](const boost::system::error_code& e, const boost::asio::ip::tcp::endpoint&) {
                               connected = !e;
                               finished = true;
                             });
  io.run_for(timeout);
  return finished && connected;
}

BackgroundCommand::BackgroundCommand(std::string label, std::string command)
    : label_(std::move(label)), command_(std::move(command)), started_(Clock::now()) {
  std::cout << "[ COMMAND  ] " << label_ << ": " << command_ << std::endl;
  thread_ = std::thread([this] {
    const int status = std::system(command_.c_str());
    exit_code_ = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    ended_ = Clock::now().time_since_epoch().count();
    finished_ = true;
  });
}

BackgroundCommand::~BackgroundCommand() { wait(); }

void BackgroundCommand::wait() {
  if (thread_.joinable()) thread_.join();
}

milliseconds BackgroundCommand::took() const {
  const Clock::time_point end = finished_ ? Clock::time_point(Clock::duration(ended_.load())) : Clock::now();
  return std::chrono::duration_cast<milliseconds>(end - started_);
}

int run_command(boost::asio::io_context& io, const std::string& label, const std::string& command,
                milliseconds timeout) {
  BackgroundCommand run(label, command);
  if (!nudge::testing::run_until(
          io, [&] { return run.finished(); }, timeout)) {
    std::cout << "[ COMMAND  ] " << label << " did not finish within " << timeout.count() << " ms; waiting for it"
              << std::endl;
    run.wait();
    return -2;
  }
  run.wait();
  std::cout << "[ COMMAND  ] " << label << " exited " << run.exit_code() << " after " << run.took().count() << " ms"
            << std::endl;
  return run.exit_code();
}

void ConformanceTest::SetUp() {
  if (!settings().unreachable.empty()) GTEST_SKIP() << settings().unreachable;
}

void ConformanceTest::TearDown() {
  // A case that failed mid-outage must not leave a shared server down.
  if (outage_open_) {
    if (outage_end_) {
      outage_end_->wait();
    } else {
      std::cout << "[ COMMAND  ] the case ended during the outage; bringing the server back" << std::endl;
      BackgroundCommand(std::string("--outage-end"), settings().outage_end).wait();
    }
    outage_open_ = false;
  }
}

void ConformanceTest::begin_outage() {
  outage_open_ = true;
  const int code = run_command(io_, "--outage-begin", settings().outage_begin);
  ASSERT_EQ(code, 0) << "--outage-begin '" << settings().outage_begin << "' failed";
  if (settings().server_port != 0 && tcp_reachable(settings().server_host, settings().server_port, milliseconds(500)))
    std::cout << "[ WARNING  ] " << settings().server_host << ":" << settings().server_port
              << " still accepts connections after --outage-begin: the outage may not have taken the server down"
              << std::endl;
}

void ConformanceTest::start_outage_end() {
  if (!outage_end_) outage_end_ = std::make_unique<BackgroundCommand>("--outage-end", settings().outage_end);
}

bool ConformanceTest::end_outage() {
  start_outage_end();
  run_until([&] { return outage_end_->finished(); }, std::chrono::seconds(120));
  outage_end_->wait();
  outage_open_ = false;
  std::cout << "[ COMMAND  ] --outage-end exited " << outage_end_->exit_code() << " after "
            << outage_end_->took().count() << " ms" << std::endl;
  return outage_end_->exit_code() == 0;
}

std::string no_outage_commands() {
  return "no --outage-begin/--outage-end commands were given, so the server is not taken down; pass shell "
         "commands that stop and start the plugin's server (e.g. --outage-begin 'scripts/services/redis stop' "
         "--outage-end 'scripts/services/redis start') to run this case";
}

std::string ConformanceTest::case_tag() const {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? info->name() : "case";
  // Plain lower case: it ends up in topic, room and group names.
  std::string tag;
  for (unsigned char c : name)
    if (std::isalnum(c)) tag += static_cast<char>(std::tolower(c));
  return settings().run_id + "-" + tag;
}

const std::string* header(const Message& message, std::string_view key) {
  for (const auto& [k, v] : message.headers)
    if (k == key) return &v;
  return nullptr;
}

std::int64_t seq_of(const Message& message) {
  const std::string* value = header(message, kSeqHeader);
  if (!value) return -1;
  try {
    return std::stoll(*value);
  } catch (...) {
    return -1;
  }
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

MessagePtr copy_of(const Message& m) {
  auto copy = std::make_shared<Message>();
  copy->id = m.id;
  copy->room = m.room;
  copy->sender = m.sender;
  copy->payload = m.payload;
  copy->headers = m.headers;
  copy->timestamp_ms = m.timestamp_ms;
  copy->origin = m.origin;
  copy->log_position = m.log_position;
  return copy;
}

std::string describe_difference(const std::string& got, const std::string& want) {
  std::ostringstream out;
  out << "got " << got.size() << " bytes, want " << want.size();
  const std::size_t n = std::min(got.size(), want.size());
  for (std::size_t i = 0; i < n; ++i)
    if (got[i] != want[i]) {
      out << "; first difference at byte " << i << " (0x" << std::hex << std::setw(2) << std::setfill('0')
          << static_cast<int>(static_cast<unsigned char>(got[i])) << " instead of 0x" << std::setw(2)
          << static_cast<int>(static_cast<unsigned char>(want[i])) << ")";
      return out.str();
    }
  if (got.size() != want.size()) out << "; one is a prefix of the other";
  return out.str();
}

std::string pattern(std::size_t size, std::size_t salt) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i + salt) & 0xff);
  return out;
}

void measured(const std::string& key, std::int64_t value, const std::string& sentence) {
  std::cout << "[ MEASURED ] " << sentence << std::endl;
  ::testing::Test::RecordProperty(key, std::to_string(value));
}

}  // namespace nudge::conformance
