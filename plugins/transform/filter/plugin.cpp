#include "filter_transform.hpp"

NUDGE_PLUGIN(nudge::plugins::filter::FilterTransform, "filter", "0.1.0",
             "Drops, rejects or masks messages by sender, room, length and words")
