#include "rate_limit_transform.hpp"

NUDGE_PLUGIN(nudge::plugins::rate_limit::RateLimitTransform, "rate-limit", "0.1.0",
             "Limits each sender's messages with a token bucket; refuses the rest with a reason")
