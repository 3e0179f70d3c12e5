#include "nats_fanout.hpp"

NUDGE_PLUGIN(nudge::plugins::nats::NatsFanout, "nats", "0.1.0",
             "NATS fanout between runtime instances (one subject, or one per room) on libnats, reconnecting in the "
             "background")
