#pragma once

#include <deque>
#include <string>
#include <unordered_map>

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
  bool supports_recent() const override { return window_size_ > 0; }
  void read_recent(HistoryQuery query, HistoryHandler done) override;
  // Plugin
  void stop(std::function<void()> done) override;

 private:
  Context& context_;
  FanoutReceiver* receiver_ = nullptr;
  Counter& published_;
  /// Each room's last window_size_ messages, in publish order.
  std::size_t window_size_ = 0;
  std::unordered_map<std::string, std::deque<MessagePtr>> recent_;
};

}  // namespace nudge::plugins
