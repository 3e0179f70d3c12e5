#include "fanout_metrics.hpp"

namespace nudge::plugins::redis {

FanoutMetrics::FanoutMetrics(Context& context)
    : published(context.metrics().counter("published", "Messages Redis accepted (PUBLISH replied)")),
      publish_errors(context.metrics().counter(
          "publish_errors", "PUBLISHes refused by Redis, or in flight when the connection was lost")),
      received(context.metrics().counter("received", "Messages received from Redis and handed to the pipeline")),
      decode_errors(context.metrics().counter("decode_errors", "Payloads on the channel that were not envelopes")),
      reconnects(context.metrics().counter("reconnects", "Connections re-established after being lost")),
      dropped(context.metrics().counter(
          "dropped_while_disconnected",
          "Messages dropped because more than max_pending_publishes or max_pending_bytes were waiting")),
      connected(context.metrics().gauge("connected", "1 while both Redis connections are up, else 0")),
      held_bytes(context.metrics().gauge(
          "held_bytes",
          "Message bytes held for Redis: waiting, sent and not answered, or waiting for the recent "
          "window (bounded by max_pending_bytes)")),
      held_messages(context.metrics().gauge(
          "held_messages",
          "Messages held for Redis: waiting, sent and not answered, or waiting for the recent window")),
      recent_appended(context.metrics().counter("recent_appended", "Messages appended to the recent window")),
      recent_skipped(context.metrics().counter(
          "recent_skipped", "Messages not appended to the recent window: older than a cut in their room, or refused")),
      recent_missed(context.metrics().counter(
          "recent_missed",
          "Messages that may be missing from their room's window (dropped, refused, or lost in "
          "flight), each making the window of its room be cut")),
      recent_errors(context.metrics().counter(
          "recent_errors", "Calls of the recent window's script refused by Redis or lost with the connection")),
      recent_rooms_evicted(context.metrics().counter("recent_rooms_evicted",
                                                     "Rooms deleted from the recent window for its caps or its ttl")) {}

}  // namespace nudge::plugins::redis
