#include "sqlite_sink.hpp"

NUDGE_PLUGIN(nudge::plugins::sqlite::SqliteSink, "sqlite", "0.1.0",
             "Stores messages in a SQLite database file (WAL mode), idempotent on the message id")
