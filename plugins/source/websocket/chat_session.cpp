// The native chat protocol (docs/protocol.md) over a WsConnection: JSON text
// frames in (hello, join, leave, send), acks, errors, history and live
// messages out. Rooms, history, rate limits, resends and the token's expiry
// are WsSession's, shared with the Socket.IO bridge.
#include "protocol.hpp"
#include "ws_connection.hpp"

namespace nudge::plugins::websocket {

WsConnection::Next WsConnection::on_chat_message(std::string_view data, bool text) {
  hub_->frames_in.add();
  switch (rate_check()) {
    case RateVerdict::allowed: break;
    case RateVerdict::refused:
      // Refused unread: parsing is work the limit is there to spare.
      send_text(error_frame("", "rate_limited", "too many frames; slow down"));
      return Next::read;
    case RateVerdict::refused_to_close:
      send_text(error_frame("", "rate_limited", "too many frames; slow down"));
      close_after_queue(CloseCode::policy_error, "rate limit exceeded");
      return Next::stop;
  }
  if (!text) {
    hub_->frames_refused.add();
    send_text(error_frame("", "bad_request", "binary frames are not supported; send JSON text frames"));
    return Next::read;
  }
  ProtocolError error;
  auto frame = parse_client_frame(data, error);
  if (!frame) {
    hub_->frames_refused.add();
    send_text(error_frame(error.ref, error.code, error.message));
    return Next::read;
  }
  return handle(std::move(*frame));
}

WsConnection::Next WsConnection::handle(ClientFrame frame) {
  switch (frame.type) {
    case ClientFrame::Type::hello:
      // An authenticated connection is named by its token, never by its frames.
      if (identity_ && frame.name != identity_->name) {
        hub_->frames_refused.add();
        send_text(error_frame(frame.ref, "forbidden",
                              "this connection is authenticated as '" + identity_->name +
                                  "'; its name comes from the token"));
        return Next::read;
      }
      name_ = std::move(frame.name);
      named_ = true;
      return Next::read;
    case ClientFrame::Type::join:
      switch (join_room(frame.room, frame.after)) {
        case Hub::JoinRefusal::none: break;
        case Hub::JoinRefusal::too_many_rooms_here:
          send_text(error_frame(frame.ref, "too_many_rooms",
                                "this connection is in " + std::to_string(rooms_.size()) +
                                    " rooms already (max_rooms_per_connection); leave one first"));
          break;
        case Hub::JoinRefusal::too_many_rooms_from_address:
          send_text(error_frame(frame.ref, "too_many_rooms",
                                "the clients of this address are in as many rooms as they may (max_rooms_per_address)"));
          break;
        case Hub::JoinRefusal::too_many_rooms:
          send_text(error_frame(frame.ref, "too_many_rooms", "the server holds as many rooms as it may (max_rooms)"));
          break;
      }
      return Next::read;
    case ClientFrame::Type::leave:
      leave_room(frame.room);
      return Next::read;
    case ClientFrame::Type::send: break;
  }
  if (!rooms_.contains(frame.room)) {
    hub_->frames_refused.add();
    send_text(error_frame(frame.ref, "not_joined", not_joined_message(frame.room)));
    return Next::read;
  }
  if (!hub_->ingress || !hub_->intake_open) {
    send_text(error_frame(frame.ref, "unavailable", "the server is shutting down; send again after reconnecting"));
    return Next::stop;
  }
  const std::string ref = frame.ref;
  const auto submitted = submit(std::move(frame.room), std::move(frame.text), frame.ref,
                                [ref](WsSession& session, const SendOutcome& outcome) {
                                  auto& self = static_cast<WsConnection&>(session);
                                  // Without a ref there is nothing to correlate an ack with (docs/protocol.md).
                                  if (outcome.status.ok()) {
                                    if (!ref.empty()) self.send_text(ack_frame(ref, outcome.id));
                                  } else {
                                    self.send_text(error_frame(ref, outcome.error_code(), outcome.status.message()));
                                  }
                                });
  return submitted == Submitted::published ? Next::pause : Next::read;
}

void WsConnection::deliver_live(Outbound& message) {
  if (const auto& frame = message.native_frame()) send(frame);
}

void WsConnection::send_history(Outbound& message) {
  if (const auto& frame = message.native_frame()) send(frame);
}

void WsConnection::history_done(const std::string& room, std::size_t count, const Status& status) {
  if (!status.ok()) {
    hub_->history_failures.add();
    send_text(error_frame("", "history_unavailable",
                          "the history of room '" + room + "' could not be read: " + std::string(status.message())));
  }
  send_text(joined_frame(room, count));
}

}  // namespace nudge::plugins::websocket
