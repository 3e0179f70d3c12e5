// Presence passes through the pipeline untouched: the source's joins and
// leaves go to the fanout, which keeps the lists. The fanout's events go to
// the sources beside deliver_locally (pipeline.cpp), which they mirror.

#include <boost/asio/post.hpp>

#include "engine/pipeline.hpp"

namespace nudge::runtime {

bool Pipeline::has_presence() const {
  return spec_.settings.presence && fanout_ && fanout_->instance->supports_presence();
}

void Pipeline::presence_join(std::string_view room, std::string_view user, std::string_view connection) {
  if (!has_presence()) return;
  fanout_->instance->presence_join(
      room, PresenceMember{std::string(user), std::string(connection), spec_.settings.instance_id});
}

void Pipeline::presence_leave(std::string_view room, std::string_view user, std::string_view connection) {
  if (!has_presence()) return;
  fanout_->instance->presence_leave(
      room, PresenceMember{std::string(user), std::string(connection), spec_.settings.instance_id});
}

void Pipeline::read_presence(std::string_view room, PresenceHandler done) {
  if (!has_presence()) {
    std::string why = spec_.settings.presence ? "this pipeline keeps no presence (its fanout does not)"
                                              : "this pipeline keeps no presence ([pipeline] presence = false)";
    boost::asio::post(io_, [done = std::move(done), why = std::move(why)] {
      done(Status::error(StatusCode::invalid_argument, why), {});
    });
    return;
  }
  fanout_->instance->read_presence(room, std::move(done));
}

}  // namespace nudge::runtime
