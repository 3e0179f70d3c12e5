#include "chat_protocol.hpp"

#include "ws_connection.hpp"

namespace nudge::plugins::websocket {

AfterMessage ChatProtocol::on_message(std::string_view data, bool text) {
  WsSession& s = connection_;
  s.hub_->frames_in.add();
  switch (s.rate_check()) {
    case WsSession::RateVerdict::allowed:
      break;
    case WsSession::RateVerdict::refused:
      // Refused unread: parsing is work the limit is there to spare.
      connection_.send_text(error_frame("", "rate_limited", "too many frames; slow down"));
      return AfterMessage::read;
    case WsSession::RateVerdict::refused_to_close:
      connection_.send_text(error_frame("", "rate_limited", "too many frames; slow down"));
      connection_.close_after_queue(CloseCode::policy_error, "rate limit exceeded");
      return AfterMessage::stop;
  }
  if (!text) {
    s.hub_->frames_refused.add();
    connection_.send_text(error_frame("", "bad_request", "binary frames are not supported; send JSON text frames"));
    return AfterMessage::read;
  }
  ProtocolError error;
  auto frame = parse_client_frame(data, error);
  if (!frame) {
    s.hub_->frames_refused.add();
    connection_.send_text(error_frame(error.ref, error.code, error.message));
    return AfterMessage::read;
  }
  return handle(std::move(*frame));
}

AfterMessage ChatProtocol::handle(ClientFrame frame) {
  WsSession& s = connection_;
  switch (frame.type) {
    case ClientFrame::Type::hello:
      // An authenticated connection is named by its token, never by its frames.
      if (s.identity_ && frame.name != s.identity_->name) {
        s.hub_->frames_refused.add();
        connection_.send_text(error_frame(
            frame.ref, "forbidden",
            "this connection is authenticated as '" + s.identity_->name + "'; its name comes from the token"));
        return AfterMessage::read;
      }
      if (!s.rename(std::move(frame.name))) {
        connection_.send_text(error_frame(frame.ref, "rate_limited",
                                          "a rename announces a leave and a join in each of your rooms, more than the "
                                          "rate limit allows now; slow down"));
        return AfterMessage::read;
      }
      s.named_ = true;
      return AfterMessage::read;
    case ClientFrame::Type::join:
      switch (s.join_room(frame.room, frame.after)) {
        case Hub::JoinRefusal::none:
          break;
        case Hub::JoinRefusal::too_many_rooms_here:
          connection_.send_text(error_frame(frame.ref, "too_many_rooms",
                                            "this connection is in " + std::to_string(s.rooms_.size()) +
                                                " rooms already (max_rooms_per_connection); leave one first"));
          break;
        case Hub::JoinRefusal::too_many_rooms_from_address:
          connection_.send_text(
              error_frame(frame.ref, "too_many_rooms",
                          "the clients of this address are in as many rooms as they may (max_rooms_per_address)"));
          break;
        case Hub::JoinRefusal::too_many_rooms:
          connection_.send_text(
              error_frame(frame.ref, "too_many_rooms", "the server holds as many rooms as it may (max_rooms)"));
          break;
      }
      return AfterMessage::read;
    case ClientFrame::Type::leave:
      s.leave_room(frame.room);
      return AfterMessage::read;
    case ClientFrame::Type::presence:
      return ask_presence(frame);
    case ClientFrame::Type::send:
      break;
  }
  if (!s.rooms_.contains(frame.room)) {
    s.hub_->frames_refused.add();
    connection_.send_text(error_frame(frame.ref, "not_joined", not_joined_message(frame.room)));
    return AfterMessage::read;
  }
  if (!s.hub_->ingress || !s.hub_->intake_open) {
    connection_.send_text(
        error_frame(frame.ref, "unavailable", "the server is shutting down; send again after reconnecting"));
    return AfterMessage::stop;
  }
  const std::string ref = frame.ref;
  const auto submitted = s.submit(
      std::move(frame.room), std::move(frame.text), frame.ref,
      [ref](WsSession& session, const WsSession::SendOutcome& outcome) {
        auto& self = static_cast<WsConnection&>(session);
        // Without a ref there is nothing to correlate an ack with (docs/protocol.md).
        if (outcome.status.ok()) {
          if (!ref.empty()) self.send_text(ack_frame(ref, outcome.id));
        } else {
          self.send_text(error_frame(ref, outcome.error_code(), outcome.status.message()));
        }
      },
      frame.ephemeral);
  return submitted == WsSession::Submitted::published ? AfterMessage::pause : AfterMessage::read;
}

AfterMessage ChatProtocol::ask_presence(const ClientFrame& frame) {
  WsSession& s = connection_;
  const auto refuse = [&](std::string_view code, std::string_view message) {
    s.hub_->frames_refused.add();
    connection_.send_text(error_frame(frame.ref, code, message));
    return AfterMessage::read;
  };
  const std::string ref = frame.ref;
  const std::string room = frame.room;
  const auto asked =
      s.ask_presence(room, [ref, room](WsSession& session, const Status& status, const PresenceList& list) {
        auto& self = static_cast<WsConnection&>(session);
        if (!status.ok()) return self.send_text(error_frame(ref, error_code_for(status.code()), status.message()));
        self.send_text(
            presence_reply_frame(room, ref, list, static_cast<std::size_t>(self.hub().config.max_presence_members)));
      });
  switch (asked) {
    case WsSession::PresenceAsk::reading:
      return AfterMessage::read;
    case WsSession::PresenceAsk::not_joined:
      return refuse("not_joined", not_joined_message(frame.room));
    case WsSession::PresenceAsk::unsupported:
      return refuse("unsupported",
                    "this server keeps no presence (its pipeline's fanout does not, or [pipeline] presence = false)");
    case WsSession::PresenceAsk::busy:
      return refuse("busy", "a presence request of this connection is still unanswered; ask again after its reply");
    case WsSession::PresenceAsk::server_busy:
      return refuse("busy", "the server is reading presence for many clients at once; ask again in a moment");
    case WsSession::PresenceAsk::unavailable:
      return refuse("unavailable", "the server is shutting down; ask again after reconnecting");
  }
  return AfterMessage::read;
}

void ChatProtocol::deliver(Outbound& message) {
  if (const auto& frame = message.native_frame()) connection_.send(frame);
}

void ChatProtocol::history_done(const std::string& room, std::size_t count, const Status& status) {
  WsSession& s = connection_;
  if (!status.ok()) {
    s.hub_->history_failures.add();
    connection_.send_text(
        error_frame("", "history_unavailable",
                    "the history of room '" + room + "' could not be read: " + std::string(status.message())));
  }
  connection_.send_text(joined_frame(room, count));
}

}  // namespace nudge::plugins::websocket
