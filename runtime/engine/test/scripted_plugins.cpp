// Two plugins whose behaviour the runtime's tests script from the TOML, so a
// whole pipeline runs in-process and its ordering can be checked from a
// report file both of them append to:
//   scripted source: publishes `messages` messages at start (of
//     `payload_bytes` each, when set) — all at once, or `paced`: each once
//     Ingress::when_ready lets it, recording "published ID" — records each
//     completion ("ack ID" / "error ID CODE") and delivery ("deliver ID"),
//     and raises SIGTERM once every completion and delivery is in; with
//     `presence`, it also joins one member at start and waits for the join
//     to come back ("presence_join USER/CONNECTION") and for the room's
//     list ("presence_list TOTAL"); when the pipeline keeps no presence it
//     records "presence_unavailable -" and the answer to a read
//     ("presence_list failed");
//   scripted log: confirms each append after `confirm_delay_ms`, failing
//     every `fail_every`-th one, and records "confirmed ID" / "refused ID"
//     just before it completes; with `hold_ms` > 0 it confirms nothing until
//     `hold_ms` after start, then one append every `confirm_delay_ms`, in
//     order (a log that stalls, then catches up); with `backlog` > 0 and a consumer, it hands
//     that many stored messages to the consumer in batches, one every
//     `batch_delay_ms`, reports the rest as its consumer_lag(), and raises
//     SIGTERM `linger_ms` after the last batch was confirmed;
//   scripted transform: rejects every `reject_every`-th message and drops
//     every `drop_every`-th, recording "rejected ID" / "dropped ID" /
//     "passed ID".
#include <csignal>
#include <deque>
#include <fstream>
#include <memory>
#include <string>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "nudge/sdk.hpp"

namespace {

class Report {
 public:
  explicit Report(const std::string& path) : out_(path, std::ios::app) {}
  void line(const std::string& text) { out_ << text << '\n' << std::flush; }

 private:
  std::ofstream out_;
};

class ScriptedSource final : public nudge::Source {
 public:
  ScriptedSource(const nudge::Config& config, nudge::Context& context)
      : context_(context),
        messages_(config.get_int("messages")),
        payload_bytes_(config.get_int("payload_bytes")),
        paced_(config.get_bool("paced")),
        expect_deliveries_(config.get_int("expect_deliveries")),
        signal_(config.get_bool("signal")),
        also_room_(config.get_string("also_room")),
        wants_room_(config.get_bool("wants_room")),
        leave_on_stop_(config.get_bool("leave_on_stop")),
        ephemeral_every_(config.get_int("ephemeral_every")),
        presence_(config.get_bool("presence")),
        report_(config.get_string("report")) {}

  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.required("report", nudge::ConfigType::string, "file the source appends its observations to");
    s.integer("messages", 100, "messages published at start").range(1, 1000000);
    s.integer("payload_bytes", 0, "bytes of each message's payload (0: \"message N\")").range(0, 16 * 1024 * 1024);
    s.boolean("paced", false, "publish each message once Ingress::when_ready says there is room, recording it");
    s.integer("expect_deliveries", 0,
              "deliveries to wait for before signalling (0: one per message acked); with another source, "
              "its messages too")
        .range(0, 1000000);
    s.boolean("signal", true, "raise SIGTERM when done (one source of several does)");
    s.string("also_room", "", "another room to want (set_room_interest) from start to stop");
    s.boolean("wants_room", true, "say at start that it wants \"room\" (false: a source without clients)");
    s.boolean("leave_on_stop", false, "say at stop that its rooms are no longer wanted");
    s.integer("ephemeral_every", 0, "mark every Nth message ephemeral (kEphemeralHeader; 0: none)").range(0, 1000000);
    s.boolean("presence", false, "join one presence member at start and record its event and the room's list");
    return s;
  }

  nudge::Status start(nudge::Ingress& ingress) override {
    ingress_ = &ingress;
    if (wants_room_) ingress.set_room_interest("room", true);
    if (!also_room_.empty()) ingress.set_room_interest(also_room_, true);
    if (presence_) {
      if (ingress.has_presence()) ingress.presence_join("room", "scripted", "conn-1");
      else {
        // Asked anyway, as a client would: the answer must say no.
        report_.line("presence_unavailable -");
        read_list("room");
      }
    }
    if (paced_) {
      ingress.when_ready([this] { publish_paced(); });
      return nudge::Status::success();
    }
    boost::asio::post(context_.executor(), [this] {
      for (std::int64_t i = 0; i < messages_; ++i) publish(i);
    });
    return nudge::Status::success();
  }

  void deliver(const nudge::MessagePtr& message) override {
    report_.line("deliver " + message->id.to_string());
    ++delivered_;
    maybe_done();
  }

  void deliver_presence(std::string_view room, const nudge::PresenceEvent& event) override {
    report_.line(std::string(event.change == nudge::PresenceChange::join ? "presence_join " : "presence_leave ") +
                 event.member.user + "/" + event.member.connection + " " + std::string(room));
    read_list(room);
  }

  void read_list(std::string_view room) {
    ingress_->read_presence(room, [this](nudge::Status status, nudge::PresenceList list) {
      report_.line("presence_list " + (status.ok() ? std::to_string(list.total) : std::string("failed")));
      presence_listed_ = true;
      maybe_done();
    });
  }

  void stop_intake() override {}
  void stop(std::function<void()> done) override {
    if (leave_on_stop_) {
      if (wants_room_) ingress_->set_room_interest("room", false);
      if (!also_room_.empty()) ingress_->set_room_interest(also_room_, false);
    }
    done();
  }

 private:
  /// Publishes message `i`; returns its id.
  std::string publish(std::int64_t i) {
    auto message = std::make_shared<nudge::Message>();
    message->id = nudge::MessageId::generate();
    message->room = "room";
    message->sender = "scripted";
    message->payload = payload_bytes_ > 0 ? std::string(static_cast<std::size_t>(payload_bytes_), 'x')
                                          : "message " + std::to_string(i);
    const std::string id = message->id.to_string();
    if (ephemeral_every_ > 0 && (i + 1) % ephemeral_every_ == 0) {
      message->headers.emplace_back(nudge::kEphemeralHeader, "1");
      report_.line("ephemeral " + id);
    }
    if (paced_) report_.line("published " + id);
    ingress_->publish(std::move(message), [this, id](nudge::Status status) {
      if (status.ok()) {
        report_.line("ack " + id);
        ++acked_;
      } else {
        report_.line("error " + id + " " + std::string(nudge::to_string(status.code())));
      }
      ++completed_;
      maybe_done();
    });
    return id;
  }

  void publish_paced() {
    publish(published_++);
    if (published_ < messages_) ingress_->when_ready([this] { publish_paced(); });
  }

  void maybe_done() {
    if (completed_ != messages_ || signalled_ || !signal_ || (presence_ && !presence_listed_)) return;
    if (expect_deliveries_ > 0) {
      if (delivered_ < expect_deliveries_) return;
      signalled_ = true;
      std::raise(SIGTERM);
      return;
    }
    if (delivered_ >= acked_) {
      signalled_ = true;
      std::raise(SIGTERM);
      return;
    }
    // Acked but not delivered: dropped by a transform, or still on the way.
    if (!grace_) {
      grace_ = std::make_shared<boost::asio::steady_timer>(context_.executor(), std::chrono::milliseconds(300));
      grace_->async_wait([this](auto) {
        if (signalled_) return;
        signalled_ = true;
        std::raise(SIGTERM);
      });
    }
  }

  nudge::Context& context_;
  std::int64_t messages_;
  std::int64_t payload_bytes_;
  bool paced_;
  std::int64_t expect_deliveries_;
  bool signal_;
  std::string also_room_;
  bool wants_room_;
  bool leave_on_stop_;
  std::int64_t ephemeral_every_;
  bool presence_;
  bool presence_listed_ = false;
  Report report_;
  nudge::Ingress* ingress_ = nullptr;
  std::int64_t published_ = 0;
  std::int64_t completed_ = 0;
  std::int64_t acked_ = 0;
  std::int64_t delivered_ = 0;
  bool signalled_ = false;
  std::shared_ptr<boost::asio::steady_timer> grace_;
};

/// A fanout in one process (as the memory fanout) that records each change
/// of room interest the runtime passes on: "interest ROOM 1" / "interest ROOM 0".
class ScriptedFanout final : public nudge::Fanout {
 public:
  ScriptedFanout(const nudge::Config& config, nudge::Context& context)
      : context_(context), report_(config.get_string("report")) {}

  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.required("report", nudge::ConfigType::string, "file the fanout appends room interest changes to");
    return s;
  }

  nudge::Status start(nudge::FanoutReceiver& receiver) override {
    receiver_ = &receiver;
    return nudge::Status::success();
  }
  void publish(const nudge::MessagePtr& message) override {
    boost::asio::post(context_.executor(), [this, message] { receiver_->on_fanout_message(message); });
  }
  void set_room_interest(std::string_view room, bool interested) override {
    report_.line("interest " + std::string(room) + (interested ? " 1" : " 0"));
  }
  void stop(std::function<void()> done) override { done(); }

 private:
  nudge::Context& context_;
  Report report_;
  nudge::FanoutReceiver* receiver_ = nullptr;
};

class ScriptedLog final : public nudge::Log {
 public:
  ScriptedLog(const nudge::Config& config, nudge::Context& context)
      : context_(context),
        fail_every_(config.get_int("fail_every")),
        delay_ms_(config.get_int("confirm_delay_ms")),
        hold_ms_(config.get_int("hold_ms")),
        report_(config.get_string("report")),
        backlog_(config.get_int("backlog")),
        batch_delay_ms_(config.get_int("batch_delay_ms")),
        linger_ms_(config.get_int("linger_ms")) {}

  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.required("report", nudge::ConfigType::string, "file the log appends its observations to");
    s.integer("fail_every", 0, "refuse every n-th append (0: none)").range(0, 1000000);
    s.integer("confirm_delay_ms", 1, "time before an append completes").range(0, 60000);
    s.integer("hold_ms", 0, "time from start before the first append completes; then one every confirm_delay_ms")
        .range(0, 60000);
    s.integer("backlog", 0, "messages waiting for the consumer at start").range(0, 10000000);
    s.integer("batch_delay_ms", 10, "time between two batches of the backlog").range(0, 60000);
    s.integer("linger_ms", 1500, "time after the backlog is written before SIGTERM").range(0, 60000);
    return s;
  }

  nudge::Status start(const nudge::LogStartOptions& options) override {
    if (hold_ms_ > 0) {
      hold_timer_ =
          std::make_shared<boost::asio::steady_timer>(context_.executor(), std::chrono::milliseconds(hold_ms_));
      hold_timer_->async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        holding_ = false;
        confirm_held();
      });
    }
    if (backlog_ > 0 && options.consumer) {
      consumer_ = options.consumer;
      batch_size_ = static_cast<std::int64_t>(options.max_batch_messages);
      timer_ = std::make_shared<boost::asio::steady_timer>(context_.executor());
      next_batch();
    }
    return nudge::Status::success();
  }

  std::optional<std::int64_t> consumer_lag() const override {
    if (!consumer_) return std::nullopt;
    return backlog_ - consumed_;
  }

  void set_max_batch_messages(std::size_t max) override {
    batch_size_ = static_cast<std::int64_t>(max);
    report_.line("max_batch " + std::to_string(max));
  }

  void append(const nudge::MessagePtr& message, nudge::Completion done) override {
    if (hold_ms_ > 0) {
      held_.push_back({message->id.to_string(), std::move(done)});
      if (!holding_ && held_.size() == 1) confirm_held();
      return;
    }
    const bool refuse = fail_every_ > 0 && ++appended_ % fail_every_ == 0;
    auto timer = std::make_shared<boost::asio::steady_timer>(context_.executor(), std::chrono::milliseconds(delay_ms_));
    timer->async_wait([this, timer, refuse, id = message->id.to_string(), done = std::move(done)](auto) {
      report_.line((refuse ? "refused " : "confirmed ") + id);
      done(refuse ? nudge::Status::error(nudge::StatusCode::unavailable, "scripted refusal")
                  : nudge::Status::success());
    });
  }

  void stop(std::function<void()> done) override {
    if (timer_) timer_->cancel();
    if (hold_timer_) hold_timer_->cancel();
    done();
  }

 private:
  struct Held {
    std::string id;
    nudge::Completion done;
  };

  /// Confirms the oldest held append after confirm_delay_ms, and so on while there are some.
  void confirm_held() {
    if (held_.empty()) return;
    hold_timer_->expires_after(std::chrono::milliseconds(delay_ms_));
    hold_timer_->async_wait([this](boost::system::error_code ec) {
      if (ec || held_.empty()) return;
      Held next = std::move(held_.front());
      held_.pop_front();
      report_.line("confirmed " + next.id);
      next.done(nudge::Status::success());
      confirm_held();
    });
  }

  void next_batch() {
    timer_->expires_after(std::chrono::milliseconds(consumed_ < backlog_ ? batch_delay_ms_ : linger_ms_));
    timer_->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      if (consumed_ == backlog_) {
        std::raise(SIGTERM);
        return;
      }
      auto batch = std::make_shared<nudge::Batch>();
      for (std::int64_t i = 0; i < batch_size_ && consumed_ + i < backlog_; ++i) {
        auto m = std::make_shared<nudge::Message>();
        m->id = nudge::MessageId::generate();
        m->room = "backlog";
        m->payload = "stored";
        m->timestamp_ms = 1;
        batch->push_back(std::move(m));
      }
      const auto size = static_cast<std::int64_t>(batch->size());
      consumer_->on_batch(std::move(batch), [this, size](nudge::Status status) {
        if (status.ok()) consumed_ += size;
        next_batch();
      });
    });
  }

  nudge::Context& context_;
  std::int64_t fail_every_;
  std::int64_t delay_ms_;
  std::int64_t hold_ms_;
  bool holding_ = true;
  std::deque<Held> held_;
  std::shared_ptr<boost::asio::steady_timer> hold_timer_;
  Report report_;
  std::int64_t appended_ = 0;
  std::int64_t backlog_ = 0;
  std::int64_t batch_delay_ms_ = 0;
  std::int64_t linger_ms_ = 0;
  std::int64_t batch_size_ = 1;
  std::int64_t consumed_ = 0;
  nudge::LogConsumer* consumer_ = nullptr;
  std::shared_ptr<boost::asio::steady_timer> timer_;
};

class ScriptedTransform final : public nudge::Transform {
 public:
  ScriptedTransform(const nudge::Config& config, nudge::Context&)
      : reject_every_(config.get_int("reject_every")),
        drop_every_(config.get_int("drop_every")),
        report_(config.get_string("report")) {}

  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.required("report", nudge::ConfigType::string, "file the transform appends its decisions to");
    s.integer("reject_every", 0, "reject every n-th message (0: none)").range(0, 1000000);
    s.integer("drop_every", 0, "drop every n-th message (0: none)").range(0, 1000000);
    return s;
  }

  void process(nudge::MessagePtr message, nudge::VerdictHandler done) override {
    ++seen_;
    const std::string id = message->id.to_string();
    if (reject_every_ > 0 && seen_ % reject_every_ == 0) {
      report_.line("rejected " + id);
      return done(nudge::Verdict::reject("scripted rejection"));
    }
    if (drop_every_ > 0 && seen_ % drop_every_ == 0) {
      report_.line("dropped " + id);
      return done(nudge::Verdict::drop());
    }
    report_.line("passed " + id);
    done(nudge::Verdict::pass(std::move(message)));
  }

  void stop(std::function<void()> done) override { done(); }

 private:
  std::int64_t reject_every_;
  std::int64_t drop_every_;
  Report report_;
  std::int64_t seen_ = 0;
};

}  // namespace

// One library may export one plugin, so each is built twice with one of these.
#if defined(NUDGE_SCRIPTED_SOURCE_2)
// A second source plugin, for pipelines with two sources.
NUDGE_PLUGIN(ScriptedSource, "scripted2", "1.0.0", "Another source scripted by the runtime's tests")
#elif defined(NUDGE_SCRIPTED_SOURCE)
NUDGE_PLUGIN(ScriptedSource, "scripted", "1.0.0", "A source scripted by the runtime's tests")
#elif defined(NUDGE_SCRIPTED_FANOUT)
NUDGE_PLUGIN(ScriptedFanout, "scripted", "1.0.0", "A fanout that records room interest, for the runtime's tests")
#elif defined(NUDGE_SCRIPTED_TRANSFORM)
NUDGE_PLUGIN(ScriptedTransform, "scripted", "1.0.0", "A transform scripted by the runtime's tests")
#else
NUDGE_PLUGIN(ScriptedLog, "scripted", "1.0.0", "A log scripted by the runtime's tests")
#endif
