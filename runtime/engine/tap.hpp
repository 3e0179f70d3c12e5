#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/metrics.hpp"
#include "nudge/sdk/message.hpp"

namespace nudge::runtime {

/// The kinds of stage a message can be watched at (`GET /tap?stage=`).
enum class TapStage : std::uint8_t { source, transform, log, fanout, sink };

/// Where a message was seen: a stage and what happened to it there.
enum class TapPoint : std::uint8_t {
  source_accepted,     ///< taken in from a client, before the transforms
  source_delivered,    ///< handed to the source for its local clients
  transform_passed,    ///< a transform passed it on (perhaps changed)
  transform_dropped,   ///< a transform dropped it
  transform_rejected,  ///< a transform rejected it (the reason goes with it)
  log_appended,        ///< the log confirmed the append: durable
  log_append_failed,   ///< the append failed (the reason goes with it)
  log_consumed,        ///< read back by the log's consumer, in a batch for the sink
  fanout_published,    ///< published on the fanout
  fanout_received,     ///< received from the fanout (from any instance, this one too)
  sink_written,        ///< the sink confirmed the batch holding it
};

TapStage stage_of(TapPoint point) noexcept;
const char* to_string(TapStage stage) noexcept;
/// `accepted`, `passed`, ...: the point within its stage.
const char* to_string(TapPoint point) noexcept;
std::optional<TapStage> parse_tap_stage(std::string_view text) noexcept;

/// How much one tap may take, whoever asks (the `[admin]` table's tap_* keys).
struct TapLimits {
  /// Taps attached at once; 0 turns GET /tap off.
  std::size_t max_taps = 2;
  /// Bytes of event lines waiting for one tapper's connection; past it events are missed.
  std::size_t queue_bytes = 1024 * 1024;
  /// Events queued per second for one tapper (a bucket of that size, refilled continuously).
  std::size_t events_per_second = 1000;
};

/// What one tapper wants to see.
struct TapFilter {
  /// Bit `1 << TapStage`; 0 means every stage.
  unsigned stages = 0;
  /// Rooms to watch; empty means every room.
  std::vector<std::string> rooms;
  /// Share of messages watched, in (0, 1]; chosen by message id, so a
  /// sampled message is seen at every stage it passes, on every instance.
  double sample = 1.0;
  /// Events after which the tap ends; 0: no end.
  std::uint64_t limit = 0;
  /// Bytes of the text shown in an event (cut at a character boundary); 0: all of it.
  std::size_t max_text = 1024;

  bool watches(TapStage stage) const noexcept { return stages == 0 || (stages & (1u << unsigned(stage))) != 0; }
};

/// One tapper's side of a tap: events the registry queued for it, bounded
/// in bytes and rate, and what it missed. Lives on the event loop, like the
/// pipeline that feeds it and the admin connection that drains it.
class Tap {
 public:
  /// `wake` runs when an event or a miss arrives while the tapper is not
  /// yet told of earlier ones (at most once between two take() calls); it
  /// runs inside the pipeline's call, so it must only schedule work.
  Tap(TapFilter filter, TapLimits limits, std::function<void()> wake);

  const TapFilter& filter() const noexcept { return filter_; }

  /// Whether this tapper watches a message at `stage` in `room` with `id`
  /// (stage, room, sample); cheap, and true for an ended tap's stage too.
  bool wants(TapStage stage, std::string_view room, const MessageId& id) const noexcept;

  enum class Admit { yes, over_rate, ended };
  /// Spends one event of the rate at `now`, before the event is serialised;
  /// `over_rate` is counted as missed, `ended`: the limit was reached.
  Admit admit(std::chrono::steady_clock::time_point now);
  /// Queues a serialised event line (admitted just before); false when the
  /// queue has no room for it: missed, counted.
  bool push(std::shared_ptr<const std::string> line);

  /// Moves up to about `max_bytes` of queued lines into one string, led by a
  /// `{"notice":"missed",...}` line when events were missed since the last
  /// take. Empty when there is nothing to tell.
  std::string take(std::size_t max_bytes);
  /// The limit was reached and everything queued was taken.
  bool finished() const noexcept { return filter_.limit != 0 && events_ >= filter_.limit && queue_.empty(); }

  std::uint64_t events() const noexcept { return events_; }
  std::uint64_t missed_queue_full() const noexcept { return missed_queue_full_; }
  std::uint64_t missed_over_rate() const noexcept { return missed_over_rate_; }
  std::uint64_t missed() const noexcept { return missed_queue_full_ + missed_over_rate_; }
  std::size_t queued_bytes() const noexcept { return queued_bytes_; }

 private:
  void wake();

  TapFilter filter_;
  TapLimits limits_;
  std::function<void()> wake_;
  bool woken_ = false;
  std::uint64_t sample_below_ = 0;  // sampled when the id's hash is below it (with sample_all_ false)
  bool sample_all_ = true;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::size_t queued_bytes_ = 0;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point refilled_{};
  std::uint64_t events_ = 0;
  std::uint64_t missed_queue_full_ = 0;
  std::uint64_t missed_over_rate_ = 0;
  std::uint64_t missed_told_ = 0;
};

/// The taps attached to a running pipeline (`GET /tap`, `nudge tap`).
///
/// With none attached, a tap point costs the pipeline one relaxed atomic
/// load (`active()`). With taps, an event a tapper wants is serialised once
/// to a JSON line (again only for a tapper asking another max_text) and
/// queued to each; a full queue or a spent rate drops the event for that
/// tapper and counts it, so a slow tapper never slows the pipeline.
/// Loop-only, like the pipeline: attach, detach and record run on its event
/// loop (the flag is atomic so a future caller off the loop reads it safely).
class TapRegistry {
 public:
  explicit TapRegistry(MetricsRegistry& metrics);

  void set_limits(TapLimits limits) { limits_ = limits; }
  const TapLimits& limits() const noexcept { return limits_; }

  /// Whether any tap is attached; the test before record().
  bool active() const noexcept { return active_.load(std::memory_order_relaxed); }

  /// Offers an event to every tap: the message seen at `point` of the stage
  /// `at` (`transform.filter`); `reason` for a rejection or a failure.
  void record(TapPoint point, std::string_view at, const Message& message, std::string_view reason = {});

  /// A new tap, or null with `refusal` saying why (max_taps attached).
  std::shared_ptr<Tap> attach(TapFilter filter, std::function<void()> wake, std::string& refusal);
  void detach(const std::shared_ptr<Tap>& tap);
  std::size_t attached() const noexcept { return taps_.size(); }
  /// Event lines made so far (one per event, more only for tappers asking another max_text).
  std::uint64_t serialised() const noexcept { return serialised_; }

 private:
  TapLimits limits_;
  std::atomic<bool> active_{false};
  std::vector<std::shared_ptr<Tap>> taps_;
  std::uint64_t serialised_ = 0;
  Counter& events_;
  Counter& missed_queue_full_;
  Counter& missed_over_rate_;
  Gauge& attached_;
};

/// The filter of a `GET /tap?stage=source,sink&room=r1&sample=0.1&limit=100&max_text=200`
/// request target (stage and room take comma lists and may repeat), or
/// nullopt with `error` naming the parameter at fault; unknown parameters
/// are errors.
std::optional<TapFilter> parse_tap_query(std::string_view target, std::string& error);

/// `stages source, sink; rooms r1; sample 0.1; limit 100`, for the log.
std::string describe(const TapFilter& filter);

/// One event as a JSON line (with its newline): time, stage, point, at,
/// room, id, sender, size (payload bytes), text (at most `max_text` bytes,
/// 0: all; `"truncated":true` when cut), and `reason` when given. Invalid
/// UTF-8 in any string becomes U+FFFD.
std::string tap_event_json(TapPoint point, std::string_view at, const Message& message, std::string_view reason,
                           std::size_t max_text, std::chrono::system_clock::time_point when);

/// Appends `text` to `out` as a JSON string body (no quotes), escaping what
/// JSON needs and replacing invalid UTF-8 with U+FFFD; stops before `limit`
/// bytes of `text` at a character boundary. Returns the bytes of `text` used.
std::size_t append_json_text(std::string& out, std::string_view text, std::size_t limit = std::string_view::npos);

}  // namespace nudge::runtime
