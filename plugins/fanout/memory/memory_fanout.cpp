#include "memory_fanout.hpp"

#include <boost/asio/post.hpp>

namespace nudge::plugins {

MemoryFanout::MemoryFanout(const Config&, Context& context)
    : context_(context), published_(context.metrics().counter("published", "Messages published")) {}

ConfigSchema MemoryFanout::schema() { return {}; }

Status MemoryFanout::start(FanoutReceiver& receiver) {
  receiver_ = &receiver;
  return Status::success();
}

void MemoryFanout::publish(const MessagePtr& message) {
  published_.add();
  // Posted, not called inline, so delivery is asynchronous like a real bus's
  // and never re-enters the publisher.
  boost::asio::post(context_.executor(), [this, message] {
    if (receiver_) receiver_->on_fanout_message(message);
  });
}

void MemoryFanout::set_room_interest(std::string_view, bool) {}

void MemoryFanout::stop(std::function<void()> done) {
  receiver_ = nullptr;
  done();
}

}  // namespace nudge::plugins
