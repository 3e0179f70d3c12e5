#include "http_source.hpp"

NUDGE_PLUGIN(nudge::plugins::http::HttpSource, "http", "0.1.0",
             "Server publish API: backends POST messages into rooms over HTTP (docs/http-api.md)")
