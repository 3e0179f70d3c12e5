#pragma once

#include "nudge/sdk/context.hpp"

namespace nudge::plugins::redis {

/// The metrics both modes of the redis fanout (one server, a cluster) keep,
/// under the same names, so a dashboard reads either.
struct FanoutMetrics {
  explicit FanoutMetrics(Context& context);

  Counter& published;
  Counter& publish_errors;
  Counter& received;
  Counter& decode_errors;
  Counter& reconnects;
  Counter& dropped;
  Gauge& connected;
  /// What the fanout holds for Redis (max_pending_bytes): a Redis that hangs shows here.
  Gauge& held_bytes;
  Gauge& held_messages;
  Counter& recent_appended;
  Counter& recent_skipped;
  Counter& recent_missed;
  Counter& recent_errors;
  Counter& recent_rooms_evicted;
};

}  // namespace nudge::plugins::redis
