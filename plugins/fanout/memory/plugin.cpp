#include "memory_fanout.hpp"

NUDGE_PLUGIN(nudge::plugins::MemoryFanout, "memory", "0.1.0",
             "In-process fanout: delivers what this instance publishes back to it (one instance only)")
