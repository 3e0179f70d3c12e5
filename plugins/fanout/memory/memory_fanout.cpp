#include "memory_fanout.hpp"

#include <boost/asio/post.hpp>

namespace nudge::plugins {

MemoryFanout::MemoryFanout(const Config& config, Context& context)
    : context_(context),
      published_(context.metrics().counter("published", "Messages published")),
      window_size_(static_cast<std::size_t>(config.get_int("recent_messages"))) {}

ConfigSchema MemoryFanout::schema() {
  ConfigSchema s;
  s.integer("recent_messages", 1000,
            "Messages kept per room so reconnecting clients catch up from memory; 0 keeps none")
      .range(0, 100000);
  return s;
}

Status MemoryFanout::start(FanoutReceiver& receiver) {
  receiver_ = &receiver;
  return Status::success();
}

void MemoryFanout::publish(const MessagePtr& message) {
  published_.add();
  if (window_size_ > 0) {
    auto& window = recent_[message->room];
    window.push_back(message);
    if (window.size() > window_size_) window.pop_front();
  }
  // Posted, not called inline, so delivery is asynchronous like a real bus's
  // and never re-enters the publisher.
  boost::asio::post(context_.executor(), [this, message] {
    if (receiver_) receiver_->on_fanout_message(message);
  });
}

void MemoryFanout::set_room_interest(std::string_view, bool) {}

void MemoryFanout::read_recent(HistoryQuery query, HistoryHandler done) {
  std::vector<MessagePtr> messages;
  if (auto it = recent_.find(query.room); it != recent_.end()) {
    const auto& window = it->second;
    const std::size_t take = std::min(query.limit, window.size());
    messages.assign(window.end() - static_cast<std::ptrdiff_t>(take), window.end());
  }
  boost::asio::post(context_.executor(), [done = std::move(done), messages = std::move(messages)]() mutable {
    done(Status::success(), std::move(messages));
  });
}

void MemoryFanout::stop(std::function<void()> done) {
  receiver_ = nullptr;
  done();
}

}  // namespace nudge::plugins
