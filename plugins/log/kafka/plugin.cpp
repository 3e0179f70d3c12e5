#include "kafka_log.hpp"

NUDGE_PLUGIN(nudge::plugins::kafka::KafkaLog, "kafka", "0.1.0",
             "A durable log on Kafka: idempotent acks=all appends, consumer-group batches committed after the sink")
