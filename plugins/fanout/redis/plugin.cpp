#include "redis_fanout.hpp"

NUDGE_PLUGIN(nudge::plugins::redis::RedisFanout, "redis", "0.1.0",
             "Redis Pub/Sub fanout between runtime instances (one channel, or one per room), reconnecting in the "
             "background")
