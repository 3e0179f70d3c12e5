#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <boost/asio/steady_timer.hpp>

#include "nudge/sdk/config.hpp"
#include "nudge/sdk/context.hpp"
#include "nudge/sdk/plugin.hpp"
#include "nudge/sdk/status.hpp"

namespace nudge {

/// A periodic health check behind a plugin's Plugin::readiness(): every
/// `interval` it runs the plugin's check (a `SELECT 1` on its BlockingWorker)
/// unless the plugin is busy, and remembers what the last check or the last
/// real call (report()) found.
///
///     probe_.start([this](HealthProbe::Done done) { worker_->run([this] { return check_now(); }, done); },
///                  [this] { return jobs_ > 0; });
///     Readiness readiness() const override { return probe_.readiness(); }
///
/// Not ready, with a reason an operator can act on:
/// - before the first report("") (`not connected to <subject> yet`);
/// - after a check or report() found a problem (`no connection to <subject>: <problem>`);
/// - while a check has gone unanswered for twice the interval, at least 2 s
///   (`no answer from <subject> at <address> to a health check for <N> ms`).
///
/// The first healthy-to-unhealthy change a check finds is logged once as a
/// warning (`<subject> at <address> cannot be used: <problem>`); report()
/// logs nothing, since the call that failed has its own log line.
///
/// Header-only. Not thread-safe: construct, call and destroy it on the
/// Context's executor (the event loop) only.
class HealthProbe {
 public:
  /// Hands a check's finding back: "" when healthy, else why not, in a few
  /// words. Call it once, on the executor; a second call is ignored.
  using Done = std::function<void(std::string problem)>;
  /// Starts one check; it must not block (run the query on a BlockingWorker,
  /// whose run() delivers `done` on the executor).
  using Check = std::function<void(Done done)>;
  /// True when a check should be skipped this time (work queued on the
  /// connection tells as much, and must not wait behind a check).
  using Busy = std::function<bool()>;

  /// `subject` names what is checked in reasons ("PostgreSQL"); `address`
  /// says where (a URL without its password). Every finished check adds 1 to
  /// `checks`, which must outlive the probe. Does no I/O; not ready until
  /// the first report("").
  HealthProbe(Context& context, std::string subject, std::string address, std::chrono::milliseconds interval,
              Counter& checks)
      : logger_(context.logger()),
        timer_(context.executor()),
        subject_(std::move(subject)),
        address_(std::move(address)),
        interval_(interval),
        checks_(checks),
        reason_("not connected to " + subject_ + " yet") {}

  /// Cancels the timer; a check in progress may still call its Done, which is then ignored.
  ~HealthProbe() { stop(); }

  HealthProbe(const HealthProbe&) = delete;
  HealthProbe& operator=(const HealthProbe&) = delete;

  /// Arms the timer: every interval from now, `check` runs unless `busy`
  /// (optional) returns true or the last check has not answered. Call once,
  /// after the plugin's connection works (typically at the end of start()).
  void start(Check check, Busy busy = {}) {
    check_ = std::move(check);
    busy_ = std::move(busy);
    started_ = true;
    arm();
  }

  /// What a real call (open, write, read) learnt about the connection: ""
  /// when it worked, else why not. Readiness follows it at once.
  void report(std::string problem) { reason_ = problem.empty() ? std::string() : describe(problem); }

  /// report() from a call's Status: ok is healthy, `unavailable` (the
  /// connection, not the data) is the problem; other errors say nothing of
  /// the connection and leave readiness as it was.
  void report(const Status& status) {
    if (status.ok()) report(std::string());
    else if (status.code() == StatusCode::unavailable) report(status.message());
  }

  /// The config key of the interval, declared by interval_key().
  static constexpr std::string_view kIntervalKey = "health_check_interval_ms";

  /// Declares kIntervalKey in a plugin's schema: 1000 ms by default, in
  /// [100, 60000], changeable live (apply it with reconfigure()).
  static ConfigField& interval_key(ConfigSchema& schema) {
    return schema
        .integer(std::string(kIntervalKey), 1000,
                 "How often an idle sink checks its connection with `SELECT 1` (reconnecting if it was lost), so "
                 "readiness notices a stopped server without traffic; skipped while a write runs")
        .range(100, 60000)
        .reloadable();
  }

  /// Applies a new kIntervalKey from a validated Config: a plugin whose only
  /// live key is the interval returns this from Plugin::reconfigure.
  Status reconfigure(const Config& config) {
    set_interval(std::chrono::milliseconds(config.get_int(kIntervalKey)));
    return Status::success();
  }

  /// Changes the interval; the next check comes one new interval from now.
  /// Before start() or after stop() it only records the interval.
  void set_interval(std::chrono::milliseconds interval) {
    interval_ = interval;
    if (started_ && !stopped_) arm();
  }

  /// Cancels the timer: no check starts after this, and the Done of one in
  /// progress is ignored. Idempotent. Call from the plugin's stop().
  void stop() {
    stopped_ = true;
    ++check_id_;  // a Done still out refers to an older id
    checking_ = false;
    timer_.cancel();
  }

  /// What the last check or report() found, or a check that hangs. Cheap.
  Readiness readiness() const {
    if (!reason_.empty()) return Readiness::no(reason_);
    // A check that hangs (a server that stopped answering) says as much as one that failed.
    const auto waited = patience();
    if (checking_ && std::chrono::steady_clock::now() - check_started_ > waited)
      return Readiness::no("no answer from " + subject_ + " at " + address_ + " to a health check for " +
                           std::to_string(waited.count()) + " ms");
    return Readiness::yes();
  }

 private:
  std::chrono::milliseconds patience() const { return std::max(std::chrono::milliseconds(2000), 2 * interval_); }

  std::string describe(const std::string& problem) const { return "no connection to " + subject_ + ": " + problem; }

  void arm() {
    // expires_after cancels the wait in flight, so one chain of waits runs at a time.
    timer_.expires_after(interval_);
    timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
      // A wait that completed before stop() or the destructor cancelled it still comes here.
      if (ec || alive.expired() || stopped_) return;
      run_check();
      arm();
    });
  }

  void run_check() {
    if (checking_ || (busy_ && busy_())) return;
    checking_ = true;
    check_started_ = std::chrono::steady_clock::now();
    const std::uint64_t id = ++check_id_;
    check_([this, id, alive = std::weak_ptr<int>(alive_)](std::string problem) {
      if (alive.expired() || id != check_id_ || !checking_) return;
      checking_ = false;
      checks_.add();
      if (!problem.empty() && reason_.empty()) logger_.warn(subject_, " at ", address_, " cannot be used: ", problem);
      report(std::move(problem));
    });
  }

  Logger& logger_;
  boost::asio::steady_timer timer_;
  const std::string subject_;
  const std::string address_;
  std::chrono::milliseconds interval_;
  Counter& checks_;
  Check check_;
  Busy busy_;
  /// Why the plugin is not ready, as last learnt; empty when healthy.
  std::string reason_;
  bool started_ = false;
  bool stopped_ = false;
  bool checking_ = false;
  std::uint64_t check_id_ = 0;
  std::chrono::steady_clock::time_point check_started_{};
  /// Handlers hold it weakly: they may outlive the probe in the executor's queue.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nudge
