'use strict';
// Settings shared by server.js and migrate.js, from the environment only.
// The original read the same things from a .env file (REDIS_URL, KAFKA_URL,
// DATABASE_URL); it also had Kafka SSL/SASL settings, which a local broker
// does not need.

module.exports = {
  port: Number(process.env.PORT || 8000),
  // The original listened on every interface; loopback is enough for a benchmark.
  host: process.env.HOST || '127.0.0.1',
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  kafkaBrokers: (process.env.KAFKA_URL || process.env.KAFKA_BROKERS || '127.0.0.1:9092')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  databaseUrl: process.env.DATABASE_URL || 'postgresql://nudge:nudge@127.0.0.1:5432/nudge',
  // The original's channel and topic are both named MESSAGES.
  channel: 'MESSAGES',
  topic: process.env.PEER_TOPIC || 'MESSAGES',
  // Its own table, so the peer can share a database with Nudge's "messages".
  table: process.env.PEER_TABLE || 'socketio_messages',
  partitions: Number(process.env.PEER_PARTITIONS || 4),
};
