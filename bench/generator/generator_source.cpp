// The `generator` source: publishes `messages` messages as fast as the
// pipeline takes them (one more each time Ingress::when_ready says there is
// room), then logs how long the acknowledgements took and stops the process
// (SIGTERM). bench/run raw runs it in front of the Kafka log alone, to measure
// Nudge's own produce path beside Kafka's ProducerPerformance on the same
// broker: what the pipeline adds, without WebSocket clients or a load
// generator sharing the CPU. Built for the benchmarks only (not installed).
#include <chrono>
#include <csignal>
#include <memory>
#include <string>

#include "nudge/sdk.hpp"

namespace {

using Clock = std::chrono::steady_clock;

class GeneratorSource final : public nudge::Source {
 public:
  GeneratorSource(const nudge::Config& config, nudge::Context& context)
      : context_(context),
        messages_(config.get_int("messages")),
        payload_(static_cast<std::size_t>(config.get_int("payload_bytes")), 'x'),
        room_(config.get_string("room")) {}

  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.integer("messages", 1000000, "messages to publish").range(1, 1000000000);
    s.integer("payload_bytes", 64, "payload size of each message").range(0, 1 << 20);
    s.string("room", "bench", "the room of every message");
    return s;
  }

  nudge::Status start(nudge::Ingress& ingress) override {
    ingress_ = &ingress;
    started_ = Clock::now();
    ingress.when_ready([this] { pump(); });
    return nudge::Status::success();
  }

  void deliver(const nudge::MessagePtr&) override {}
  void stop_intake() override { stopping_ = true; }
  void stop(std::function<void()> done) override { done(); }

 private:
  void pump() {
    if (stopping_ || published_ == messages_) return;
    auto message = std::make_shared<nudge::Message>();
    message->id = nudge::MessageId::generate();
    message->room = room_;
    message->sender = "generator";
    message->payload = payload_;
    message->timestamp_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    ++published_;
    ingress_->publish(std::move(message), [this](nudge::Status status) {
      if (!status.ok()) ++errors_;
      if (++completed_ == messages_) finish();
    });
    ingress_->when_ready([this] { pump(); });
  }

  void finish() {
    const double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    context_.logger().info("generator: ", messages_, " messages acknowledged in ", seconds,
                           " s: ", static_cast<std::int64_t>(static_cast<double>(messages_) / seconds),
                           " messages/s; errors ", errors_);
    std::raise(SIGTERM);
  }

  nudge::Context& context_;
  nudge::Ingress* ingress_ = nullptr;
  std::int64_t messages_;
  std::string payload_;
  std::string room_;
  std::int64_t published_ = 0;
  std::int64_t completed_ = 0;
  std::int64_t errors_ = 0;
  bool stopping_ = false;
  Clock::time_point started_;
};

}  // namespace

NUDGE_PLUGIN(GeneratorSource, "generator", "1.0.0",
             "Publishes messages as fast as the pipeline takes them, then reports the rate (benchmarks only)")
