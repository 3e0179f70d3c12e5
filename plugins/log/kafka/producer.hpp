#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "kafka_client.hpp"
#include "nudge/sdk/blocking_worker.hpp"
#include "nudge/sdk/message.hpp"
#include "queue_watcher.hpp"

namespace nudge::plugins::kafka {

/// The append side of the log: an idempotent producer (acks=all) whose
/// delivery reports complete the appends on the event loop.
///
/// Each message goes out keyed by its room, so a room stays in one partition
/// and in order; its value is the message's cached envelope, passed without a
/// copy (the in-flight record keeps the message alive until its report).
///
/// After a fatal error (the idempotent producer can no longer guarantee
/// order) the handle is retired: its messages fail, and a new handle is made
/// a few seconds later; appends in between fail with unavailable.
class Producer final : public KafkaClient {
 public:
  Producer(const KafkaConfig& config, Context& context, BlockingWorker& worker);
  /// Destroys what stop() did not; completions still pending are dropped.
  ~Producer() override;

  Status start();
  /// Completes `done` from the message's delivery report: ok only when the
  /// broker stored it (acks=all), else timeout/unavailable; exactly once.
  void append(const MessagePtr& message, Completion done);
  /// Waits (without blocking) for every appended message's report, up to
  /// `drain_timeout`; then purges what is left (those complete with
  /// unavailable), destroys the handle on the worker and calls `done`.
  void stop(std::function<void()> done, std::chrono::milliseconds drain_timeout = std::chrono::seconds(10));

  /// Messages appended and not yet reported.
  std::size_t in_flight() const noexcept { return in_flight_; }
  /// The current handle, or null (tests only: fault injection).
  rd_kafka_t* handle_for_test() const noexcept;

 private:
  /// One appended message until its delivery report; the msg_opaque.
  struct Pending {
    MessagePtr message;
    Completion done;
    std::uint64_t generation = 0;
    Pending* prev = nullptr;
    Pending* next = nullptr;
  };
  struct Handle {
    rd_kafka_t* rk = nullptr;
    rd_kafka_topic_t* topic = nullptr;
    rd_kafka_queue_t* queue = nullptr;
    std::unique_ptr<QueueWatcher> watcher;
    std::uint64_t generation = 0;
    std::chrono::steady_clock::time_point deadline{};
    bool purged = false;
  };
  enum class State { created, running, recreating, draining, stopped };

  Status create_handle();
  /// Retires `handle`: waits for its reports, purging at its deadline.
  void retire(std::unique_ptr<Handle> handle, std::chrono::milliseconds drain_timeout);
  /// Detaches the handle and destroys it on the worker; then fails what it left.
  void release(std::unique_ptr<Handle> handle);
  static void close_now(Handle& handle);
  void serve(Handle& handle);
  void tick();
  void arm_timer();
  void maybe_stopped();
  void on_delivery(const rd_kafka_message_t* report);
  void on_fatal(rd_kafka_t* rk) override;
  void post_failure(Completion done, StatusCode code, std::string why);
  void link(Pending* p);
  void unlink(Pending* p);

  static void dr_msg_cb(rd_kafka_t* rk, const rd_kafka_message_t* report, void* opaque);

  BlockingWorker& worker_;
  boost::asio::any_io_executor executor_;
  State state_ = State::created;
  std::unique_ptr<Handle> current_;
  std::vector<std::unique_ptr<Handle>> retiring_;
  std::size_t releasing_ = 0;
  std::uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point recreate_at_{};
  Pending* pending_head_ = nullptr;
  std::size_t in_flight_ = 0;
  boost::asio::steady_timer timer_;
  bool timer_armed_ = false;
  bool serving_ = false;
  std::function<void()> on_stopped_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  Counter& produced_;
  Counter& produce_errors_;
};

}  // namespace nudge::plugins::kafka
