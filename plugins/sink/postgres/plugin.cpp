#include "postgres_sink.hpp"

NUDGE_PLUGIN(nudge::plugins::postgres::PostgresSink, "postgres", "0.1.0",
             "Stores messages in a PostgreSQL table, one INSERT ... ON CONFLICT DO NOTHING per batch")
