#pragma once

#include "nudge/sdk.hpp"

namespace nudge::plugins {

/// The in-process fanout: what this instance publishes comes straight back to
/// it. For a single instance, or tests; it does not reach other processes.
class MemoryFanout final : public Fanout {
 public:
  MemoryFanout(const Config& config, Context& context);
  static ConfigSchema schema();

  // Fanout
  Status start(FanoutReceiver& receiver) override;
  void publish(const MessagePtr& message) override;
  void set_room_interest(std::string_view room, bool interested) override;
  // Plugin
  void stop(std::function<void()> done) override;

 private:
  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  Counter& published_;
};

}  // namespace nudge::plugins
