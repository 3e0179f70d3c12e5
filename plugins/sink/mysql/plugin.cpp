#include "mysql_sink.hpp"

NUDGE_PLUGIN(nudge::plugins::mysql::MysqlSink, "mysql", "0.1.0",
             "Stores messages in a MySQL or MariaDB table, one INSERT ... ON DUPLICATE KEY UPDATE per batch")
